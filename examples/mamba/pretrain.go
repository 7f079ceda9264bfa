package main

import (
	"context"
	"io"
	"math/rand/v2"
	"time"

	"github.com/lilygo/lily/gorgoniafix"
	"github.com/lilygo/lily/graphs/mamba"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
)

// pretrainResult records the pretraining run.
type pretrainResult struct {
	Steps        int       `json:"steps"`
	Seconds      float64   `json:"seconds"`
	TokensPerSec float64   `json:"tokens_per_second"`
	Loss         []float64 `json:"loss_per_step"`
	Interrupted  bool      `json:"interrupted"`
}

// pretrain trains every parameter of the model in store on random windows
// of the source stream with AdamW (decoupled weight decay except on the
// parameters mamba.NoWeightDecay names, gradient clipping at norm 1 per
// group) under a linear schedule with warm-up. A cancelled ctx stops it
// after the current step.
func pretrain(ctx context.Context, c config, mc mamba.Config, store *layers.Store, src windows, progressW io.Writer) (pretrainResult, error) {
	var res pretrainResult
	g := store.NewGraph(true)
	m, err := mamba.Build(g, mc, nil, c.Batch, c.SeqLen)
	if err != nil {
		return res, errors.Wrap(err, "building the pretraining graph")
	}
	vm, err := g.Machine(m.Loss)
	if err != nil {
		return res, errors.Wrap(err, "compiling the pretraining graph")
	}
	defer vm.Close()
	var decay, noDecay G.Nodes
	for _, n := range g.Learnables() {
		if mamba.NoWeightDecay(n.Name()) {
			noDecay = append(noDecay, n)
		} else {
			decay = append(decay, n)
		}
	}
	groups := []*train.Group{
		{Name: "decay", PeakLR: c.PretrainLR, Nodes: decay, Opt: gorgoniafix.NewAdamW(gorgoniafix.WithWeightDecay(c.WeightDecay), gorgoniafix.WithClipNorm(1))},
		{Name: "no_decay", PeakLR: c.PretrainLR, Nodes: noDecay, Opt: gorgoniafix.NewAdamW(gorgoniafix.WithWeightDecay(0), gorgoniafix.WithClipNorm(1))},
	}
	sched, err := train.NewSchedule(c.PretrainSteps, c.WarmupRatio)
	if err != nil {
		return res, err
	}
	rng := rand.New(rand.NewPCG(c.Seed, 0x7072657472))
	ids, labels := make([]int, c.Batch*c.SeqLen), make([]int, c.Batch*c.SeqLen)
	progress := train.NewProgress(c.PretrainSteps, "pretrain", progressW)
	start := time.Now()
	for step := 0; step < c.PretrainSteps; step++ {
		if ctx.Err() != nil {
			res.Interrupted = true
			break
		}
		src.batch(rng, ids, labels)
		if err := m.SetInputs(ids, labels, nil); err != nil {
			return res, err
		}
		vm.Reset()
		if err := vm.RunAll(); err != nil {
			return res, errors.Wrapf(err, "pretraining step %d", step)
		}
		loss, err := m.LossValue()
		if err != nil {
			return res, err
		}
		if err := train.CheckLoss(loss, step); err != nil {
			return res, errors.Wrap(err, "pretraining")
		}
		if err := train.Step(groups, sched, step); err != nil {
			return res, errors.Wrap(err, "pretraining")
		}
		res.Steps++
		res.Loss = append(res.Loss, loss)
		progress.Step("pretrain", loss, c.PretrainLR*sched.Factor(step))
	}
	progress.Finish()
	res.Seconds = time.Since(start).Seconds()
	if res.Seconds > 0 {
		res.TokensPerSec = float64(res.Steps*len(ids)) / res.Seconds
	}
	return res, nil
}
