// Command mamba pretrains a small Mamba language model on one corpus and
// adapts it to another with Lily "in" (in_proj), Lily "Δ + in" (in_proj and
// dt_proj) and LoRA on the same sites at matched trainable parameters — the
// Falcon-Mamba comparison of the Lily paper (arXiv 2407.09946) in miniature —
// and reports the held-out perplexity on the target corpus of the
// pretrained model and of each method.
//
//	go run ./examples/mamba                       # synthetic corpora, a few minutes
//	go run -tags openblas ./examples/mamba -glue_dir ../shared/data/glue \
//	    -source_tasks cola,rte,qnli -target_task sst2 -seeds 1,2,3
//	go run ./examples/mamba -model DIR -target_task sst2 -glue_dir ../shared/data/glue
//
// Without -model it learns a byte-level BPE tokenizer on the pretraining
// text, pretrains every parameter of a new model on random windows of it,
// and saves the model (mamba.SaveHF) and the tokenizer in -out/pretrained.
// With -model it loads a Hugging Face Mamba directory instead. Then, for
// every seed and method, it freezes the model, attaches the adapter, trains
// it on random windows of the target text, evaluates the held-out target
// text during training, and saves the adapter (adapterfile). LoRA's rank is
// the one whose parameter count is nearest to Lily's on the same sites.
// Run with -h for every flag and its default. Two more subcommands use a
// saved adapter: 'mamba eval' measures the perplexity of a text file with and
// without it, 'mamba export' merges it into a Hugging Face Mamba directory.
// 'mamba search' finds the Lily shape (r, stride_A, num_B) that adapts best
// at a fixed parameter budget, by successive halving (package configsearch).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/lilygo/lily/graphs/mamba"
	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/internal/sweep"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/mpi"
	"github.com/lilygo/lily/tokenizers/bytebpe"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

func main() {
	train.Main("mamba", run)
}

// run parses the flags and runs the whole experiment; the report goes to w,
// progress bars and usage to progressW.
func run(ctx context.Context, args []string, w, progressW io.Writer) error {
	if len(args) > 0 && args[0] == "search" {
		return searchCmd(ctx, args[1:], w, progressW)
	}
	if len(args) > 0 && (args[0] == "eval" || args[0] == "export") {
		c, err := parseUse(args[0], args[1:], progressW)
		if err != nil {
			return err
		}
		if args[0] == "eval" {
			_, err = runUseEval(c, w)
		} else {
			_, err = runExport(c, w)
		}
		return err
	}
	c, err := parseFlags(args, progressW)
	if err != nil {
		return err
	}
	world, err := train.World()
	if err != nil {
		return err
	}
	rank0 := world.Rank() == 0
	if !rank0 {
		w = io.Discard
	}
	start := time.Now()
	ms, _ := parseMethods(c.Methods) // validated by parseFlags
	seeds, _ := sweep.ParseSeeds(c.Seeds)
	res := &results{Note: resultsNote, Config: c, Seeds: seeds, BLAS: lilyop.BLAS, Ranks: world.Size()}
	if rank0 {
		if err := c.folder().Admit(c.Resume); err != nil {
			return err
		}
	}
	var prev *results // what the run being resumed recorded
	if c.Resume {
		if prev, err = loadResults(c.Out); err != nil {
			return err
		}
	}
	corp, err := loadCorpus(c)
	if err != nil {
		return err
	}
	if corp.Synthetic {
		fmt.Fprintf(w, "== SYNTHETIC data: no text flags were given, so both corpora are made up in code ==\n"+
			"source: %s\ntarget: %s\nThe numbers say how the methods adapt between two toy languages, nothing about real text.\n\n", corp.SourceName, corp.TargetName)
	} else {
		fmt.Fprintf(w, "source: %s\ntarget: %s\n\n", corp.SourceName, corp.TargetName)
	}
	base, tok, err := baseModel(c, ms, corp, res, w)
	if err != nil {
		return err
	}
	if rank0 && !c.Resume {
		if err := c.folder().Begin(false); err != nil {
			return err
		}
	}
	mc := res.Model.Config
	targetTrain := tokenStream(tok, corp.Target, res.Model.EOS)
	heldOut := tokenStream(tok, corp.TargetEval, res.Model.EOS)
	res.Data.corpus = corp
	res.Data.TargetDocs, res.Data.TargetTokens = len(corp.Target), len(targetTrain)
	res.Data.TargetEvalDocs, res.Data.TargetEvalTokens = len(corp.TargetEval), len(heldOut)
	tgt, err := newWindows(targetTrain, c.SeqLen, "target")
	if err != nil {
		return err
	}
	if len(heldOut) < 2 {
		return errors.New("the held-out target text has fewer than 2 tokens")
	}
	fmt.Fprintf(w, "target: %s training documents (%s tokens), %s held-out documents (%s tokens)\n",
		commas(len(corp.Target)), commas(len(targetTrain)), commas(len(corp.TargetEval)), commas(len(heldOut)))
	fmt.Fprintf(w, "model: %d layers, hidden %d, d_inner %d, d_state %d, dt_rank %d, vocabulary %d: %s parameters; BLAS %s\n\n",
		mc.NumHiddenLayers, mc.HiddenSize, mc.DInner(), mc.StateSize, mc.TimeStepRank, mc.VocabSize, commas(res.Model.Params), lilyop.BLAS)

	if res.Model.Pretrained {
		if err := pretrainAndSave(ctx, c, corp, tok, base, res, prev, world, w, progressW); err != nil {
			return err
		}
	}
	ev, err := newEvaluator(base, mc, nil, c.Batch, c.SeqLen)
	if err != nil {
		return err
	}
	if res.TargetPPL, res.Data.TargetEvalTargets, err = ev.m.Perplexity(ev.vm, heldOut); err != nil {
		ev.close()
		return errors.Wrap(err, "the pretrained model's held-out perplexity")
	}
	if len(corp.SourceEval) > 0 {
		srcEval := tokenStream(tok, corp.SourceEval, res.Model.EOS)
		res.Data.SourceEvalDocs, res.Data.SourceEvalTokens = len(corp.SourceEval), len(srcEval)
		if res.SourcePPL, err = ev.perplexity(srcEval); err != nil {
			ev.close()
			return err
		}
		fmt.Fprintf(w, "pretrained model: held-out perplexity %.3f on the source (%s documents), %.3f on the target\n",
			res.SourcePPL, commas(len(corp.SourceEval)), res.TargetPPL)
	} else {
		fmt.Fprintf(w, "pretrained model: held-out perplexity %.3f on the target\n", res.TargetPPL)
	}
	ev.close()
	res.Interrupted = res.Pretrain != nil && res.Pretrain.Interrupted
	res.Seconds = time.Since(start).Seconds()
	if err := writeOutputs(res, false, rank0); err != nil {
		return err
	}
	if res.Interrupted {
		fmt.Fprintf(w, "interrupted during pretraining: the model so far is in %s; no adaptation was run\n", res.Model.Dir)
		return nil
	}

	fmt.Fprintln(w, "\n== trainable parameters (LoRA's rank matched to Lily's count unless -lora_r is set) ==")
	for _, m := range ms {
		a, n, err := newAdapter(c, m, mc)
		if err != nil {
			return errors.Wrap(err, m.Name)
		}
		fmt.Fprintf(w, "%-14s %-16s %9s  %s\n", m.Label, m.sites(), commas(n), describe(a))
	}
	fmt.Fprintln(w)
	for _, seed := range seeds {
		for _, m := range ms {
			if r, ok := prev.finished(m.Name, seed); ok {
				res.Runs = append(res.Runs, r)
				fmt.Fprintf(w, "%s seed %d: finished before the resume: held-out perplexity %.3f\n", m.Label, seed, r.Final)
				continue
			}
			job := adaptJob{c: c, mc: mc, base: base, m: m, seed: seed, train: tgt, heldOut: heldOut, basePPL: res.TargetPPL, baseDir: res.Model.Dir, comm: world}
			r, err := adapt(ctx, job, progressW)
			if err != nil {
				return err
			}
			res.Runs = append(res.Runs, r)
			res.Interrupted = r.Interrupted
			res.Seconds = time.Since(start).Seconds()
			if err := writeOutputs(res, !r.Interrupted && len(res.Runs) == len(seeds)*len(ms), rank0); err != nil {
				return err
			}
			if err := dropCheckpoint(c, fmt.Sprintf("%s-seed%d", m.Name, seed), !r.Interrupted && rank0); err != nil {
				return err
			}
			fmt.Fprintf(w, "%s seed %d: held-out perplexity %.3f after %d steps (%.0f s); adapter in %s\n",
				m.Label, seed, r.Final, r.Steps, r.Seconds, r.AdapterDir)
			if r.Interrupted {
				fmt.Fprintln(w, "interrupted: the remaining runs are skipped")
				printTable(w, res)
				return nil
			}
		}
	}
	if err := dropCheckpoint(c, "", rank0); err != nil {
		return err
	}
	printTable(w, res)
	fmt.Fprintf(w, "\nwrote %s and %s to %s (%.0f s in all)\n", resultsFile, plotFile, c.Out, res.Seconds)
	return nil
}

// dropCheckpoint removes the checkpoint of a finished training run (all of
// them for run ""), once the results that replace it are written; drop
// false does nothing.
func dropCheckpoint(c config, run string, drop bool) error {
	if !drop {
		return nil
	}
	dir := filepath.Join(c.Out, checkpointsDir)
	if run != "" {
		dir = c.checkpointOf(run)
	}
	return errors.Wrap(os.RemoveAll(dir), "removing a finished run's checkpoint")
}

// baseModel returns the model to adapt — loaded from -model, or freshly
// initialised for pretraining — and its tokenizer, filling res.Model. It
// refuses a run that cannot fit in memory before the model is allocated.
func baseModel(c config, ms []method, corp corpus, res *results, w io.Writer) (*layers.Store, *bytebpe.Tokenizer, error) {
	store, err := layers.NewStore(tensor.Float32)
	if err != nil {
		return nil, nil, err
	}
	var tok *bytebpe.Tokenizer
	var mc mamba.Config
	if c.Model != "" {
		if mc, err = mamba.LoadHF(c.Model, store); err != nil {
			return nil, nil, err
		}
		dir := c.Tokenizer
		if dir == "" {
			dir = c.Model
		}
		if tok, err = bytebpe.Load(dir); err != nil {
			return nil, nil, errors.Wrap(err, "loading the tokenizer of -model (vocab.json and merges.txt)")
		}
		if err := checkMemory(c, ms, mc, false); err != nil {
			return nil, nil, err
		}
		res.Model.Dir = c.Model
	} else {
		t0 := time.Now()
		if tok, err = trainTokenizer(corp.Source, c.Merges); err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(w, "tokenizer: byte-level BPE learnt on the source, %d merges, %d ids (%.1f s)\n", tok.NumMerges(), tok.VocabSize(), time.Since(t0).Seconds())
		if mc, err = modelConfig(c, tok); err != nil {
			return nil, nil, err
		}
		if err := checkMemory(c, ms, mc, true); err != nil {
			return nil, nil, err
		}
		if err := mamba.InitStore(store, mc, c.Seed); err != nil {
			return nil, nil, err
		}
		res.Model.Dir, res.Model.Pretrained = filepath.Join(c.Out, pretrainedDir), true
	}
	eos, err := eosOf(tok, mc)
	if err != nil {
		return nil, nil, err
	}
	_, total := store.Count()
	res.Model.Config, res.Model.Params, res.Model.EOS = mc, total, eos
	res.Model.VocabSize, res.Model.Merges = tok.VocabSize(), tok.NumMerges()
	return store, tok, nil
}

// pretrainAndSave pretrains the model on the source text, then saves it
// with its tokenizer and plots the loss (rank 0). An interrupted
// pretraining is saved too. When the run being resumed (prev) finished its
// pretraining, the saved model is loaded instead.
func pretrainAndSave(ctx context.Context, c config, corp corpus, tok *bytebpe.Tokenizer, store *layers.Store, res, prev *results, world *mpi.World, w, progressW io.Writer) error {
	stream := tokenStream(tok, corp.Source, res.Model.EOS)
	res.Data.SourceDocs, res.Data.SourceTokens = len(corp.Source), len(stream)
	if prev != nil && prev.Pretrain != nil && !prev.Pretrain.Interrupted {
		if err := copyPretrained(res.Model.Dir, store); err != nil {
			return errors.Wrap(err, "-resume: loading the finished pretraining")
		}
		res.Pretrain = prev.Pretrain
		fmt.Fprintf(w, "pretraining finished before the resume: loaded %s\n", res.Model.Dir)
		return nil
	}
	src, err := newWindows(stream, c.SeqLen, "source")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "source: %s documents (%s tokens) for pretraining, %s held out\n",
		commas(len(corp.Source)), commas(len(stream)), commas(len(corp.SourceEval)))
	p, err := pretrain(ctx, c, res.Model.Config, store, src, world, progressW)
	if err != nil {
		return err
	}
	res.Pretrain = &p
	fmt.Fprintf(w, "pretrained %d steps in %.0f s (%.0f tokens/s)\n", p.Steps, p.Seconds, p.TokensPerSec)
	if world.Rank() != 0 {
		return nil
	}
	err = atomicfile.WriteDir(res.Model.Dir, func(dir string) error {
		if err := mamba.SaveHF(dir, store, res.Model.Config); err != nil {
			return err
		}
		return tok.Save(dir)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "saved the pretrained model and its tokenizer to %s\n", res.Model.Dir)
	return nil
}

// copyPretrained reads the model saved in dir into store's parameters.
func copyPretrained(dir string, store *layers.Store) error {
	saved, err := layers.NewStore(store.Dtype())
	if err != nil {
		return err
	}
	if _, err := mamba.LoadHF(dir, saved); err != nil {
		return err
	}
	for _, p := range store.Params() {
		q, ok := saved.Get(p.Name)
		if !ok || !q.Value.Shape().Eq(p.Value.Shape()) {
			return errors.Errorf("%s lacks %s %v, or has another shape", dir, p.Name, p.Value.Shape())
		}
		if err := tensor.Copy(p.Value, q.Value); err != nil {
			return errors.Wrapf(err, "copying %s", p.Name)
		}
	}
	return nil
}

// describe summarises an adapter's settings in one line.
func describe(a layers.Adapter) string {
	switch ad := a.(type) {
	case *layers.Lily:
		lc := ad.Config()
		return fmt.Sprintf("Lily r=%d stride_A=%d num_B=%d scaling=%g routing=%s", lc.R, lc.StrideA, lc.NumB, lc.Scaling, lc.Routing)
	case *layers.LoRA:
		lc := ad.Config()
		return fmt.Sprintf("LoRA r=%d alpha=%g (scaling %g)", lc.R, lc.Alpha, lc.Scaling())
	}
	return a.Method()
}
