package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/lilygo/lily/graphs/llama"
	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/internal/memcheck"
	"github.com/lilygo/lily/internal/outdir"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/tokenizers/llama2c"
	"github.com/pkg/errors"
)

// Output names of export inside -out.
const (
	exportBin       = "model.bin"     // llama2.c checkpoint
	exportTokenizer = "tokenizer.bin" // a copy of the llama2.c tokenizer, for run.c and generate
	exportHF        = "hf"            // Hugging Face LlamaForCausalLM directory, with its tokenizer
)

// useUsage explains eval and export; -h prints it above the flags.
var useUsage = map[string]string{
	"eval": `llama eval: held-out perplexity of a text, with and without an adapter.

  llama eval -adapter runs/llama-lily/adapter               # SST-2 dev sentences, as finetune holds out
  llama eval -adapter DIR -eval_file notes.txt              # one text per line

The text flags mean what they mean for finetune; with the run's -eval_examples,
-batch_size and -max_len the adapter's perplexity is the run's best exactly.

`,
	"export": `llama export: the model with an adapter merged into its weights, as a
llama2.c checkpoint (model.bin, what run.c loads, with tokenizer.bin) and a
Hugging Face LlamaForCausalLM directory (hf/, with tokenizer.json and
tokenizer_config.json converted from the llama2.c tokenizer), with greedy
text from the merged model checked against the adapter's.

  llama export -adapter runs/llama-lora/adapter -out runs/llama-merged
  llama generate -checkpoint runs/llama-merged/model.bin -tokenizer runs/llama-merged/tokenizer.bin -temperature 0

A Hugging Face -checkpoint gives hf/ only: its config.json and tokenizer
files copied, the merged weights in its torch_dtype (bfloat16 or float32) as
save_pretrained keeps it, or in -dtype f32 to keep the merge exact (a small
update rounded to bfloat16 partly vanishes).

LoRA merges exactly. A Lily adapter routes every input to its own mixture of
experts, which no single weight matrix reproduces: -calibrate freezes each
site's mixing at its mean over the training text (-train_file or the GLUE
task's train split, first -calibrate_examples) and merges that.

`,
}

// useConfig is the configuration of eval and export.
type useConfig struct {
	ftConfig                 // checkpoint, tokenizer and text flags, as finetune reads them
	Mode              string // eval or export
	AdapterDir        string
	Calibrate         bool
	CalibrateExamples int
	Steps             int    // export: positions of the greedy check
	Dtype             string // export of a Hugging Face checkpoint: auto, f32 or bf16
}

// folder is export's -out.
func (c useConfig) folder() outdir.Folder {
	return outdir.Folder{Flag: "-out", Path: c.Out, Kind: kindExport, Overwrite: c.Overwrite}
}

// parseUse parses the flags of eval or export.
func parseUse(mode string, args []string, usageOut io.Writer) (useConfig, error) {
	c := useConfig{ftConfig: defaultConfig(), Mode: mode, CalibrateExamples: 2000, Steps: 64}
	fs := flag.NewFlagSet("llama "+mode, flag.ContinueOnError)
	fs.SetOutput(usageOut)
	fs.StringVar(&c.Checkpoint, "checkpoint", "", "the checkpoint the adapter was trained on: "+checkpointHelp)
	fs.StringVar(&c.Tokenizer, "tokenizer", "", tokenizerHelp)
	fs.StringVar(&c.AdapterDir, "adapter", "", "adapter directory (a finetune run's adapter/ folder, or PEFT's)")
	fs.StringVar(&c.GlueDir, "glue_dir", "", "GLUE directory for -glue_task (default ../shared/data/"+defaultGlueDir+")")
	fs.StringVar(&c.GlueTask, "glue_task", c.GlueTask, "GLUE task whose dev sentences are held out (train sentences calibrate)")
	fs.StringVar(&c.EvalFile, "eval_file", "", "held-out text instead of GLUE, one text per line")
	fs.IntVar(&c.EvalExamples, "eval_examples", 0, "keep only the first N held-out texts (0: all)")
	fs.IntVar(&c.BatchSize, "batch_size", c.BatchSize, "texts per evaluation batch (Lily's batch routing depends on it)")
	fs.IntVar(&c.MaxLen, "max_len", c.MaxLen, "longest sequence in ids, BOS included; longer texts are truncated")
	switch mode {
	case "eval":
		fs.StringVar(&c.BaseDtype, "base_dtype", c.BaseDtype, baseDtypeHelp)
	case "export":
		fs.StringVar(&c.Out, "out", "", "folder for model.bin, tokenizer.bin and hf/ (for a Hugging Face -checkpoint: hf/ only) (required)")
		fs.BoolVar(&c.Overwrite, "overwrite", false, "replace -out when it holds a finished run or another kind of run")
		fs.StringVar(&c.TrainFile, "train_file", "", "calibration text instead of GLUE's train split, one text per line")
		fs.BoolVar(&c.Calibrate, "calibrate", false, "Lily: freeze each site's mixing at its mean over the training text, so that it can be merged")
		fs.IntVar(&c.CalibrateExamples, "calibrate_examples", c.CalibrateExamples, "with -calibrate: the first N training texts (0: all)")
		fs.IntVar(&c.Steps, "steps", c.Steps, "positions of the greedy text compared before and after merging")
		fs.StringVar(&c.Dtype, "dtype", "auto", "weights of hf/ for a Hugging Face -checkpoint: auto (the checkpoint's torch_dtype, as save_pretrained keeps it), f32 (the merge exactly) or bf16")
	}
	fs.Usage = func() {
		fmt.Fprint(usageOut, useUsage[mode])
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, errors.Errorf("%s: unexpected argument %q (flags start with -)", mode, fs.Arg(0))
	}
	c.Checkpoint = orShared(c.Checkpoint, defaultCheckpoint)
	c.Tokenizer = tokenizerFor(c.Checkpoint, c.Tokenizer)
	if c.EvalFile == "" || (mode == "export" && c.TrainFile == "") {
		c.GlueDir = orShared(c.GlueDir, defaultGlueDir)
	}
	switch {
	case mode == "export" && c.AdapterDir == "":
		return c, errors.New("export: -adapter is required: the adapter to merge")
	case mode == "export" && c.Out == "":
		return c, errors.New("export: -out is required: the folder for the merged model")
	case c.BatchSize < 1 || c.MaxLen < 2:
		return c, errors.Errorf("%s: -batch_size %d must be positive and -max_len %d at least 2", mode, c.BatchSize, c.MaxLen)
	case mode == "export" && c.Dtype != "auto" && c.Dtype != "f32" && c.Dtype != "bf16":
		return c, errors.Errorf("export: -dtype %q: use auto, f32 or bf16", c.Dtype)
	case !validBaseDtype(c.BaseDtype):
		return c, errors.Errorf("%s: -base_dtype %q: use %s", mode, c.BaseDtype, baseDtypes)
	case c.EvalExamples < 0 || c.CalibrateExamples < 0 || c.Steps < 0:
		return c, errors.Errorf("%s: -eval_examples %d, -calibrate_examples %d and -steps %d must not be negative", mode, c.EvalExamples, c.CalibrateExamples, c.Steps)
	}
	return c, nil
}

// texts reads the held-out text (split "dev") or the calibration text
// ("train") c names, keeping the first limit texts (0: all).
func (c useConfig) texts(split string, limit int) ([]string, error) {
	file := c.EvalFile
	if split == "train" {
		file = c.TrainFile
	}
	var texts []string
	var err error
	if file != "" {
		texts, err = readLines(file)
	} else {
		texts, err = glueTexts(c.GlueDir, c.GlueTask, split)
	}
	if limit > 0 && limit < len(texts) {
		texts = texts[:limit]
	}
	return texts, err
}

// perplexity evaluates the model in b with adapter a (layers.None for the
// plain model) on seqs in the fixed evaluation batches.
func perplexity(b *base, a layers.Adapter, seqs [][]int, batchSize, maxLen int) (evalResult, error) {
	l := newLM(b.cfg, b.store, a)
	defer l.close()
	return l.evaluate(seqs, evalBatches(lengths(seqs), batchSize), maxLen)
}

// heldOut tokenizes the held-out text.
func (c useConfig) heldOut(b *base) ([][]int, error) {
	texts, err := c.texts("dev", c.EvalExamples)
	if err != nil {
		return nil, err
	}
	seqs, err := encodeTexts(b.tok, texts, c.MaxLen)
	if err != nil {
		return nil, err
	}
	if len(seqs) == 0 {
		return nil, errors.New("no held-out text")
	}
	return seqs, nil
}

// useResult is what eval and export report.
type useResult struct {
	Base    evalResult  `json:"base"`              // the model without adapter
	Adapted *evalResult `json:"adapted,omitempty"` // with the adapter (eval), or merged (export)
	// Export only: the greedy texts of the adapter (with its frozen mixing,
	// for a calibrated Lily), of the merged model, and of a calibrated
	// Lily's adapter as trained.
	AdapterText, MergedText, RoutedText string
	Calibrated                          int // Lily: training texts the mixing was averaged over
}

// runUseEval prints the held-out perplexity without and with the adapter.
func runUseEval(c useConfig, w io.Writer) (*useResult, error) {
	b, err := loadBase(c.Checkpoint, c.Tokenizer, c.BaseDtype, func(cfg llama.Config) memcheck.Need { return evalNeed(cfg, c.BatchSize, c.MaxLen) })
	if err != nil {
		return nil, err
	}
	seqs, err := c.heldOut(b)
	if err != nil {
		return nil, err
	}
	res := &useResult{}
	if res.Base, err = perplexity(b, layers.None{}, seqs, c.BatchSize, c.MaxLen); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "held-out perplexity over %d texts (%d predicted tokens): %.4f without adapter", len(seqs), res.Base.Tokens, res.Base.Perplexity)
	if c.AdapterDir != "" {
		a, err := b.loadAdapter(c.AdapterDir)
		if err != nil {
			return nil, err
		}
		r, err := perplexity(b, a, seqs, c.BatchSize, c.MaxLen)
		if err != nil {
			return nil, err
		}
		res.Adapted = &r
		fmt.Fprintf(w, ", %.4f with the %s adapter of %s", r.Perplexity, a.Method(), c.AdapterDir)
	}
	fmt.Fprintln(w)
	return res, nil
}

// runExport merges the adapter and writes model.bin, tokenizer.bin and hf/.
func runExport(c useConfig, w io.Writer) (*useResult, error) {
	if err := c.folder().Check(); err != nil {
		return nil, err
	}
	// Merging writes into the weights, which must be float32 for it.
	b, err := loadBase(c.Checkpoint, c.Tokenizer, "f32", func(cfg llama.Config) memcheck.Need {
		return append(evalNeed(cfg, c.BatchSize, c.MaxLen), generateNeed(cfg, c.Steps, 1)...)
	})
	if err != nil {
		return nil, err
	}
	a, err := b.loadAdapter(c.AdapterDir)
	if err != nil {
		return nil, err
	}
	if err := mergeNeed(b.cfg, adapterTargets(a)).Check(); err != nil {
		return nil, errors.Wrapf(err, "merging %s", c.AdapterDir)
	}
	if _, ok := a.(layers.Merger); !ok {
		return nil, errors.Errorf("the %s adapter in %s cannot be merged (only LoRA and Lily can)", a.Method(), c.AdapterDir)
	}
	res := &useResult{}
	greedy := llama.SampleOptions{Steps: c.Steps}
	gcfg := decodeConfig(b.cfg, c.Steps)
	lily, isLily := a.(*layers.Lily)
	if isLily && !lily.Config().Uniform && len(lily.FrozenMixing()) == 0 {
		if !c.Calibrate {
			return nil, errors.Errorf("the Lily adapter in %s routes every input to its own mixture of experts (%s routing), which no single merged weight reproduces; "+
				"add -calibrate to freeze each site's mixing at its mean over the training text and merge that", c.AdapterDir, lily.Config().Routing)
		}
		routed, err := llama.Generate(gcfg, b.store, a, b.tok, "", greedy)
		if err != nil {
			return nil, errors.Wrap(err, "greedy text with the routed adapter")
		}
		res.RoutedText = routed.Text
		if res.Calibrated, err = c.calibrate(b, lily); err != nil {
			return nil, err
		}
	}
	before, err := llama.Generate(gcfg, b.store, a, b.tok, "", greedy)
	if err != nil {
		return nil, errors.Wrap(err, "greedy text with the adapter")
	}
	if err := layers.Merge(b.store, a, b.cfg.Sites()); err != nil {
		return nil, errors.Wrapf(err, "merging %s", c.AdapterDir)
	}
	after, err := llama.Generate(gcfg, b.store, nil, b.tok, "", greedy)
	if err != nil {
		return nil, errors.Wrap(err, "greedy text of the merged model")
	}
	res.AdapterText, res.MergedText = before.Text, after.Text
	dtype, err := c.writeExport(b)
	if err != nil {
		return nil, err
	}
	wrote := fmt.Sprintf("%s, %s and %s/", exportBin, exportTokenizer, exportHF)
	if b.hf {
		wrote = exportHF + "/"
	}
	fmt.Fprintf(w, "merged the %s adapter of %s into %s and wrote %s to %s\n", a.Method(), c.AdapterDir, c.Checkpoint, wrote, c.Out)
	if res.Calibrated > 0 {
		fmt.Fprintf(w, "Lily's mixing frozen at its mean over %d training texts\n", res.Calibrated)
	}
	same := "equals"
	if before.Text != after.Text {
		same = "DIFFERS from"
	}
	fmt.Fprintf(w, "greedy text (%d positions) of the merged model %s the adapter's:\n%s\n", c.Steps, same, after.Text)
	if res.Calibrated > 0 && res.RoutedText != after.Text {
		fmt.Fprintf(w, "the adapter as trained (routed) decodes instead:\n%s\n", res.RoutedText)
	}
	if dtype == "bf16" {
		fmt.Fprintf(w, "%s/ holds the merged weights rounded to bfloat16, so its outputs differ slightly from the float32 merge checked above (-dtype f32 keeps them exactly)\n", exportHF)
	}
	return res, nil
}

// calibrate freezes every Lily site's mixing at its mean over the training
// text, run in evaluation batches as the adapter routes them, and returns
// how many texts it used.
func (c useConfig) calibrate(b *base, lily *layers.Lily) (int, error) {
	texts, err := c.texts("train", c.CalibrateExamples)
	if err != nil {
		return 0, err
	}
	seqs, err := encodeTexts(b.tok, texts, c.MaxLen)
	if err != nil {
		return 0, err
	}
	if len(seqs) == 0 {
		return 0, errors.New("calibration: no training text")
	}
	l := newLM(b.cfg, b.store, lily)
	defer l.close()
	var cal layers.MixingCalibrator
	if _, err := l.evaluateObserving(seqs, evalBatches(lengths(seqs), c.BatchSize), c.MaxLen, cal.Observe); err != nil {
		return 0, err
	}
	return len(seqs), lily.FreezeMixing(cal.Mean())
}

// writeExport writes the merged model in b to -out and returns the dtype of
// hf/'s weights: for a llama2.c checkpoint model.bin, a copy of the
// tokenizer and hf/ (float32, with the tokenizer converted); for a Hugging
// Face checkpoint hf/ only, with the source's config.json, weights in -dtype
// (auto: its torch_dtype), and its tokenizer files copied (or converted
// from a llama2.c -tokenizer).
func (c useConfig) writeExport(b *base) (dtype string, err error) {
	if !b.hf {
		tok, err := os.ReadFile(c.Tokenizer)
		if err != nil {
			return "", errors.Wrap(err, "export: copying the tokenizer")
		}
		return "f32", c.folder().Write(true, func(dir string) error {
			if err := llama.SaveLlama2C(filepath.Join(dir, exportBin), b.cfg, b.store); err != nil {
				return err
			}
			if err := atomicfile.WriteBytes(filepath.Join(dir, exportTokenizer), tok); err != nil {
				return errors.Wrap(err, "export: copying the tokenizer")
			}
			if err := llama.SaveHF(filepath.Join(dir, exportHF), b.cfg, b.store); err != nil {
				return err
			}
			return errors.Wrap(b.tok.(*llama2c.Tokenizer).WriteHF(filepath.Join(dir, exportHF), b.cfg.MaxSeqLen), "export: the Hugging Face tokenizer")
		})
	}
	src := atomicfile.Resolve(c.Checkpoint)
	cfgJSON, err := os.ReadFile(filepath.Join(src, hfConfigFile))
	if err != nil {
		return "", errors.Wrap(err, "export: reading the checkpoint's config.json")
	}
	dtype = c.Dtype
	if dtype == "auto" {
		dtype = "f32"
		if torchDtype(src) == "bfloat16" {
			dtype = "bf16"
		}
	}
	if want := map[string]string{"f32": "float32", "bf16": "bfloat16"}[dtype]; torchDtype(src) != want {
		var m map[string]any
		if err := json.Unmarshal(cfgJSON, &m); err != nil {
			return "", errors.Wrap(err, "export: reading the checkpoint's config.json")
		}
		m["torch_dtype"] = want
		if cfgJSON, err = marshalIndent(m); err != nil {
			return "", err
		}
	}
	copies := map[string]string{hfGenerationFile: filepath.Join(src, hfGenerationFile)}
	lt, convert := b.tok.(*llama2c.Tokenizer)
	if convert = convert && !strings.HasSuffix(c.Tokenizer, ".json"); !convert {
		tdir := filepath.Dir(c.Tokenizer)
		copies[hfTokenizerFile] = c.Tokenizer
		copies[hfTokenizerConfigFile] = filepath.Join(tdir, hfTokenizerConfigFile)
	}
	return dtype, c.folder().Write(true, func(dir string) error {
		hf := filepath.Join(dir, exportHF)
		if err := os.Mkdir(hf, 0o755); err != nil {
			return errors.Wrap(err, "export")
		}
		if err := saveHFStream(hf, b.cfg, b.store, dtype, cfgJSON, defaultMaxShard); err != nil {
			return errors.Wrap(err, "export")
		}
		for name, from := range copies {
			data, err := os.ReadFile(from)
			if errors.Is(err, os.ErrNotExist) && name != hfTokenizerFile {
				continue // optional files
			}
			if err != nil {
				return errors.Wrapf(err, "export: copying %s", name)
			}
			if err := atomicfile.WriteBytes(filepath.Join(hf, name), data); err != nil {
				return errors.Wrapf(err, "export: copying %s", name)
			}
		}
		if convert {
			return errors.Wrap(lt.WriteHF(hf, b.cfg.MaxSeqLen), "export: the Hugging Face tokenizer")
		}
		return nil
	})
}

// adapterTargets lists the modules an adapter adapts.
func adapterTargets(a layers.Adapter) []string {
	switch ad := a.(type) {
	case *layers.Lily:
		return ad.Config().TargetModules
	case *layers.LoRA:
		return ad.Config().TargetModules
	}
	return nil
}
