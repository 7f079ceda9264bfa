package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/lilygo/lily/adapterfile"
	"github.com/lilygo/lily/dataparallel"
	"github.com/lilygo/lily/glue"
	"github.com/lilygo/lily/internal/outdir"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/train"
	"github.com/lilygo/lily/updatestats"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
)

// Kinds of run, as their output folders' records (internal/outdir) name
// them.
const (
	kindFinetune = "roberta-glue finetune"
	kindPretrain = "roberta-glue pretrain"
	kindSweep    = "roberta-glue sweep"
	kindDemo     = "roberta-glue demo"
	kindPredict  = "roberta-glue predict" // the submission files
	kindExport   = "roberta-glue export"
)

// Output names inside -out.
const (
	resultsFile     = "results.json"
	plotFile        = "training.png"
	updatesPlotFile = "updates.png"
	adapterDir      = "adapter"
)

// defaultMaxLen is -max_len when the model allows it.
const defaultMaxLen = 128

// lossWindow is how many steps the plotted training loss averages.
const lossWindow = 20

// trainFraction is the part of dev.tsv used for training when a task has no
// train.tsv (QNLI in ../shared/data).
const trainFraction = 0.8

// evalRecord is one evaluation during fine-tuning.
type evalRecord struct {
	Step       int                `json:"step"`
	Epoch      float64            `json:"epoch"`
	TrainLoss  float64            `json:"train_loss"` // mean over the steps since the previous evaluation
	Metrics    map[string]float64 `json:"metrics"`
	Mismatched map[string]float64 `json:"metrics_mismatched,omitempty"` // MNLI dev_mismatched
}

// bestRecord is the best evaluation by the task's primary metric.
type bestRecord struct {
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	evalRecord
}

// ftResult is results.json.
type ftResult struct {
	Config          ftConfig     `json:"config"`
	AdapterConfig   any          `json:"adapter_config"`
	ModelLayers     int          `json:"model_layers"`
	ModelHidden     int          `json:"model_hidden"`
	TrainExamples   int          `json:"train_examples"`
	EvalExamples    int          `json:"eval_examples"`
	EvalSplit       string       `json:"eval_split"`
	DataNote        string       `json:"data_note,omitempty"`
	TrainableParams int          `json:"trainable_params"`
	AdapterParams   int          `json:"adapter_params"`
	HeadParams      int          `json:"head_params"`
	TotalParams     int          `json:"total_params"`
	Summary         string       `json:"summary"`
	StepsPerEpoch   int          `json:"steps_per_epoch"`
	TotalSteps      int          `json:"total_steps"`
	Steps           int          `json:"steps_done"`
	Interrupted     bool         `json:"interrupted"`
	Evals           []evalRecord `json:"evals"`
	Best            *bestRecord  `json:"best"`
	Losses          []float64    `json:"train_loss_per_step"`
	WallSeconds     float64      `json:"wall_seconds"`
	TrainSeconds    float64      `json:"train_seconds"`
	EvalSeconds     float64      `json:"eval_seconds"`
	TokensPerSecond float64      `json:"train_tokens_per_second"` // real tokens, padding excluded
	AdapterDir      string       `json:"adapter_dir"`
	// Analysis measures the saved adapter's updates (Lily's mixing averaged
	// over the evaluation examples); none for a head only.
	Analysis *updatestats.Report `json:"analysis,omitempty"`
	Ranks    int                 `json:"mpi_ranks"`
	// ResumedFrom is the step a -resume continued from (0: not resumed).
	ResumedFrom int `json:"resumed_from,omitempty"`
}

// runHooks are the progress-bar writer and an optional callback for tests.
type runHooks struct {
	progress  io.Writer      // progress bar (os.Stderr when nil)
	afterStep func(step int) // called after every optimiser step
}

// taskData is what a fine-tuning run reads from the GLUE folder.
type taskData struct {
	train, eval []glue.Example
	mismatched  []glue.Example // MNLI only
	evalSplit   string
	note        string
}

// loadTaskData reads the task's train and dev splits; without train.tsv it
// splits dev.tsv (seeded) into a training and an evaluation part.
func loadTaskData(c ftConfig, task glue.Task) (taskData, error) {
	var d taskData
	dev, err := glue.Load(c.GlueDir, task.Name, "dev")
	if err != nil {
		return d, errors.Wrapf(err, "reading %s dev", task.Name)
	}
	d.eval, d.evalSplit = dev, "dev"
	trainPath, _ := glue.Path(c.GlueDir, task.Name, "train")
	if _, statErr := os.Stat(trainPath); errors.Is(statErr, os.ErrNotExist) {
		if d.train, d.eval, err = glue.Split(dev, trainFraction, c.Seed); err != nil {
			return d, err
		}
		d.evalSplit = fmt.Sprintf("dev (held-out %.0f%%)", 100*(1-trainFraction))
		d.note = fmt.Sprintf("%s has no train.tsv: training on a seeded %.0f%% of dev.tsv (%d examples) and evaluating on the other %d; these numbers are not comparable with GLUE dev results",
			task.Name, 100*trainFraction, len(d.train), len(d.eval))
	} else if d.train, err = glue.Load(c.GlueDir, task.Name, "train"); err != nil {
		return d, errors.Wrapf(err, "reading %s train", task.Name)
	}
	if task.Name == "mnli" {
		d.evalSplit = "dev_matched"
		if d.mismatched, err = glue.Load(c.GlueDir, task.Name, "dev_mismatched"); err != nil {
			return d, errors.Wrap(err, "reading mnli dev_mismatched")
		}
	}
	if len(d.train) == 0 || len(d.eval) == 0 {
		return d, errors.Errorf("%s: %d training and %d evaluation examples; need both", task.Name, len(d.train), len(d.eval))
	}
	return d, nil
}

// ftRun is one fine-tuning job in progress: the train.Task that train.Run
// drives.
type ftRun struct {
	c                             ftConfig
	task                          glue.Task
	sm                            *seqModel
	trainEx, evalEx, mismatchedEx []example // mismatchedEx: MNLI only
	tc                            train.Config
	res                           *ftResult
	batches                       *batchQueue
	// evalIdx are the batches of evalEx and then of mismatchedEx: the
	// evaluation units, each with one prediction per example.
	evalIdx  [][]int
	nMatched int // how many of evalIdx are evalEx's
	// bestSeen is the best score of the evals evaluations this process
	// printed, for the "(best)" mark.
	bestSeen float64
	evals    int
	w        io.Writer
}

// finetune runs one fine-tuning job as c describes (on every rank of an MPI
// job: train.World) and writes results.json, the plot and the adapter to
// c.Out, replacing the folder as a whole (rank 0 only). A cancelled ctx
// stops it after the current step; what was done is still written, with a
// checkpoint that -resume continues from.
func finetune(ctx context.Context, c ftConfig, w io.Writer, hooks runHooks) (*ftResult, error) {
	c.Flags.Fill() // the demo builds its configurations in code
	start := time.Now()
	world, err := train.World()
	if err != nil {
		return nil, err
	}
	rank0 := world.Rank() == 0
	if !rank0 {
		w, hooks.progress = io.Discard, io.Discard
	} else if err := c.folder().Admit(c.Resume); err != nil {
		return nil, err
	}
	r, err := newFTRun(c, w, world, hooks)
	if err != nil {
		return nil, err
	}
	defer r.sm.close()
	if rank0 && !c.Resume {
		if err := c.folder().Begin(false); err != nil {
			return nil, err
		}
	}
	run, err := train.Run(ctx, r.tc, r)
	if err != nil {
		return nil, err
	}
	r.record(run)
	if !rank0 {
		return r.res, nil
	}
	return r.finish(start)
}

// newFTRun loads the model and the data, attaches adapter and head, sets up
// the training and prints what the run will do.
func newFTRun(c ftConfig, w io.Writer, world dataparallel.Comm, hooks runHooks) (*ftRun, error) {
	task, err := glue.Lookup(c.Task)
	if err != nil {
		return nil, err
	}
	ck, tok, err := loadEncoder(c.Model, false)
	if err != nil {
		return nil, err
	}
	if c.MaxLen == 0 {
		c.MaxLen = min(defaultMaxLen, ck.Config.MaxSeqLen())
	}
	if c.MaxLen > ck.Config.MaxSeqLen() {
		return nil, errors.Errorf("-max_len %d exceeds the %d positions of the model in %s", c.MaxLen, ck.Config.MaxSeqLen(), c.Model)
	}
	if c.LilyStrideA == 0 {
		c.LilyStrideA = strideFor(ck.Config.NumHiddenLayers, c.recipeBlocks())
	}
	data, err := loadTaskData(c, task)
	if err != nil {
		return nil, err
	}
	r := &ftRun{c: c, task: task, w: w}
	if r.trainEx, err = encodeExamples(tok, task, data.train, c.MaxLen); err != nil {
		return nil, err
	}
	if r.evalEx, err = encodeExamples(tok, task, data.eval, c.MaxLen); err != nil {
		return nil, err
	}
	if data.mismatched != nil {
		if r.mismatchedEx, err = encodeExamples(tok, task, data.mismatched, c.MaxLen); err != nil {
			return nil, err
		}
	}
	ad, err := newAdapter(c)
	if err != nil {
		return nil, err
	}
	adapterN, err := layers.CountParams(ad, ck.Config.Sites())
	if err != nil {
		return nil, err
	}
	h := ck.Config.HiddenSize
	trained := adapterN + h*h + h + h*task.NumLabels + task.NumLabels // the classification head
	if err := finetuneNeed(ck.Config, trained, c.BatchSize, c.MaxLen).Check(); err != nil {
		return nil, errors.Wrapf(err, "fine-tuning with %s", describeAdapter(c))
	}
	if r.sm, err = newSeqModel(ck, ad, task.NumLabels, c.Seed, c.BatchSize, c.MaxLen); err != nil {
		return nil, err
	}
	res := &ftResult{Config: c, AdapterConfig: adapterConfig(ad), ModelLayers: ck.Config.NumHiddenLayers, ModelHidden: ck.Config.HiddenSize,
		TrainExamples: len(r.trainEx), EvalExamples: len(r.evalEx), EvalSplit: data.evalSplit, DataNote: data.note, Ranks: world.Size()}
	res.HeadParams, res.AdapterParams, res.TotalParams = r.sm.counts()
	res.TrainableParams = res.HeadParams + res.AdapterParams
	res.Summary = layers.Summary(res.TrainableParams, res.TotalParams)
	r.res = res
	r.tc = train.Config{Batch: c.BatchSize, GradAccum: c.GradAccum, Comm: world, Seed: c.Seed,
		Groups: r.sm.groups(c.HeadLR, c.AdapterLR, c.WeightDecay), EvalAt: r.evalAt, HigherIsBetter: true, KeepBest: true,
		Checkpoint: train.CheckpointDir(c.Out), SaveEvery: c.SaveEvery, Resume: c.Resume, Identity: c.identity(),
		Progress: hooks.progress, Desc: "train", ShownLR: 1, AfterStep: hooks.afterStep}
	if c.Adapter == "none" {
		r.tc.ShownLR = 0 // the progress bar shows the adapter's rate, or the head's without adapter
	}
	global := r.tc.GlobalBatch()
	res.StepsPerEpoch = (len(r.trainEx) + global - 1) / global
	res.TotalSteps = c.Epochs * res.StepsPerEpoch
	if c.MaxSteps > 0 {
		res.TotalSteps = c.MaxSteps
	}
	r.tc.Steps = res.TotalSteps
	if r.tc.Schedule, err = train.NewSchedule(res.TotalSteps, c.WarmupRatio); err != nil {
		r.sm.close()
		return nil, err
	}
	r.batches = &batchQueue{lengths: lengths(r.trainEx), size: global, rng: rand.New(rand.NewPCG(c.Seed, 1))}
	r.evalIdx = evalBatches(lengths(r.evalEx), c.BatchSize)
	r.nMatched = len(r.evalIdx)
	if r.mismatchedEx != nil {
		r.evalIdx = append(r.evalIdx, evalBatches(lengths(r.mismatchedEx), c.BatchSize)...)
	}

	fmt.Fprintf(w, "task %s: %d training examples, %d evaluation examples (%s), max_len %d\n", task.Name, len(r.trainEx), len(r.evalEx), data.evalSplit, c.MaxLen)
	if data.note != "" {
		fmt.Fprintf(w, "NOTE: %s\n", data.note)
	}
	fmt.Fprintf(w, "model %s: %d layers, hidden %d; adapter %s %s\n", c.Model, ck.Config.NumHiddenLayers, ck.Config.HiddenSize, c.Adapter, describeAdapter(c))
	fmt.Fprintf(w, "%s (adapter %d + head %d)\n", res.Summary, res.AdapterParams, res.HeadParams)
	fmt.Fprintf(w, "%d steps (%d per epoch) of %d examples (batch %d × grad_accum %d × %d ranks), head lr %g, adapter lr %g, warm-up %g, weight decay %g\n",
		res.TotalSteps, res.StepsPerEpoch, global, c.BatchSize, r.tc.GradAccum, world.Size(), c.HeadLR, c.AdapterLR, c.WarmupRatio, c.WeightDecay)
	if len(c.FromRecipe) > 0 {
		fmt.Fprintf(w, "from the %s recipe: %s\n", task.Name, strings.Join(c.FromRecipe, ", "))
	}
	return r, nil
}

// identity is what a resumed run must share with the run it continues.
func (c ftConfig) identity() ftConfig {
	c.Out, c.SaveEvery = "", 0
	return c
}

// evalAt reports whether to evaluate after step: every -eval_every steps,
// or at the end of every epoch (train.Run adds the last step).
func (r *ftRun) evalAt(step int) bool {
	if r.c.EvalEvery > 0 {
		return step%r.c.EvalEvery == 0
	}
	return step%r.res.StepsPerEpoch == 0
}

// batchQueue draws the global batches, epoch after epoch (trainBatches),
// from its seeded generator.
type batchQueue struct {
	lengths []int
	size    int
	rng     *rand.Rand
	queue   [][]int
}

// next returns the next global batch.
func (q *batchQueue) next() []int {
	if len(q.queue) == 0 {
		q.queue = trainBatches(q.lengths, q.size, q.rng)
	}
	idx := q.queue[0]
	q.queue = q.queue[1:]
	return idx
}

// evalMetrics is an evaluation's record: the task's metrics on the
// evaluation split (and for MNLI on dev_mismatched).
type evalMetrics struct {
	Metrics    map[string]float64 `json:"metrics"`
	Mismatched map[string]float64 `json:"metrics_mismatched,omitempty"`
}

// Batch returns the next global batch of the epochs' order.
func (r *ftRun) Batch(int) ([]int, error) { return r.batches.next(), nil }

// Forward runs forward and backward on a micro-batch, with dropout from
// the micro-batch's own generator.
func (r *ftRun) Forward(m train.Micro) (float64, G.Nodes, int, error) {
	return r.sm.forward(r.trainEx, m.Examples, r.c.MaxLen, m.Rand)
}

// EvalUnits: one unit per evaluation batch, with one prediction per
// example.
func (r *ftRun) EvalUnits() []int {
	out := make([]int, len(r.evalIdx))
	for i, idx := range r.evalIdx {
		out[i] = len(idx)
	}
	return out
}

// EvalUnit predicts the examples of evaluation batch i into out.
func (r *ftRun) EvalUnit(i int, out []float64) error {
	exs := r.evalEx
	if i >= r.nMatched {
		exs = r.mismatchedEx
	}
	logits, err := r.sm.batchLogits(exs, r.evalIdx[i], r.c.MaxLen, nil)
	if err != nil {
		return err
	}
	copy(out, r.sm.decide(logits))
	return nil
}

// Metrics computes the task's metrics from the gathered predictions; the
// score is the task's primary metric.
func (r *ftRun) Metrics(stats [][]float64) (evalMetrics, float64, error) {
	var e evalMetrics
	var err error
	if e.Metrics, err = r.metricsOf(r.evalEx, r.evalIdx[:r.nMatched], stats[:r.nMatched]); err != nil {
		return e, 0, err
	}
	if r.mismatchedEx != nil {
		if e.Mismatched, err = r.metricsOf(r.mismatchedEx, r.evalIdx[r.nMatched:], stats[r.nMatched:]); err != nil {
			return e, 0, err
		}
	}
	return e, e.Metrics[r.task.Primary], nil
}

// metricsOf puts the batches' predictions back in example order and scores
// them against the gold labels.
func (r *ftRun) metricsOf(exs []example, batches [][]int, stats [][]float64) (map[string]float64, error) {
	preds := make([]float64, len(exs))
	for b, idx := range batches {
		for k, i := range idx {
			preds[i] = stats[b][k]
		}
	}
	return scoreTask(r.task, exs, preds)
}

// Evaluated prints every evaluation, marking the best so far.
func (r *ftRun) Evaluated(e train.Evaluation[evalMetrics]) {
	rec := r.evalRecord(e)
	mark := ""
	if r.evals == 0 || e.Score > r.bestSeen {
		r.bestSeen, mark = e.Score, "  (best)"
	}
	r.evals++
	fmt.Fprintf(r.w, "\nstep %d (epoch %.2f): train loss %.4f, %s%s\n", rec.Step, rec.Epoch, rec.TrainLoss, formatMetrics(rec), mark)
}

// evalRecord is an evaluation as results.json records it.
func (r *ftRun) evalRecord(e train.Evaluation[evalMetrics]) evalRecord {
	return evalRecord{Step: e.Step, Epoch: float64(e.Step) / float64(r.res.StepsPerEpoch), TrainLoss: e.TrainLoss,
		Metrics: e.Record.Metrics, Mismatched: e.Record.Mismatched}
}

// record copies what train.Run did into results.json's fields.
func (r *ftRun) record(run *train.Result[evalMetrics]) {
	res := r.res
	res.Evals = nil
	for _, e := range run.Evals {
		res.Evals = append(res.Evals, r.evalRecord(e))
	}
	if b, ok := run.BestEval(); ok {
		res.Best = &bestRecord{Metric: r.task.Primary, Value: b.Score, evalRecord: res.Evals[run.Best]}
	}
	res.Steps, res.Interrupted, res.Losses, res.ResumedFrom = run.Steps, run.Interrupted, run.Losses, run.ResumedFrom
	res.TrainSeconds, res.EvalSeconds = run.TrainSeconds, run.EvalSeconds
	if run.TrainSeconds > 0 {
		res.TokensPerSecond = float64(run.Tokens*res.Ranks) / run.TrainSeconds
	}
}

// finish writes the adapter (train.Run left the best evaluation's weights
// in the store), the plot and results.json: a finished run replaces the
// folder, an interrupted one keeps its checkpoint beside them.
func (r *ftRun) finish(start time.Time) (*ftResult, error) {
	res, w := r.res, r.w
	if res.Interrupted {
		fmt.Fprintf(w, "interrupted after step %d of %d; writing what was done (continue with -resume)\n", res.Steps, res.TotalSteps)
	}
	res.AdapterDir = filepath.Join(r.c.Out, adapterDir)
	err := r.c.folder().End(!res.Interrupted, func(dir string) error {
		if err := writeFinetuneOutputs(dir, r.c, r.sm, r.task, res); err != nil {
			return err
		}
		observe := func(cal *layers.MixingCalibrator) error {
			_, err := r.sm.predictObserving(r.evalEx, r.c.BatchSize, r.c.MaxLen, cal.Observe)
			return err
		}
		title := fmt.Sprintf("%s, %s", r.task.Name, r.c.Adapter)
		var err error
		if res.Analysis, err = updatestats.Measure(r.sm.store, r.sm.adapter, r.sm.cfg.Sites(), observe, filepath.Join(dir, updatesPlotFile), title); err != nil {
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
	if res.Best != nil {
		fmt.Fprintf(w, "best %s %.4f at step %d (epoch %.2f); %s\n", res.Best.Metric, res.Best.Value, res.Best.Step, res.Best.Epoch, formatMetrics(res.Best.evalRecord))
	} else {
		fmt.Fprintln(w, "no evaluation was run; the adapter holds the weights of the last step")
	}
	fmt.Fprintf(w, "wrote %s, %s and %s/ to %s (%.0f s, %.0f tokens/s)\n", resultsFile, plotFile, adapterDir, r.c.Out, res.WallSeconds, res.TokensPerSecond)
	return res, nil
}

// folder is the run's output folder.
func (c ftConfig) folder() outdir.Folder {
	return outdir.Folder{Flag: "-out", Path: c.Out, Kind: kindFinetune, Overwrite: c.Overwrite, Resumable: true}
}

// evaluate predicts every example and computes the task's metrics.
func evaluate(sm *seqModel, task glue.Task, exs []example, c ftConfig) (map[string]float64, error) {
	preds, err := sm.predict(exs, c.BatchSize, c.MaxLen)
	if err != nil {
		return nil, err
	}
	return scoreTask(task, exs, preds)
}

// scoreTask computes the task's metrics of the predictions of exs.
func scoreTask(task glue.Task, exs []example, preds []float64) (map[string]float64, error) {
	golds := make([]float64, len(exs))
	for i, e := range exs {
		golds[i] = e.gold
	}
	return glue.Evaluate(task.Name, preds, golds)
}

// writeFinetuneOutputs saves the adapter with the head and its task record,
// and the plot, to dir.
func writeFinetuneOutputs(dir string, c ftConfig, sm *seqModel, task glue.Task, res *ftResult) error {
	err := adapterfile.Save(filepath.Join(dir, adapterDir), sm.store, sm.adapter, sm.cfg.Sites(),
		adapterfile.Options{BaseModel: c.Model, TaskType: "SEQ_CLS", PEFTLayout: c.PEFTLayout})
	if err != nil {
		return errors.Wrap(err, "saving the adapter")
	}
	rec := taskRecord{Task: task.Name, Labels: task.Labels, NumLabels: task.NumLabels, MaxLen: c.MaxLen, BatchSize: c.BatchSize,
		Seed: c.Seed, EvalSplit: res.EvalSplit, Model: c.Model}
	if rec.ModelSHA256, err = weightsHash(c.Model); err != nil {
		return err
	}
	if err := rec.write(filepath.Join(dir, adapterDir)); err != nil {
		return err
	}
	var lossX []float64
	smoothed := smooth(res.Losses, lossWindow)
	for i := range smoothed {
		lossX = append(lossX, float64(i+1))
	}
	var evalX, evalY []float64
	for _, e := range res.Evals {
		evalX = append(evalX, float64(e.Step))
		evalY = append(evalY, e.Metrics[task.Primary])
	}
	title := fmt.Sprintf("%s, %s: training loss and %s %s", task.Name, c.Adapter, res.EvalSplit, task.Primary)
	return train.Plot(filepath.Join(dir, plotFile), title, "step", "loss / metric",
		train.Series{Name: fmt.Sprintf("training loss (mean of %d steps)", lossWindow), X: lossX, Y: smoothed},
		train.Series{Name: res.EvalSplit + " " + task.Primary, X: evalX, Y: evalY})
}

// formatMetrics renders an evaluation's metrics in a stable order.
func formatMetrics(r evalRecord) string {
	var parts []string
	add := func(prefix string, m map[string]float64) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s%s %.4f", prefix, k, m[k]))
		}
	}
	add("", r.Metrics)
	add("mismatched ", r.Mismatched)
	return strings.Join(parts, ", ")
}

// describeAdapter summarises the adapter settings in one line.
func describeAdapter(c ftConfig) string {
	switch c.Adapter {
	case "lily":
		return fmt.Sprintf("(r %d, stride_A %d, num_B %d, scaling %g, targets %s, routing %s)", c.LilyR, c.LilyStrideA, c.LilyNumB, c.LilyScaling, c.LilyTargets, c.LilyRouting)
	case "lora":
		return fmt.Sprintf("(r %d, alpha %g, targets %s)", c.LoraR, c.LoraAlpha, c.LoraTargets)
	}
	return "(head only)"
}
