package mamba

import (
	"math"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
)

// LossValue returns the value of Loss after a run.
func (m *Model) LossValue() (float64, error) {
	v := m.Loss.Value()
	if v == nil {
		return 0, errors.New("mamba: the loss has no value; run the graph first")
	}
	return scalarOf(v)
}

// Perplexity evaluates held-out text: it cuts tokens into consecutive
// non-overlapping windows of SeqLen positions, one per sequence of the
// batch, where every position predicts the token after it (so every token
// but the first is predicted exactly once, with the context of its own
// window), runs vm on m's graph for every Batch windows,
// and returns exp of the mean negative log-likelihood and the number of
// predicted tokens. The last window is padded on the right with
// pad_token_id, masked out and ignored by the loss; because the model is
// causal, the padding does not change any prediction (only Lily's batch
// routing, which averages over padding as the reference does, sees it).
//
// vm must run m's graph without accumulating gradients: build m in an
// evaluation graph and use a plain gorgonia.NewTapeMachine, or the
// gradients of a training VM bound with BindDualValues grow by every
// evaluation run. Perplexity overwrites m's inputs.
func (m *Model) Perplexity(vm G.VM, tokens []int) (ppl float64, predicted int, err error) {
	return m.PerplexityEach(vm, tokens, nil)
}

// PerplexityEach is Perplexity calling each (when not nil) after every run
// of vm, e.g. to read Lily's mixing weights from the graph
// (layers.MixingCalibrator.Observe).
func (m *Model) PerplexityEach(vm G.VM, tokens []int, each func() error) (ppl float64, predicted int, err error) {
	chunks, err := m.Chunks(tokens)
	if err != nil {
		return 0, 0, err
	}
	sum := 0.0
	for c := range chunks {
		loss, n, err := m.EvalChunk(vm, tokens, c, each)
		if err != nil {
			return 0, 0, err
		}
		sum += loss
		predicted += n
	}
	return math.Exp(sum / float64(predicted)), predicted, nil
}

// Chunks returns the number of runs of m's graph that Perplexity makes on
// tokens: one per Batch windows of SeqLen predictions.
func (m *Model) Chunks(tokens []int) (int, error) {
	if len(tokens) < 2 {
		return 0, errors.Errorf("mamba.Perplexity: %d tokens; need at least 2 to predict one", len(tokens))
	}
	n := m.Batch * m.SeqLen
	return (len(tokens) - 1 + n - 1) / n, nil
}

// EvalChunk runs vm on chunk c of tokens (as Perplexity cuts them) and
// returns the summed negative log-likelihood of its predictions and their
// number; each, when not nil, is called after the run. Perplexity is exp of
// the chunks' summed losses, added in chunk order, over their predictions;
// evaluating chunks apart (data-parallel ranks) and adding them up in that
// order gives the same bits.
func (m *Model) EvalChunk(vm G.VM, tokens []int, c int, each func() error) (loss float64, predicted int, err error) {
	if vm == nil {
		return 0, 0, errors.New("mamba.Perplexity: nil VM")
	}
	chunks, err := m.Chunks(tokens)
	if err != nil {
		return 0, 0, err
	}
	if c < 0 || c >= chunks {
		return 0, 0, errors.Errorf("mamba.EvalChunk: chunk %d of %d", c, chunks)
	}
	n := m.Batch * m.SeqLen
	ids, labels, mask := make([]int, n), make([]int, n), make([]int, n)
	start := c * n
	for i := 0; i < n; i++ {
		ids[i], labels[i], mask[i] = m.Config.PadTokenID, IgnoreIndex, 0
		if t := start + i; t < len(tokens)-1 {
			ids[i], labels[i], mask[i] = tokens[t], tokens[t+1], 1
		}
	}
	if err := m.SetInputs(ids, labels, mask); err != nil {
		return 0, 0, errors.Wrap(err, "mamba.Perplexity")
	}
	vm.Reset()
	if err := vm.RunAll(); err != nil {
		return 0, 0, errors.Wrap(err, "mamba.Perplexity")
	}
	if each != nil {
		if err := each(); err != nil {
			return 0, 0, errors.Wrap(err, "mamba.Perplexity")
		}
	}
	mean, err := m.LossValue()
	if err != nil {
		return 0, 0, errors.Wrap(err, "mamba.Perplexity")
	}
	return mean * float64(m.Targets()), m.Targets(), nil
}

// scalarOf reads a float32 or float64 scalar value.
func scalarOf(v G.Value) (float64, error) {
	switch x := v.Data().(type) {
	case float64:
		return x, nil
	case float32:
		return float64(x), nil
	}
	return 0, errors.Errorf("the loss is a %T, want a float scalar", v.Data())
}
