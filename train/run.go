package train

import (
	"context"
	"io"
	"math"
	"math/rand/v2"
	"time"

	"github.com/lilygo/lily/dataparallel"
	"github.com/lilygo/lily/gorgoniafix"
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
)

// Task is the model-specific part of a training run that Run drives: the
// data order, one micro-batch's forward and backward pass, and the
// evaluation, cut into units (such as held-out batches) that the ranks of a
// data-parallel run share. E is the command's evaluation record (perplexity,
// GLUE metrics…); it is saved in checkpoints as JSON.
type Task[E any] interface {
	// Batch returns the example indices of the global batch of the 0-based
	// optimiser step: Config.GlobalBatch() examples over all ranks and
	// micro-batches. Run calls it once per step in step order — on resume
	// also for the steps already done, without training on them — so a data
	// order drawn from a seeded generator continues exactly. Every rank
	// returns the same indices.
	Batch(step int) ([]int, error)
	// Forward runs the forward and backward pass of one micro-batch and
	// returns its loss (the mean over the micro-batch), the graph nodes
	// that hold its gradients (the graph's Learnables, bound to the store
	// that holds Config's Groups' parameters) and how many tokens it
	// trained on (for the throughput).
	Forward(m Micro) (loss float64, grads G.Nodes, tokens int, err error)
	// EvalUnits returns, for each evaluation unit, how many statistics it
	// produces; with no unit, Run never evaluates (pretraining without a
	// held-out set).
	EvalUnits() []int
	// EvalUnit computes unit i's statistics into out (of EvalUnits()[i]
	// values). The ranks split the units between them.
	EvalUnit(i int, out []float64) error
	// Metrics turns every unit's statistics, in unit order, into the
	// evaluation record and the score that picks the best evaluation.
	Metrics(stats [][]float64) (record E, score float64, err error)
}

// Observer is a Task that wants to hear of every evaluation as it is made
// (to print it), on every rank.
type Observer[E any] interface {
	Evaluated(e Evaluation[E])
}

// Baseline is a Task that already knows its evaluation before training
// (the runs of a sweep share the base model's); with EvalFirst, Run takes
// it instead of evaluating when ok is true.
type Baseline[E any] interface {
	Baseline() (record E, score float64, ok bool)
}

// Micro is one micro-batch of an optimiser step.
type Micro struct {
	// Step is the 0-based optimiser step.
	Step int
	// Index numbers the micro-batch among all the step's micro-batches
	// over all ranks (rank × GradAccum + its index on the rank), so it is
	// the same whatever the number of ranks.
	Index int
	// Examples are the micro-batch's example indices.
	Examples []int
	// Rand is a generator for this micro-batch alone (dropout masks),
	// seeded from Config.Seed, Step and Index: a resumed run and a run on
	// any number of ranks draw the same numbers for the same micro-batch.
	Rand *rand.Rand
}

// Group is a set of parameters trained with their own AdamW and peak learning
// rate (e.g. the classifier head and the adapter, as the GLUE recipe wants).
// Run uses Params; Step (for a single graph) uses Nodes.
type Group struct {
	Name   string
	PeakLR float64
	Nodes  G.Nodes
	Params []*layers.Param
	Opt    *gorgoniafix.AdamW
}

// Config says how Run trains.
type Config struct {
	// Steps is the number of optimiser steps of the whole run.
	Steps int
	// Batch is the number of examples of one micro-batch.
	Batch int
	// GradAccum is the number of micro-batches per optimiser step on each
	// rank (gradient accumulation); 0 means 1.
	GradAccum int
	// Schedule sets the learning rate of every step.
	Schedule Schedule
	// Groups are the optimiser groups; every parameter trains in exactly
	// one of them.
	Groups []*Group
	// Comm connects the ranks of a data-parallel run (an *mpi.World); nil
	// means one process.
	Comm dataparallel.Comm
	// Seed seeds the micro-batches' generators.
	Seed uint64
	// EvalAt says whether to evaluate after the given number of steps;
	// the last step is always evaluated. nil: only the last.
	EvalAt func(steps int) bool
	// EvalFirst evaluates before training (step 0), for the base model's
	// figure.
	EvalFirst bool
	// HigherIsBetter says that a higher score is a better evaluation
	// (accuracy), otherwise lower (perplexity).
	HigherIsBetter bool
	// KeepBest restores, at the end, the weights of the best evaluation.
	KeepBest bool
	// Checkpoint is the folder of the run's checkpoint ("" for none). It
	// is replaced as a whole at every save (atomicfile.WriteDir).
	Checkpoint string
	// SaveEvery writes a checkpoint every that many steps; 0 saves only
	// when the run is interrupted. A finished run leaves its last
	// checkpoint: the command's final write of its output folder, which
	// holds it, replaces it.
	SaveEvery int
	// Resume continues the run in Checkpoint, which must exist.
	Resume bool
	// Identity is what must not change on resume (the command's settings,
	// as JSON); a checkpoint of a different identity is refused.
	Identity any
	// Progress receives the progress bar (rank 0 only); nil hides it.
	Progress io.Writer
	// Desc names the bar.
	Desc string
	// ShownLR is the index of the group whose learning rate the bar shows.
	ShownLR int
	// AfterStep, if set, is called after every optimiser step (after the
	// step's checkpoint); tests use it to stop a run there.
	AfterStep func(steps int)
}

// accum returns GradAccum, with 0 meaning 1.
func (c Config) accum() int { return max(1, c.GradAccum) }

// ranks returns the number of processes and this one's rank.
func (c Config) ranks() (size, rank int) {
	if c.Comm == nil {
		return 1, 0
	}
	return c.Comm.Size(), c.Comm.Rank()
}

// GlobalBatch is the number of examples of one optimiser step over all
// ranks: Batch × GradAccum × ranks.
func (c Config) GlobalBatch() int {
	size, _ := c.ranks()
	return c.Batch * c.accum() * size
}

// Evaluation is one evaluation of a run.
type Evaluation[E any] struct {
	Step int `json:"step"`
	// TrainLoss is the mean training loss of the steps since the previous
	// evaluation (0 for one before training).
	TrainLoss float64 `json:"train_loss"`
	Score     float64 `json:"score"`
	Record    E       `json:"record"`
}

// Result is what Run did.
type Result[E any] struct {
	// Steps is the number of optimiser steps done.
	Steps int `json:"steps"`
	// Losses is the mean training loss of every step.
	Losses []float64 `json:"losses"`
	// Evals are the evaluations in order; Best indexes the best one.
	Evals []Evaluation[E] `json:"evals"`
	Best  int             `json:"best"`
	// Interrupted is true when ctx stopped the run before its last step.
	Interrupted bool `json:"interrupted"`
	// ResumedFrom is the step the run continued from (0 for a new run).
	ResumedFrom int `json:"resumed_from"`
	// TrainSeconds and EvalSeconds add up the time of this and, on
	// resume, the earlier processes.
	TrainSeconds float64 `json:"train_seconds"`
	EvalSeconds  float64 `json:"eval_seconds"`
	// Tokens is the number of tokens this rank trained on (all processes
	// of a resumed run).
	Tokens int `json:"tokens"`
}

// BestEval returns the best evaluation; ok is false before any.
func (r *Result[E]) BestEval() (e Evaluation[E], ok bool) {
	if r.Best < 0 || r.Best >= len(r.Evals) {
		return e, false
	}
	return r.Evals[r.Best], true
}

// Run trains: every optimiser step takes the global batch of Task.Batch,
// this rank's share of it (dataparallel.Split), cut into GradAccum
// micro-batches whose gradients are summed; the ranks' sums are reduced in
// one allreduce and divided by the number of non-empty micro-batches over
// all ranks, and every group's AdamW steps at the schedule's rate. It
// evaluates as Config says, keeps the best weights if asked, writes
// checkpoints, and stops cleanly after the current step when ctx is
// cancelled on any rank (all ranks stop at the same step). On return the
// store holds the final (or, with KeepBest, the best) weights.
func Run[E any](ctx context.Context, c Config, task Task[E]) (*Result[E], error) {
	r, err := newRunner(c, task)
	if err != nil {
		return nil, err
	}
	return r.run(ctx)
}

// runner is one Run.
type runner[E any] struct {
	c      Config
	task   Task[E]
	params []*layers.Param
	group  []int // the group of every parameter
	acc    *dataparallel.Accumulator
	red    *dataparallel.Reducer
	res    *Result[E]
	best   map[string][]float64 // the best evaluation's weights (KeepBest)
	// lossSince and stepsSince make the next evaluation's TrainLoss.
	lossSince  float64
	stepsSince int
	// lastHash fingerprints the global batch of the last step done.
	lastHash string
	bar      *Progress
}

// newRunner checks c and sets up the accumulator and reducer.
func newRunner[E any](c Config, task Task[E]) (*runner[E], error) {
	switch {
	case task == nil:
		return nil, errors.New("train.Run: nil task")
	case c.Steps < 0:
		return nil, errors.Errorf("train.Run: %d steps; give 0 or more", c.Steps)
	case c.Batch < 1:
		return nil, errors.Errorf("train.Run: micro-batch of %d examples; give at least 1", c.Batch)
	case c.GradAccum < 0:
		return nil, errors.Errorf("train.Run: -grad_accum %d; give at least 1", c.GradAccum)
	case c.Resume && c.Checkpoint == "":
		return nil, errors.New("train.Run: resuming needs a checkpoint folder")
	case c.SaveEvery < 0:
		return nil, errors.Errorf("train.Run: checkpoint every %d steps; give 0 (only when interrupted) or more", c.SaveEvery)
	case len(c.Groups) == 0:
		return nil, errors.New("train.Run: no optimiser group")
	}
	r := &runner[E]{c: c, task: task, res: &Result[E]{Best: -1}}
	seen := map[*layers.Param]bool{}
	for gi, g := range c.Groups {
		if g == nil || g.Opt == nil {
			return nil, errors.Errorf("train.Run: optimiser group #%d has no optimiser", gi)
		}
		for _, p := range g.Params {
			if p == nil || seen[p] {
				return nil, errors.Errorf("train.Run: group %s lists a nil parameter or one another group has", g.Name)
			}
			if !p.Trainable {
				return nil, errors.Errorf("train.Run: group %s lists %s, which is frozen", g.Name, p.Name)
			}
			seen[p] = true
			r.params = append(r.params, p)
			r.group = append(r.group, gi)
		}
	}
	if len(r.params) == 0 {
		return nil, errors.New("train.Run: the optimiser groups have no parameter to train")
	}
	var err error
	if r.acc, err = dataparallel.NewAccumulator(r.params); err != nil {
		return nil, errors.Wrap(err, "train.Run")
	}
	comm := c.Comm
	if comm == nil {
		comm = dataparallel.NewLocalGroup(1)[0]
	}
	if r.red, err = dataparallel.NewReducer(comm); err != nil {
		return nil, errors.Wrap(err, "train.Run")
	}
	return r, nil
}

// rank0 reports whether this process writes outputs and shows progress.
func (r *runner[E]) rank0() bool { _, rank := r.c.ranks(); return rank == 0 }

// run is Run after the set-up.
func (r *runner[E]) run(ctx context.Context) (*Result[E], error) {
	c := r.c
	if c.Resume {
		if err := r.resume(); err != nil {
			return nil, err
		}
	} else {
		if c.Comm != nil && c.Comm.Size() > 1 {
			if err := r.red.BroadcastParams(r.params, 0); err != nil {
				return nil, errors.Wrap(err, "train.Run: sharing rank 0's initial weights")
			}
		}
		if c.EvalFirst {
			if err := r.evaluate(0); err != nil {
				return nil, err
			}
		}
	}
	res := r.res
	var progress io.Writer
	if r.rank0() {
		progress = c.Progress
	}
	if progress == nil {
		progress = io.Discard
	}
	r.bar = NewProgress(c.Steps, c.Desc, progress)
	r.bar.Skip(res.Steps)
	defer r.bar.Finish()
	for res.Steps < c.Steps {
		stop, err := r.step(ctx)
		if err != nil {
			return nil, err
		}
		if stop {
			res.Interrupted = true
			break
		}
		if c.EvalAt != nil && c.EvalAt(res.Steps) || res.Steps == c.Steps {
			if err := r.evaluate(res.Steps); err != nil {
				return nil, err
			}
		}
		if c.Checkpoint != "" && c.SaveEvery > 0 && res.Steps%c.SaveEvery == 0 && res.Steps < c.Steps {
			if err := r.save(); err != nil {
				return nil, err
			}
		}
		if c.AfterStep != nil {
			c.AfterStep(res.Steps)
		}
	}
	r.bar.Finish()
	if res.Interrupted && c.Checkpoint != "" {
		if err := r.save(); err != nil {
			return nil, err
		}
	}
	if c.KeepBest && r.best != nil {
		restore(r.params, r.best)
	}
	return res, nil
}

// step runs one optimiser step; stop is true (and nothing was trained)
// when ctx was cancelled on some rank.
func (r *runner[E]) step(ctx context.Context) (stop bool, err error) {
	c, res := r.c, r.res
	step := res.Steps
	size, rank := c.ranks()
	t0 := time.Now()
	batch, err := r.task.Batch(step)
	if err != nil {
		return false, errors.Wrapf(err, "the batch of step %d", step)
	}
	// Agree on stopping before any work, so that every rank stops at the
	// same step.
	if stop, err := r.red.AnyRank(ctx.Err() != nil); err != nil || stop {
		return stop, err
	}
	shares, err := dataparallel.Split(batch, size)
	if err != nil {
		return false, err
	}
	micros, err := dataparallel.Split(shares[rank], c.accum())
	if err != nil {
		return false, err
	}
	// stats: the summed micro-batch losses, the number of non-empty
	// micro-batches and of failed ranks, over all ranks. A rank whose
	// micro-batch fails still takes part in the sum, so that all ranks
	// return the error instead of waiting for it.
	stats := []float64{0, 0, 0}
	failure := r.micros(step, rank, micros, stats)
	if failure != nil {
		stats[2] = 1
	}
	if err := r.red.SumMetrics(stats); err != nil {
		return false, errors.Wrapf(err, "step %d", step)
	}
	switch {
	case failure != nil:
		return false, failure
	case stats[2] > 0:
		return false, errors.Errorf("step %d failed on another rank (its error is in its output)", step)
	case stats[1] == 0:
		return false, errors.Errorf("step %d: the global batch is empty", step)
	}
	grads := r.acc.Gradients()
	if err := r.red.MeanGradients(grads, int(stats[1])); err != nil {
		return false, errors.Wrapf(err, "step %d", step)
	}
	f := c.Schedule.Factor(step)
	for gi, g := range c.Groups {
		var mine []G.ValueGrad
		for i, vg := range grads {
			if r.group[i] == gi {
				mine = append(mine, vg)
			}
		}
		if len(mine) == 0 {
			continue
		}
		g.Opt.SetLearnRate(g.PeakLR * f)
		if err := g.Opt.Step(mine); err != nil {
			return false, errors.Wrapf(err, "optimiser step %d of %s", step, g.Name)
		}
	}
	loss := stats[0] / stats[1]
	r.lastHash = hashBatch(batch)
	res.Steps++
	res.Losses = append(res.Losses, loss)
	r.lossSince += loss
	r.stepsSince++
	res.TrainSeconds += time.Since(t0).Seconds()
	lr := 0.0
	if c.ShownLR >= 0 && c.ShownLR < len(c.Groups) {
		lr = c.Groups[c.ShownLR].PeakLR * f
	}
	r.bar.Step(c.Desc, loss, lr)
	return false, nil
}

// micros runs this rank's micro-batches of step, adding their gradients
// to the accumulator and their losses and count to stats.
func (r *runner[E]) micros(step, rank int, micros [][]int, stats []float64) error {
	for k, idx := range micros {
		if len(idx) == 0 {
			continue
		}
		index := rank*r.c.accum() + k
		m := Micro{Step: step, Index: index, Examples: idx,
			Rand: rand.New(rand.NewPCG(r.c.Seed^microStream, uint64(step)<<20|uint64(index)))}
		loss, nodes, tokens, err := r.task.Forward(m)
		if err != nil {
			return errors.Wrapf(err, "step %d, micro-batch %d", step, index)
		}
		if err := CheckLoss(loss, step); err != nil {
			return err
		}
		if err := r.acc.Add(nodes); err != nil {
			return errors.Wrapf(err, "step %d", step)
		}
		stats[0] += loss
		stats[1]++
		r.res.Tokens += tokens
	}
	return nil
}

// microStream mixes into the seed of the micro-batches' generators, so
// that they differ from the streams a command seeds with Config.Seed.
const microStream = 0x6d6963726f

// evaluate evaluates the weights after steps steps, with the ranks
// sharing the units, and keeps the weights if they are the best so far.
func (r *runner[E]) evaluate(steps int) error {
	if len(r.task.EvalUnits()) == 0 {
		return nil
	}
	t0 := time.Now()
	var rec E
	var score float64
	var err error
	known := false
	if b, ok := r.task.(Baseline[E]); ok && steps == 0 {
		rec, score, known = b.Baseline()
	}
	if !known {
		rec, score, err = r.evalNow()
	}
	if err != nil {
		return errors.Wrapf(err, "evaluation after step %d", steps)
	}
	e := Evaluation[E]{Step: steps, Score: score, Record: rec}
	if r.stepsSince > 0 {
		e.TrainLoss = r.lossSince / float64(r.stepsSince)
	}
	r.lossSince, r.stepsSince = 0, 0
	res := r.res
	res.Evals = append(res.Evals, e)
	if b, ok := res.BestEval(); !ok || r.better(score, b.Score) {
		res.Best = len(res.Evals) - 1
		if r.c.KeepBest {
			r.best = snapshot(r.params)
		}
	}
	res.EvalSeconds += time.Since(t0).Seconds()
	if o, ok := r.task.(Observer[E]); ok {
		o.Evaluated(e)
	}
	return nil
}

// better reports whether score beats best (a NaN score never does).
func (r *runner[E]) better(score, best float64) bool {
	if math.IsNaN(score) {
		return false
	}
	if math.IsNaN(best) {
		return true
	}
	if r.c.HigherIsBetter {
		return score > best
	}
	return score < best
}

// evalNow computes this rank's units, reduces them and makes the record.
// Every unit's statistics come from exactly one rank and are zero on the
// others, so the sum reproduces them bit for bit: the metrics are the same
// whatever the number of ranks.
func (r *runner[E]) evalNow() (E, float64, error) {
	var zero E
	layout := r.task.EvalUnits()
	total := 0
	for i, n := range layout {
		if n < 0 {
			return zero, 0, errors.Errorf("evaluation unit %d has %d statistics", i, n)
		}
		total += n
	}
	flat := make([]float64, total)
	stats := make([][]float64, len(layout))
	off := 0
	for i, n := range layout {
		stats[i] = flat[off : off+n : off+n]
		off += n
	}
	size, rank := r.c.ranks()
	units := make([]int, len(layout))
	for i := range units {
		units[i] = i
	}
	shares, err := dataparallel.Split(units, size)
	if err != nil {
		return zero, 0, err
	}
	for _, i := range shares[rank] {
		if err := r.task.EvalUnit(i, stats[i]); err != nil {
			return zero, 0, err
		}
	}
	if err := r.red.SumMetrics(flat); err != nil {
		return zero, 0, err
	}
	return r.task.Metrics(stats)
}

// snapshot copies the parameters' values.
func snapshot(params []*layers.Param) map[string][]float64 {
	out := make(map[string][]float64, len(params))
	for _, p := range params {
		out[p.Name] = layers.Float64s(p.Value)
	}
	return out
}

// restore writes a snapshot back into the parameters.
func restore(params []*layers.Param, snap map[string][]float64) {
	for _, p := range params {
		v, ok := snap[p.Name]
		if !ok {
			continue
		}
		switch d := p.Value.Data().(type) {
		case []float32:
			for i := range d {
				d[i] = float32(v[i])
			}
		case []float64:
			copy(d, v)
		}
	}
}
