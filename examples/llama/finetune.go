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
	G "gorgonia.org/gorgonia"
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
	Ranks      int                 `json:"mpi_ranks"`
	// ResumedFrom is the step a -resume continued from (0: not resumed).
	ResumedFrom int `json:"resumed_from,omitempty"`
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
	b, err := loadBase(c.Checkpoint, c.Tokenizer, c.BaseDtype, c.memoryNeed)
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
	return &setup{base: b, adapter: a, lm: newLM(b.cfg, b.store, a)}, nil
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

// finetune runs one fine-tuning job as c describes (on every rank of an MPI
// job: train.World) and writes results.json, the plot and the adapter to
// c.Out, replacing the folder as a whole (rank 0 only). A cancelled ctx
// stops it after the current step; what was done is still written, with a
// checkpoint that -resume continues from. Progress bars go to progress;
// cache (may be nil) shares tokenized text between runs.
func finetune(ctx context.Context, c ftConfig, w, progress io.Writer, cache corpusCache) (*ftResult, error) {
	start := time.Now()
	world, err := train.World()
	if err != nil {
		return nil, err
	}
	rank0 := world.Rank() == 0
	if !rank0 {
		w = io.Discard
	} else if err := c.folder().Admit(c.Resume); err != nil {
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
	if rank0 && !c.Resume {
		if err := c.folder().Begin(false); err != nil {
			return nil, err
		}
	}
	cfg := su.base.cfg
	res := &ftResult{Config: c, AdapterConfig: adapterConfig(su.adapter), Data: data.source, BLAS: lilyop.BLAS,
		Model:         modelInfo{cfg.Dim, cfg.HiddenDim, cfg.NLayers, cfg.NHeads, cfg.NKVHeads, cfg.VocabSize},
		TrainExamples: len(data.train), TrainTokens: data.trainTokens, EvalExamples: len(data.eval), Ranks: world.Size()}
	res.TrainableParams, res.TotalParams = su.base.store.Count()
	res.Summary = layers.Summary(res.TrainableParams, res.TotalParams)
	sched, err := train.NewSchedule(c.MaxSteps, c.WarmupRatio)
	if err != nil {
		return nil, err
	}
	tc := train.Config{Steps: c.MaxSteps, Batch: c.BatchSize, GradAccum: c.GradAccum, Schedule: sched, Comm: world, Seed: c.Seed,
		Groups:    []*train.Group{train.NewGroup("trainable", su.base.store.Trainable(), c.LR, c.WeightDecay)},
		EvalAt:    func(s int) bool { return c.EvalEvery > 0 && s%c.EvalEvery == 0 },
		EvalFirst: true, KeepBest: true, Checkpoint: train.CheckpointDir(c.Out), SaveEvery: c.SaveEvery, Resume: c.Resume,
		Identity: c.identity(), Progress: progress, Desc: "train", AfterStep: afterStep}
	if tc.GlobalBatch() > len(data.train) {
		return nil, errors.Errorf("a step takes %d training texts (-batch_size %d × -grad_accum %d × %d ranks) but there are only %d", tc.GlobalBatch(), c.BatchSize, tc.GradAccum, world.Size(), len(data.train))
	}
	fmt.Fprintf(w, "model %s: dim %d, %d layers, %d heads (%d kv), vocab %d\n", c.Checkpoint, cfg.Dim, cfg.NLayers, cfg.NHeads, cfg.NKVHeads, cfg.VocabSize)
	fmt.Fprintf(w, "data: %s: %d training texts (%d tokens), %d held-out texts, max_len %d\n", data.source, len(data.train), data.trainTokens, len(data.eval), c.MaxLen)
	fmt.Fprintf(w, "%s\n%s\n", describeAdapter(c), res.Summary)
	fmt.Fprintf(w, "%d steps of %d texts (batch %d × grad_accum %d × %d ranks), lr %g, warm-up %g, weight decay %g, seed %d, BLAS %s\n",
		c.MaxSteps, tc.GlobalBatch(), c.BatchSize, tc.GradAccum, world.Size(), c.LR, c.WarmupRatio, c.WeightDecay, c.Seed, lilyop.BLAS)

	task := &lmTask{lm: su.lm, data: data, maxLen: c.MaxLen, w: w,
		batches: newBatcher(lengths(data.train), tc.GlobalBatch(), rand.New(rand.NewPCG(c.Seed, 1))),
		evalIdx: evalBatches(lengths(data.eval), c.BatchSize)}
	run, err := train.Run(ctx, tc, task)
	if err != nil {
		return nil, err
	}
	data.base = &run.Evals[0].Record
	for _, e := range run.Evals {
		res.Evals = append(res.Evals, evalRecord{Step: e.Step, TrainLoss: e.TrainLoss, evalResult: e.Record})
	}
	res.Base, res.Best, res.Final = res.Evals[0].evalResult, res.Evals[run.Best], res.Evals[len(res.Evals)-1]
	res.Steps, res.Interrupted, res.Losses, res.ResumedFrom = run.Steps, run.Interrupted, run.Losses, run.ResumedFrom
	if res.Interrupted {
		fmt.Fprintf(w, "interrupted after step %d of %d; writing what was done (continue with -resume)\n", run.Steps, c.MaxSteps)
	}
	res.SavedStep = res.Best.Step
	res.TrainSeconds, res.EvalSeconds = run.TrainSeconds, run.EvalSeconds
	if run.TrainSeconds > 0 {
		res.TokensPerSecond = float64(run.Tokens*world.Size()) / run.TrainSeconds
	}
	if !rank0 {
		return res, nil
	}
	res.AdapterDir = filepath.Join(c.Out, adapterDir)
	err = c.folder().End(!res.Interrupted, func(dir string) error {
		if err := writeOutputs(dir, c, su, res); err != nil {
			return err
		}
		observe := func(cal *layers.MixingCalibrator) error {
			_, err := su.lm.evaluateObserving(data.eval, task.evalIdx, c.MaxLen, cal.Observe)
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

// afterStep, when set, is called after every optimiser step of a
// fine-tuning run; tests set it to kill the process there.
var afterStep func(steps int)

// identity is what a resumed run must share with the run it continues.
func (c ftConfig) identity() ftConfig {
	c.Out, c.SaveEvery = "", 0
	return c
}

// lmTask is fine-tuning as train.Run drives it.
type lmTask struct {
	lm      *lm
	data    *corpus
	maxLen  int
	w       io.Writer
	batches *batcher
	evalIdx [][]int
}

// Batch draws the next global batch.
func (t *lmTask) Batch(int) ([]int, error) { return t.batches.next(), nil }

// Forward runs forward and backward on a micro-batch of training texts.
func (t *lmTask) Forward(m train.Micro) (float64, G.Nodes, int, error) {
	batch, length := gather(t.data.train, m.Examples, t.maxLen)
	lg, loss, err := t.lm.forward(true, batch, length)
	if err != nil {
		return 0, nil, 0, err
	}
	tokens := 0
	for _, s := range batch {
		tokens += len(s)
	}
	return loss, lg.g.Learnables(), tokens, nil
}

// EvalUnits: one unit per held-out batch, with its summed loss and its
// number of predicted tokens.
func (t *lmTask) EvalUnits() []int {
	out := make([]int, len(t.evalIdx))
	for i := range out {
		out[i] = 2
	}
	return out
}

// EvalUnit evaluates held-out batch i.
func (t *lmTask) EvalUnit(i int, out []float64) error {
	return t.lm.evalBatch(t.data.eval, t.evalIdx[i], t.maxLen, nil, out)
}

// Metrics is the token-weighted held-out loss; lower perplexity is better.
func (t *lmTask) Metrics(stats [][]float64) (evalResult, float64, error) {
	t.lm.releaseEval()
	r, err := sumEval(stats)
	return r, r.Perplexity, err
}

// Baseline is the base model's held-out figure when a sweep's earlier run
// measured it.
func (t *lmTask) Baseline() (evalResult, float64, bool) {
	if t.data.base == nil {
		return evalResult{}, 0, false
	}
	return *t.data.base, t.data.base.Perplexity, true
}

// Evaluated prints every evaluation.
func (t *lmTask) Evaluated(e train.Evaluation[evalResult]) {
	if e.Step == 0 {
		fmt.Fprintf(t.w, "held-out perplexity before training: %.3f (%d predicted tokens)\n", e.Record.Perplexity, e.Record.Tokens)
		return
	}
	fmt.Fprintf(t.w, "\nstep %d: train loss %.4f, held-out perplexity %.3f\n", e.Step, e.TrainLoss, e.Record.Perplexity)
}

// folder is the run's output folder.
func (c ftConfig) folder() outdir.Folder {
	return outdir.Folder{Flag: "-out", Path: c.Out, Kind: kindFinetune, Overwrite: c.Overwrite, Resumable: true}
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
