package main

import (
	"path/filepath"

	"github.com/lilygo/lily/graphs/mamba"
	"github.com/lilygo/lily/internal/memcheck"
	"github.com/pkg/errors"
)

// activations estimates the float32 values a training graph of the model
// keeps for a [batch, seqLen] batch: per layer and token in_proj's output
// (2 × d_inner), the convolution and its activation (2 × d_inner), x_proj's
// output (dt_rank + 2 × d_state), Δ (d_inner), the scan's states (d_inner ×
// d_state), the gated output (2 × d_inner), out_proj, the residual and the
// norm (3 × hidden); then the logits and their softmax.
func activations(mc mamba.Config, batch, seqLen int) float64 {
	di, n := float64(mc.DInner()), float64(mc.StateSize)
	perToken := 7*di + di*n + float64(mc.TimeStepRank) + 2*n + 3*float64(mc.HiddenSize)
	return float64(batch) * float64(seqLen) * (float64(mc.NumHiddenLayers)*perToken + 2*float64(mc.VocabSize))
}

// checkMemory refuses a run that cannot fit in this machine's memory
// before anything large is allocated: the model's weights (unless loaded
// already), the larger of pretraining's gradients and AdamW moments of
// every weight and the largest adapter's values, gradients and moments, and
// a training and an evaluation graph.
func checkMemory(c config, ms []method, mc mamba.Config, pretraining bool) error {
	var need memcheck.Need
	need.Add("activations of a training and an evaluation batch", 1.5*activations(mc, c.Batch, c.SeqLen), 4)
	if pretraining {
		need.Add("model weights", mc.NumParams(), 4)
	}
	// First without the adapters, whose count lists every layer's sites.
	if err := need.Check(); err != nil {
		return err
	}
	largest := 0
	for _, m := range ms {
		_, n, err := newAdapter(c, m, mc)
		if err != nil {
			return errors.Wrap(err, m.Name)
		}
		largest = max(largest, n)
	}
	state, what := float64(largest)*4*4, "the largest adapter with gradients and AdamW moments"
	if pre := mc.NumParams() * 3 * 4; pretraining && pre > state {
		state, what = pre, "pretraining's gradients and AdamW moments"
	}
	need.Add(what, state, 1)
	return need.Check()
}

// checkUseMemory refuses an eval or export of the model in c.Model that
// cannot fit in this machine's memory, before its weights are read: the
// weights (twice for export, which keeps the merged copy of every adapted
// weight beside the saved file's buffer) and an evaluation graph's
// activations (a third of a training graph's: no saved gradient inputs).
func checkUseMemory(c useConfig, export bool) error {
	mc, err := mamba.ReadConfig(filepath.Join(c.Model, "config.json"))
	if err != nil {
		return err
	}
	var need memcheck.Need
	copies := 1.0
	if export {
		copies = 2
	}
	need.Add("model weights", copies*mc.NumParams(), 4)
	need.Add("activations of an evaluation batch", activations(mc, c.Batch, c.SeqLen)/3, 4)
	return errors.Wrapf(need.Check(), "mamba %s of %s", map[bool]string{false: "eval", true: "export"}[export], c.Model)
}
