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
	"github.com/lilygo/lily/glue"
	"github.com/lilygo/lily/internal/outdir"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/train"
	"github.com/lilygo/lily/updatestats"
	"github.com/pkg/errors"
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
	TokensPerSecond float64      `json:"train_tokens_per_second"` // real tokens, padding excluded
	AdapterDir      string       `json:"adapter_dir"`
	// Analysis measures the saved adapter's updates (Lily's mixing averaged
	// over the evaluation examples); none for a head only.
	Analysis *updatestats.Report `json:"analysis,omitempty"`
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

// ftRun is one fine-tuning job in progress.
type ftRun struct {
	c                             ftConfig
	task                          glue.Task
	sm                            *seqModel
	trainEx, evalEx, mismatchedEx []example // mismatchedEx: MNLI only
	sched                         train.Schedule
	res                           *ftResult
	best                          map[string][]float64 // trainable values at the best evaluation
	w                             io.Writer
}

// finetune runs one fine-tuning job as c describes and writes results.json,
// the plot and the adapter to c.Out, replacing the folder as a whole. A
// cancelled ctx stops it after the current step; what was done is still
// written.
func finetune(ctx context.Context, c ftConfig, w io.Writer, hooks runHooks) (*ftResult, error) {
	start := time.Now()
	r, err := newFTRun(c, w)
	if err != nil {
		return nil, err
	}
	defer r.sm.close()
	if err := r.run(ctx, hooks); err != nil {
		return nil, err
	}
	return r.finish(start)
}

// newFTRun loads the model and the data, attaches adapter and head, and
// prints what the run will do.
func newFTRun(c ftConfig, w io.Writer) (*ftRun, error) {
	task, err := glue.Lookup(c.Task)
	if err != nil {
		return nil, err
	}
	if err := c.folder().Check(); err != nil {
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
	if r.sm, err = newSeqModel(ck, ad, task.NumLabels, c.Seed, c.HeadLR, c.AdapterLR, c.WeightDecay, c.BatchSize, c.MaxLen); err != nil {
		return nil, err
	}
	res := &ftResult{Config: c, AdapterConfig: adapterConfig(ad), ModelLayers: ck.Config.NumHiddenLayers, ModelHidden: ck.Config.HiddenSize,
		TrainExamples: len(r.trainEx), EvalExamples: len(r.evalEx), EvalSplit: data.evalSplit, DataNote: data.note}
	res.HeadParams, res.AdapterParams, res.TotalParams = r.sm.counts()
	res.TrainableParams = res.HeadParams + res.AdapterParams
	res.Summary = layers.Summary(res.TrainableParams, res.TotalParams)
	res.StepsPerEpoch = (len(r.trainEx) + c.BatchSize - 1) / c.BatchSize
	res.TotalSteps = c.Epochs * res.StepsPerEpoch
	if c.MaxSteps > 0 {
		res.TotalSteps = c.MaxSteps
	}
	r.res = res
	if r.sched, err = train.NewSchedule(res.TotalSteps, c.WarmupRatio); err != nil {
		r.sm.close()
		return nil, err
	}

	fmt.Fprintf(w, "task %s: %d training examples, %d evaluation examples (%s), max_len %d\n", task.Name, len(r.trainEx), len(r.evalEx), data.evalSplit, c.MaxLen)
	if data.note != "" {
		fmt.Fprintf(w, "NOTE: %s\n", data.note)
	}
	fmt.Fprintf(w, "model %s: %d layers, hidden %d; adapter %s %s\n", c.Model, ck.Config.NumHiddenLayers, ck.Config.HiddenSize, c.Adapter, describeAdapter(c))
	fmt.Fprintf(w, "%s (adapter %d + head %d)\n", res.Summary, res.AdapterParams, res.HeadParams)
	fmt.Fprintf(w, "%d steps (%d per epoch), batch %d, head lr %g, adapter lr %g, warm-up %g, weight decay %g\n",
		res.TotalSteps, res.StepsPerEpoch, c.BatchSize, c.HeadLR, c.AdapterLR, c.WarmupRatio, c.WeightDecay)
	if len(c.FromRecipe) > 0 {
		fmt.Fprintf(w, "from the %s recipe: %s\n", task.Name, strings.Join(c.FromRecipe, ", "))
	}
	return r, nil
}

// evalAt reports whether to evaluate after step: every -eval_every steps,
// or at the end of every epoch, and after the last step.
func (r *ftRun) evalAt(step int) bool {
	switch {
	case step == r.res.TotalSteps:
		return true
	case r.c.EvalEvery > 0:
		return step%r.c.EvalEvery == 0
	}
	return step%r.res.StepsPerEpoch == 0
}

// run is the training loop: epochs of length-bucketed batches, with
// evaluations, until the step budget is spent or ctx is cancelled.
func (r *ftRun) run(ctx context.Context, hooks runHooks) error {
	c, res := r.c, r.res
	shuffle := rand.New(rand.NewPCG(c.Seed, 1))
	dropRNG := rand.New(rand.NewPCG(c.Seed, 2))
	progress := train.NewProgress(res.TotalSteps, "train", hooks.progress)
	defer progress.Finish()
	shownLR := c.AdapterLR // the progress bar shows the adapter's rate, or the head's without adapter
	if c.Adapter == "none" {
		shownLR = c.HeadLR
	}
	var trainTime time.Duration
	tokens, lossSince, stepsSince := 0, 0.0, 0
	defer func() {
		res.TrainSeconds = trainTime.Seconds()
		if trainTime > 0 {
			res.TokensPerSecond = float64(tokens) / trainTime.Seconds()
		}
	}()
	for res.Steps < res.TotalSteps {
		for _, idx := range trainBatches(lengths(r.trainEx), c.BatchSize, shuffle) {
			if res.Steps >= res.TotalSteps {
				break
			}
			if ctx.Err() != nil {
				res.Interrupted = true
				return nil
			}
			t0 := time.Now()
			loss, n, err := r.sm.trainStep(r.trainEx, idx, c.MaxLen, dropRNG, r.sched, res.Steps)
			if err != nil {
				return err
			}
			trainTime += time.Since(t0)
			progress.Step("train", loss, shownLR*r.sched.Factor(res.Steps))
			res.Steps++
			tokens += n
			lossSince += loss
			stepsSince++
			res.Losses = append(res.Losses, loss)
			if hooks.afterStep != nil {
				hooks.afterStep(res.Steps)
			}
			if r.evalAt(res.Steps) {
				if err := r.evaluateNow(lossSince / float64(stepsSince)); err != nil {
					return err
				}
				lossSince, stepsSince = 0, 0
			}
		}
	}
	return nil
}

// evaluateNow evaluates the current weights, records the result and keeps
// a copy of the weights if it is the best so far.
func (r *ftRun) evaluateNow(trainLoss float64) error {
	res, step := r.res, r.res.Steps
	rec := evalRecord{Step: step, Epoch: float64(step) / float64(res.StepsPerEpoch), TrainLoss: trainLoss}
	var err error
	if rec.Metrics, err = evaluate(r.sm, r.task, r.evalEx, r.c); err != nil {
		return err
	}
	if r.mismatchedEx != nil {
		if rec.Mismatched, err = evaluate(r.sm, r.task, r.mismatchedEx, r.c); err != nil {
			return err
		}
	}
	res.Evals = append(res.Evals, rec)
	mark := ""
	if res.Best == nil || rec.Metrics[r.task.Primary] > res.Best.Value {
		res.Best = &bestRecord{Metric: r.task.Primary, Value: rec.Metrics[r.task.Primary], evalRecord: rec}
		r.best = r.sm.snapshot()
		mark = "  (best)"
	}
	fmt.Fprintf(r.w, "\nstep %d (epoch %.2f): train loss %.4f, %s%s\n", step, rec.Epoch, rec.TrainLoss, formatMetrics(rec), mark)
	return nil
}

// finish restores the best weights and writes the adapter, the plot and
// results.json.
func (r *ftRun) finish(start time.Time) (*ftResult, error) {
	res, w := r.res, r.w
	if res.Interrupted {
		fmt.Fprintf(w, "interrupted after step %d of %d; writing what was done\n", res.Steps, res.TotalSteps)
	}
	if r.best != nil {
		r.sm.restore(r.best)
	}
	res.AdapterDir = filepath.Join(r.c.Out, adapterDir)
	err := r.c.folder().Write(!res.Interrupted, func(dir string) error {
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
	return outdir.Folder{Flag: "-out", Path: c.Out, Kind: kindFinetune, Overwrite: c.Overwrite}
}

// evaluate predicts every example and computes the task's metrics.
func evaluate(sm *seqModel, task glue.Task, exs []example, c ftConfig) (map[string]float64, error) {
	preds, err := sm.predict(exs, c.BatchSize, c.MaxLen)
	if err != nil {
		return nil, err
	}
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
