package main

import (
	"context"
	"io"
	"math/rand/v2"

	"github.com/lilygo/lily/dataparallel"
	"github.com/lilygo/lily/gorgoniafix"
	"github.com/lilygo/lily/graphs/mamba"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
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
// group) under a linear schedule with warm-up, on every rank of comm, with
// checkpoints in -out that -resume continues from. A cancelled ctx stops it
// after the current step.
func pretrain(ctx context.Context, c config, mc mamba.Config, store *layers.Store, src windows, comm dataparallel.Comm, progressW io.Writer) (pretrainResult, error) {
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
	var decay, noDecay []*layers.Param
	for _, p := range store.Trainable() {
		if mamba.NoWeightDecay(p.Name) {
			noDecay = append(noDecay, p)
		} else {
			decay = append(decay, p)
		}
	}
	groups := []*train.Group{
		{Name: "decay", PeakLR: c.PretrainLR, Params: decay, Opt: gorgoniafix.NewAdamW(gorgoniafix.WithWeightDecay(c.WeightDecay), gorgoniafix.WithClipNorm(1))},
		{Name: "no_decay", PeakLR: c.PretrainLR, Params: noDecay, Opt: gorgoniafix.NewAdamW(gorgoniafix.WithWeightDecay(0), gorgoniafix.WithClipNorm(1))},
	}
	sched, err := train.NewSchedule(c.PretrainSteps, c.WarmupRatio)
	if err != nil {
		return res, err
	}
	tc := train.Config{Steps: c.PretrainSteps, Batch: c.Batch, GradAccum: c.GradAccum, Schedule: sched, Groups: groups,
		Comm: comm, Seed: c.Seed, Checkpoint: c.checkpointOf("pretrain"), SaveEvery: c.SaveEvery,
		Identity: c.identity(), Progress: progressW, Desc: "pretrain", AfterStep: afterStep}
	tc.Resume = c.Resume && train.HasCheckpoint(tc.Checkpoint)
	task := &lmTask{m: m, g: g, vm: vm, src: src, rng: rand.New(rand.NewPCG(c.Seed, 0x7072657472)), global: tc.GlobalBatch(),
		ids: make([]int, c.Batch*c.SeqLen), labels: make([]int, c.Batch*c.SeqLen)}
	run, err := train.Run(ctx, tc, task)
	if err != nil {
		return res, errors.Wrap(err, "pretraining")
	}
	res.Steps, res.Loss, res.Interrupted, res.Seconds = run.Steps, run.Losses, run.Interrupted, run.TrainSeconds
	if res.Seconds > 0 {
		res.TokensPerSec = float64(run.Tokens*comm.Size()) / res.Seconds
	}
	return res, nil
}
