package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/lilygo/lily/adapterfile"
	"github.com/lilygo/lily/internal/outdir"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/train"
	"github.com/lilygo/lily/updatestats"
	"github.com/pkg/errors"
)

// Kinds of run, as their output folders' records (internal/outdir) name
// them.
const (
	kindFinetune = "llama finetune"
	kindSweep    = "llama sweep"
	kindExport   = "llama export"
)

// Output names inside -out.
const (
	resultsFile     = "results.json"
	plotFile        = "perplexity.png"
	updatesPlotFile = "updates.png"
	adapterDir      = "adapter"
)

// evalRecord is one held-out evaluation.
type evalRecord struct {
	Step      int     `json:"step"`
	TrainLoss float64 `json:"train_loss,omitempty"` // mean over the steps since the previous evaluation
	evalResult
}

// modelInfo describes the base model in results.json.
type modelInfo struct {
	Dim       int `json:"dim"`
	HiddenDim int `json:"hidden_dim"`
	Layers    int `json:"layers"`
	Heads     int `json:"heads"`
	KVHeads   int `json:"kv_heads"`
	Vocab     int `json:"vocab"`
}

// ftResult is results.json.
type ftResult struct {
	Config          ftConfig     `json:"config"`
	AdapterConfig   any          `json:"adapter_config,omitempty"`
	Model           modelInfo    `json:"model"`
	Data            string       `json:"data"`
	TrainExamples   int          `json:"train_examples"`
	TrainTokens     int          `json:"train_tokens"`
	EvalExamples    int          `json:"eval_examples"`
	TrainableParams int          `json:"trainable_params"`
	TotalParams     int          `json:"total_params"`
	Summary         string       `json:"summary"`
	BLAS            string       `json:"blas"`
	Base            evalResult   `json:"base"` // the model before training (adapters start as the identity)
	Evals           []evalRecord `json:"evals"`
	Best            evalRecord   `json:"best"`
	Final           evalRecord   `json:"final"`
	Steps           int          `json:"steps_done"`
	Interrupted     bool         `json:"interrupted"`
	Losses          []float64    `json:"train_loss_per_step"`
	WallSeconds     float64      `json:"wall_seconds"`
	TrainSeconds    float64      `json:"train_seconds"`
	EvalSeconds     float64      `json:"eval_seconds"`
	TokensPerSecond float64      `json:"train_tokens_per_second"` // real tokens, padding excluded
	// Analysis measures the saved adapter's updates (Lily's mixing averaged
	// over the held-out texts); none for full fine-tuning.
	Analysis   *updatestats.Report `json:"analysis,omitempty"`
	AdapterDir string              `json:"adapter_dir"`
	SavedStep  int                 `json:"saved_step"` // the step whose weights adapter_dir holds (the best evaluation)
}

// setup is a loaded model with its adapter attached, ready to train.
type setup struct {
	base    *base
	adapter layers.Adapter
	lm      *lm
}

// prepare loads the model, attaches the adapter (initialised from the seed)
// or, for full fine-tuning, makes every weight trainable.
func prepare(c ftConfig) (*setup, error) {
	b, err := loadBase(c.Checkpoint, c.Tokenizer)
	if err != nil {
		return nil, err
	}
	a, err := newAdapter(c)
	if err != nil {
		return nil, err
	}
	trained := 0
	if c.Adapter == "full" {
		_, trained = b.store.Count()
	} else if trained, err = layers.CountParams(a, b.cfg.Sites()); err != nil {
		return nil, err
	}
	if err := finetuneNeed(b.cfg, float64(trained), c.Adapter == "full", c.BatchSize, c.MaxLen).Check(); err != nil {
		return nil, errors.Wrapf(err, "fine-tuning with %s", describeAdapter(c))
	}
	if c.Adapter == "full" {
		for _, p := range b.store.Params() {
			p.Trainable = true
		}
	} else {
		b.store.Freeze()
		if err := layers.Attach(b.store, a, b.cfg.Sites(), rand.New(rand.NewPCG(c.Seed, 3))); err != nil {
			return nil, err
		}
	}
	return &setup{base: b, adapter: a, lm: newLM(b.cfg, b.store, a, c.LR, c.WeightDecay)}, nil
}

// adapterConfig returns the adapter's own configuration for results.json.
func adapterConfig(a layers.Adapter) any {
	switch ad := a.(type) {
	case *layers.Lily:
		return ad.Config()
	case *layers.LoRA:
		return ad.Config()
	}
	return nil
}

// finetune runs one fine-tuning job as c describes and writes results.json,
// the plot and the adapter to c.Out, replacing the folder as a whole. A
// cancelled ctx stops it after the current step; what was done is still
// written. Progress bars go to progress; cache (may be nil) shares
// tokenized text between runs.
func finetune(ctx context.Context, c ftConfig, w, progress io.Writer, cache corpusCache) (*ftResult, error) {
	start := time.Now()
	if err := c.folder().Check(); err != nil {
		return nil, err
	}
	su, err := prepare(c)
	if err != nil {
		return nil, err
	}
	defer su.lm.close()
	data, err := loadCorpus(c, su.base.tok, cache)
	if err != nil {
		return nil, err
	}
	cfg := su.base.cfg
	res := &ftResult{Config: c, AdapterConfig: adapterConfig(su.adapter), Data: data.source, BLAS: lilyop.BLAS,
		Model:         modelInfo{cfg.Dim, cfg.HiddenDim, cfg.NLayers, cfg.NHeads, cfg.NKVHeads, cfg.VocabSize},
		TrainExamples: len(data.train), TrainTokens: data.trainTokens, EvalExamples: len(data.eval)}
	res.TrainableParams, res.TotalParams = su.base.store.Count()
	res.Summary = layers.Summary(res.TrainableParams, res.TotalParams)
	sched, err := train.NewSchedule(c.MaxSteps, c.WarmupRatio)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "model %s: dim %d, %d layers, %d heads (%d kv), vocab %d\n", c.Checkpoint, cfg.Dim, cfg.NLayers, cfg.NHeads, cfg.NKVHeads, cfg.VocabSize)
	fmt.Fprintf(w, "data: %s: %d training texts (%d tokens), %d held-out texts, max_len %d\n", data.source, len(data.train), data.trainTokens, len(data.eval), c.MaxLen)
	fmt.Fprintf(w, "%s\n%s\n", describeAdapter(c), res.Summary)
	fmt.Fprintf(w, "%d steps, batch %d, lr %g, warm-up %g, weight decay %g, seed %d, BLAS %s\n", c.MaxSteps, c.BatchSize, c.LR, c.WarmupRatio, c.WeightDecay, c.Seed, lilyop.BLAS)

	evalIdx := evalBatches(lengths(data.eval), c.BatchSize)
	var evalTime time.Duration
	evalAt := func(step int, trainLoss float64) (evalRecord, error) {
		t0 := time.Now()
		r, err := su.lm.evaluate(data.eval, evalIdx, c.MaxLen)
		evalTime += time.Since(t0)
		return evalRecord{Step: step, TrainLoss: trainLoss, evalResult: r}, err
	}
	first := evalRecord{}
	if data.base != nil {
		first.evalResult = *data.base
	} else if first, err = evalAt(0, 0); err != nil {
		return nil, err
	}
	data.base = &first.evalResult
	res.Base, res.Evals, res.Best = first.evalResult, []evalRecord{first}, first
	fmt.Fprintf(w, "held-out perplexity before training: %.3f (%d predicted tokens)\n", first.Perplexity, first.Tokens)
	bestSnap := su.lm.snapshot()

	batches := newBatcher(lengths(data.train), c.BatchSize, rand.New(rand.NewPCG(c.Seed, 1)))
	bar := train.NewProgress(c.MaxSteps, "train", progress)
	var trainTime time.Duration
	tokens, lossSince, stepsSince := 0, 0.0, 0
	step := 0
	for step < c.MaxSteps {
		if ctx.Err() != nil {
			res.Interrupted = true
			break
		}
		batch, length := gather(data.train, batches.next(), c.MaxLen)
		t0 := time.Now()
		loss, err := su.lm.trainStep(batch, length, sched, step)
		if err != nil {
			return nil, err
		}
		trainTime += time.Since(t0)
		step++
		for _, s := range batch {
			tokens += len(s)
		}
		lossSince += loss
		stepsSince++
		res.Losses = append(res.Losses, loss)
		bar.Step("train", loss, c.LR*sched.Factor(step-1))
		if step != c.MaxSteps && (c.EvalEvery == 0 || step%c.EvalEvery != 0) {
			continue
		}
		rec, err := evalAt(step, lossSince/float64(stepsSince))
		if err != nil {
			return nil, err
		}
		lossSince, stepsSince = 0, 0
		res.Evals = append(res.Evals, rec)
		if rec.Perplexity < res.Best.Perplexity {
			res.Best, bestSnap = rec, su.lm.snapshot()
		}
		fmt.Fprintf(w, "\nstep %d: train loss %.4f, held-out perplexity %.3f\n", step, rec.TrainLoss, rec.Perplexity)
	}
	bar.Finish()
	res.Steps = step
	res.Final = res.Evals[len(res.Evals)-1]
	if res.Interrupted {
		fmt.Fprintf(w, "interrupted after step %d of %d; writing what was done\n", step, c.MaxSteps)
	}
	su.lm.restore(bestSnap)
	res.SavedStep = res.Best.Step
	res.TrainSeconds, res.EvalSeconds = trainTime.Seconds(), evalTime.Seconds()
	if trainTime > 0 {
		res.TokensPerSecond = float64(tokens) / trainTime.Seconds()
	}
	res.AdapterDir = filepath.Join(c.Out, adapterDir)
	err = c.folder().Write(!res.Interrupted, func(dir string) error {
		if err := writeOutputs(dir, c, su, res); err != nil {
			return err
		}
		observe := func(cal *layers.MixingCalibrator) error {
			_, err := su.lm.evaluateObserving(data.eval, evalIdx, c.MaxLen, cal.Observe)
			return err
		}
		title := fmt.Sprintf("%s on %s", describeShort(c), c.dataName())
		var err error
		if res.Analysis, err = updatestats.Measure(su.base.store, su.adapter, cfg.Sites(), observe, filepath.Join(dir, updatesPlotFile), title); err != nil {
			return err
		}
		res.WallSeconds = time.Since(start).Seconds()
		return train.WriteJSON(filepath.Join(dir, resultsFile), res)
	})
	if err != nil {
		return nil, err
	}
	if res.Analysis != nil {
		fmt.Fprintln(w, res.Analysis.Describe())
	}
	fmt.Fprintf(w, "held-out perplexity: base %.3f, final %.3f (step %d), best %.3f (step %d, saved)\n",
		res.Base.Perplexity, res.Final.Perplexity, res.Final.Step, res.Best.Perplexity, res.Best.Step)
	fmt.Fprintf(w, "wrote %s, %s and %s/ to %s (%.0f s, %.0f training tokens/s)\n", resultsFile, plotFile, adapterDir, c.Out, res.WallSeconds, res.TokensPerSecond)
	return res, nil
}

// folder is the run's output folder.
func (c ftConfig) folder() outdir.Folder {
	return outdir.Folder{Flag: "-out", Path: c.Out, Kind: kindFinetune, Overwrite: c.Overwrite}
}

// writeOutputs saves the adapter (for full fine-tuning: every weight) and
// the perplexity plot to dir.
func writeOutputs(dir string, c ftConfig, su *setup, res *ftResult) error {
	err := adapterfile.Save(filepath.Join(dir, adapterDir), su.base.store, su.adapter, su.base.cfg.Sites(),
		adapterfile.Options{BaseModel: c.Checkpoint, TaskType: "CAUSAL_LM", PEFTLayout: c.PEFTLayout})
	if err != nil {
		return errors.Wrap(err, "saving the adapter")
	}
	title := fmt.Sprintf("%s on %s: held-out perplexity", describeShort(c), c.dataName())
	return train.Plot(filepath.Join(dir, plotFile), title, "step", "perplexity", curves(res)...)
}

// curves returns the held-out perplexity and, from the first evaluation
// after training started, the training perplexity (exp of the mean training
// loss since the previous evaluation).
func curves(res *ftResult) []train.Series {
	held := train.Series{Name: "held-out perplexity"}
	tr := train.Series{Name: "training perplexity (mean since the previous evaluation)"}
	for _, e := range res.Evals {
		held.X, held.Y = append(held.X, float64(e.Step)), append(held.Y, e.Perplexity)
		if e.Step > 0 {
			tr.X, tr.Y = append(tr.X, float64(e.Step)), append(tr.Y, math.Exp(e.TrainLoss))
		}
	}
	return []train.Series{held, tr}
}

// describeShort names the method and its size, e.g. "lily r8" or "lora r2".
func describeShort(c ftConfig) string {
	switch c.Adapter {
	case "lily":
		if c.LilyUniform {
			return fmt.Sprintf("lily r%d (uniform mixing)", c.LilyR)
		}
		return fmt.Sprintf("lily r%d (%s routing)", c.LilyR, c.LilyRouting)
	case "lora":
		return fmt.Sprintf("lora r%d", c.LoraR)
	}
	return "full fine-tuning"
}

// dataName is a short name of the training text.
func (c ftConfig) dataName() string {
	if c.TrainFile != "" {
		return filepath.Base(c.TrainFile)
	}
	return c.GlueTask
}
