package bench

import (
	"slices"
	"testing"

	"github.com/lilygo/lily/graphs/roberta"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// tinyConfig is a two-layer RoBERTa small enough for quick tests.
func tinyConfig() roberta.Config {
	c := roberta.BaseConfig()
	c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads = 11, 8, 2, 2
	c.IntermediateSize, c.MaxPositionEmbeddings, c.TypeVocabSize = 12, 9, 2
	return c
}

// StepConfig.Reduce runs between the backward pass and AdamW, on every
// learnable's gradient: a Reduce that zeroes them leaves the weights as they
// were (AdamW without weight decay moves nothing on a zero gradient), one
// that leaves them alone lets the step train.
func TestReduceBeforeOptimizer(t *testing.T) {
	cfg := tinyConfig()
	m := Method{Name: "lily", R: 2, StrideA: 1, NumB: 2, Scaling: 1}
	for _, zero := range []bool{true, false} {
		st, err := NewBaseStore(cfg)
		if err != nil {
			t.Fatalf("%+v", err)
		}
		calls, n := 0, 0
		reduce := func(grads []G.ValueGrad) error {
			calls, n = calls+1, len(grads)
			for _, vg := range grads {
				g, err := vg.Grad()
				if err != nil {
					return errors.Wrap(err, "reading a gradient")
				}
				if zero {
					g.(*tensor.Dense).Zero()
				}
			}
			return nil
		}
		step, err := NewTrainStep(StepConfig{Config: cfg, Store: st, Method: &m, Batch: 2, Seq: 4, Classifier: true, Reduce: reduce})
		if err != nil {
			t.Fatalf("%+v", err)
		}
		before := map[string][]float32{}
		for _, p := range st.Trainable() {
			before[p.Name] = slices.Clone(p.Value.Data().([]float32))
		}
		if err := step.Step(); err != nil {
			t.Fatalf("%+v", err)
		}
		step.Close()
		if calls != 1 || n != len(st.Trainable()) {
			t.Errorf("zero=%v: Reduce called %d times with %d gradients, want once with %d", zero, calls, n, len(st.Trainable()))
		}
		changed := 0
		for _, p := range st.Trainable() {
			if !slices.Equal(before[p.Name], p.Value.Data().([]float32)) {
				changed++
			}
		}
		if zero && changed != 0 {
			t.Errorf("gradients zeroed by Reduce, yet %d of %d trainable tensors changed", changed, len(before))
		}
		if !zero && changed == 0 {
			t.Errorf("gradients left alone by Reduce, yet no trainable tensor changed")
		}
	}
}
