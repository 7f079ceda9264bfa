package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/lilygo/lily/adapterfile"
	"github.com/lilygo/lily/graphs/mamba"
	"github.com/lilygo/lily/internal/outdir"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/tokenizers/bytebpe"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// useUsage explains eval and export; -h prints it above the flags.
var useUsage = map[string]string{
	"eval": `mamba eval: held-out perplexity of a text file (one document per line, as
-target_eval reads it), without and with a saved adapter.

  go run ./examples/mamba eval -model runs/mamba/pretrained -adapter runs/mamba/adapters/lily_in-seed1 -eval_file held.txt

With the run's -batch and -seq_len, and its held-out text, the adapter's
perplexity is the run's final one exactly.

`,
	"export": `mamba export: the model with an adapter merged into its weights, as a Hugging
Face MambaForCausalLM directory (config.json, model.safetensors, vocab.json,
merges.txt) that -model and transformers load with no adapter.

  go run ./examples/mamba export -model runs/mamba/pretrained -adapter runs/mamba/adapters/lora_in-seed1 -eval_file held.txt -out merged

LoRA merges exactly. A Lily adapter routes every input to its own mixture of
experts, which no single weight matrix reproduces: -calibrate freezes each
site's mixing at its mean over -calibrate_file and merges that. With
-eval_file the export reports the held-out perplexity of the adapter and of
the merged model.

`,
}

// useConfig is the configuration of eval and export.
type useConfig struct {
	Model, Adapter, EvalFile, Out, CalibrateFile string
	Batch, SeqLen                                int
	Calibrate, Overwrite                         bool
}

// folder is export's -out.
func (c useConfig) folder() outdir.Folder {
	return outdir.Folder{Flag: "-out", Path: c.Out, Kind: kindExport, Overwrite: c.Overwrite}
}

// parseUse parses the flags of eval or export.
func parseUse(mode string, args []string, out io.Writer) (useConfig, error) {
	c := useConfig{Batch: defaults.Batch, SeqLen: defaults.SeqLen}
	fs := flag.NewFlagSet("mamba "+mode, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Model, "model", "", "Hugging Face Mamba directory with vocab.json and merges.txt, e.g. a run's pretrained/ (required)")
	fs.StringVar(&c.Adapter, "adapter", "", "adapter directory, e.g. a run's adapters/<method>-seed<N> (required for export)")
	fs.StringVar(&c.EvalFile, "eval_file", "", "held-out text, one document per line (required for eval)")
	fs.IntVar(&c.Batch, "batch", c.Batch, "windows per evaluation run (Lily's batch routing depends on it)")
	fs.IntVar(&c.SeqLen, "seq_len", c.SeqLen, "tokens per evaluation window")
	if mode == "export" {
		fs.StringVar(&c.Out, "out", "", "folder for the merged model (required)")
		fs.BoolVar(&c.Overwrite, "overwrite", false, "replace -out when it holds a finished run or another kind of run")
		fs.BoolVar(&c.Calibrate, "calibrate", false, "Lily: freeze each site's mixing at its mean over -calibrate_file, so that it can be merged")
		fs.StringVar(&c.CalibrateFile, "calibrate_file", "", "with -calibrate: training text, one document per line")
	}
	fs.Usage = func() {
		fmt.Fprint(out, useUsage[mode])
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, errors.Errorf("%s: unexpected argument %q (flags start with -)", mode, fs.Arg(0))
	case c.Model == "":
		return c, errors.Errorf("%s: -model is required: the Mamba directory the adapter was trained on (a run's pretrained/)", mode)
	case mode == "eval" && c.EvalFile == "":
		return c, errors.New("eval: -eval_file is required: the text to measure, one document per line")
	case mode == "export" && (c.Adapter == "" || c.Out == ""):
		return c, errors.New("export: -adapter and -out are required: the adapter to merge and the folder for the merged model")
	case c.Calibrate && c.CalibrateFile == "":
		return c, errors.New("export: -calibrate needs -calibrate_file: the text the mixing is averaged over")
	case c.SeqLen < 2 || c.Batch < 1:
		return c, errors.Errorf("%s: -seq_len %d must be at least 2 and -batch %d positive", mode, c.SeqLen, c.Batch)
	}
	return c, nil
}

// loadedModel is a Mamba model with its tokenizer and, when asked, an
// adapter.
type loadedModel struct {
	store *layers.Store
	mc    mamba.Config
	tok   *bytebpe.Tokenizer
	eos   int
	a     layers.Adapter // nil without -adapter
}

// load reads -model, its tokenizer and -adapter.
func (c useConfig) load() (*loadedModel, error) {
	store, err := layers.NewStore(tensor.Float32)
	if err != nil {
		return nil, err
	}
	l := &loadedModel{store: store}
	if l.mc, err = mamba.LoadHF(c.Model, store); err != nil {
		return nil, err
	}
	if l.tok, err = bytebpe.Load(c.Model); err != nil {
		return nil, errors.Wrapf(err, "loading the tokenizer of %s (vocab.json and merges.txt)", c.Model)
	}
	if l.eos, err = eosOf(l.tok, l.mc); err != nil {
		return nil, err
	}
	store.Freeze()
	if c.Adapter != "" {
		if l.a, err = adapterfile.Load(c.Adapter, store, l.mc.Sites()); err != nil {
			return nil, errors.Wrapf(err, "the adapter %s does not fit %s", c.Adapter, c.Model)
		}
	}
	return l, nil
}

// tokens reads a text file (one document per line) into the token stream
// the runs evaluate.
func (l *loadedModel) tokens(path string) ([]int, error) {
	docs, err := readLines(path)
	if err != nil {
		return nil, err
	}
	return tokenStream(l.tok, docs, l.eos), nil
}

// perplexity evaluates tokens with adapter a (nil: none) as the runs do.
func (l *loadedModel) perplexity(a layers.Adapter, c useConfig, tokens []int) (float64, error) {
	ev, err := newEvaluator(l.store, l.mc, a, c.Batch, c.SeqLen)
	if err != nil {
		return 0, err
	}
	defer ev.close()
	return ev.perplexity(tokens)
}

// useResult is what eval and export measured.
type useResult struct {
	Base, Adapted, Merged float64 // perplexities; Merged: export only
}

// runUseEval prints the perplexity of -eval_file without and with the
// adapter.
func runUseEval(c useConfig, w io.Writer) (*useResult, error) {
	if err := checkUseMemory(c, false); err != nil {
		return nil, err
	}
	l, err := c.load()
	if err != nil {
		return nil, err
	}
	toks, err := l.tokens(c.EvalFile)
	if err != nil {
		return nil, err
	}
	res := &useResult{}
	if res.Base, err = l.perplexity(nil, c, toks); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "perplexity of %s (%d tokens): %.4f without adapter", c.EvalFile, len(toks), res.Base)
	if l.a != nil {
		if res.Adapted, err = l.perplexity(l.a, c, toks); err != nil {
			return nil, err
		}
		fmt.Fprintf(w, ", %.4f with the %s adapter of %s", res.Adapted, l.a.Method(), c.Adapter)
	}
	fmt.Fprintln(w)
	return res, nil
}

// runExport merges the adapter into the weights and writes the model with
// its tokenizer to -out.
func runExport(c useConfig, w io.Writer) (*useResult, error) {
	if err := c.folder().Check(); err != nil {
		return nil, err
	}
	if err := checkUseMemory(c, true); err != nil {
		return nil, err
	}
	l, err := c.load()
	if err != nil {
		return nil, err
	}
	res := &useResult{}
	var held []int
	if c.EvalFile != "" {
		if held, err = l.tokens(c.EvalFile); err != nil {
			return nil, err
		}
		if res.Adapted, err = l.perplexity(l.a, c, held); err != nil {
			return nil, err
		}
	}
	if lily, ok := l.a.(*layers.Lily); ok && !lily.Config().Uniform && len(lily.FrozenMixing()) == 0 {
		if !c.Calibrate {
			return nil, errors.Errorf("the Lily adapter in %s routes every input to its own mixture of experts (%s routing), which no single merged weight reproduces; "+
				"add -calibrate -calibrate_file F to freeze each site's mixing at its mean over the text in F and merge that", c.Adapter, lily.Config().Routing)
		}
		cal, err := l.tokens(c.CalibrateFile)
		if err != nil {
			return nil, err
		}
		ev, err := newEvaluator(l.store, l.mc, lily, c.Batch, c.SeqLen)
		if err != nil {
			return nil, err
		}
		var mc layers.MixingCalibrator
		err = ev.observeMixing(cal, &mc)
		ev.close()
		if err != nil {
			return nil, err
		}
		if err := lily.FreezeMixing(mc.Mean()); err != nil {
			return nil, err
		}
	}
	if err := layers.Merge(l.store, l.a, l.mc.Sites()); err != nil {
		return nil, errors.Wrapf(err, "merging %s", c.Adapter)
	}
	err = c.folder().Write(true, func(dir string) error {
		if err := mamba.SaveHF(dir, l.store, l.mc); err != nil {
			return err
		}
		return errors.Wrapf(l.tok.Save(dir), "writing the tokenizer to %s", c.Out)
	})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "merged the %s adapter of %s into %s and wrote %s\n", l.a.Method(), c.Adapter, c.Model, c.Out)
	if held != nil {
		if res.Merged, err = l.perplexity(nil, c, held); err != nil {
			return nil, err
		}
		fmt.Fprintf(w, "perplexity of %s: %.4f with the adapter as trained, %.4f merged\n", c.EvalFile, res.Adapted, res.Merged)
	}
	return res, nil
}
