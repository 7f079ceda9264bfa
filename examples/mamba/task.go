package main

import (
	"math"
	"math/rand/v2"
	"path/filepath"

	"github.com/lilygo/lily/graphs/mamba"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
)

// checkpointsDir holds, inside -out, the checkpoints of the pretraining
// and of every adaptation run that has not finished.
const checkpointsDir = "checkpoints"

// checkpointOf is the checkpoint folder of one training run of c.
func (c config) checkpointOf(run string) string {
	return filepath.Join(c.Out, checkpointsDir, run)
}

// afterStep, when set, is called after every optimiser step of pretraining
// and adaptation; tests set it to kill the process there.
var afterStep func(steps int)

// lmTask trains a Mamba graph on random windows of a token stream, as
// train.Run drives it: every step draws its global batch of window starts
// from the run's generator, each micro-batch is one graph-sized batch of
// windows, and the evaluation (none for pretraining) is the held-out
// perplexity, one unit per evaluation run.
type lmTask struct {
	m       *mamba.Model
	g       *layers.Graph
	vm      G.VM
	src     windows
	rng     *rand.Rand
	global  int // windows per optimiser step
	ids     []int
	labels  []int
	ev      *evaluator
	heldOut []int
	base    float64 // the held-out perplexity before training, if known
}

// Batch draws the window starts of a step.
func (t *lmTask) Batch(int) ([]int, error) {
	starts := make([]int, t.global)
	for i := range starts {
		starts[i] = t.rng.IntN(len(t.src.stream) - t.src.seqLen)
	}
	return starts, nil
}

// Forward runs forward and backward on one graph-sized batch of windows.
func (t *lmTask) Forward(mb train.Micro) (float64, G.Nodes, int, error) {
	if len(mb.Examples)*t.src.seqLen != len(t.ids) {
		return 0, nil, 0, errors.Errorf("a micro-batch of %d windows for a graph of %d", len(mb.Examples), len(t.ids)/t.src.seqLen)
	}
	for r, s := range mb.Examples {
		copy(t.ids[r*t.src.seqLen:(r+1)*t.src.seqLen], t.src.stream[s:])
		copy(t.labels[r*t.src.seqLen:(r+1)*t.src.seqLen], t.src.stream[s+1:])
	}
	if err := t.m.SetInputs(t.ids, t.labels, nil); err != nil {
		return 0, nil, 0, err
	}
	t.vm.Reset()
	if err := t.vm.RunAll(); err != nil {
		return 0, nil, 0, err
	}
	loss, err := t.m.LossValue()
	return loss, t.g.Learnables(), len(t.ids), err
}

// EvalUnits: one unit per evaluation run of the held-out text, with its
// summed loss and number of predictions.
func (t *lmTask) EvalUnits() []int {
	if t.ev == nil {
		return nil
	}
	n, err := t.ev.m.Chunks(t.heldOut)
	if err != nil {
		return nil
	}
	out := make([]int, n)
	for i := range out {
		out[i] = 2
	}
	return out
}

// EvalUnit evaluates chunk i of the held-out text.
func (t *lmTask) EvalUnit(i int, out []float64) error {
	loss, n, err := t.ev.m.EvalChunk(t.ev.vm, t.heldOut, i, nil)
	out[0], out[1] = loss, float64(n)
	return errors.Wrap(err, "held-out perplexity")
}

// Metrics is the held-out perplexity; lower is better.
func (t *lmTask) Metrics(stats [][]float64) (float64, float64, error) {
	var sum, n float64
	for _, s := range stats {
		sum += s[0]
		n += s[1]
	}
	if n == 0 {
		return 0, 0, errors.New("held-out perplexity: no token to predict")
	}
	ppl := math.Exp(sum / n)
	return ppl, ppl, nil
}

// Baseline is the pretrained model's held-out perplexity, measured once
// for all adaptation runs.
func (t *lmTask) Baseline() (float64, float64, bool) { return t.base, t.base, t.base > 0 }
