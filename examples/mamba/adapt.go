package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"path/filepath"

	"github.com/lilygo/lily/adapterfile"
	"github.com/lilygo/lily/dataparallel"
	"github.com/lilygo/lily/graphs/mamba"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/train"
	"github.com/lilygo/lily/updatestats"
	"github.com/pkg/errors"
)

// evalPoint is one held-out evaluation during adaptation.
type evalPoint struct {
	Step       int     `json:"step"`
	Perplexity float64 `json:"perplexity"`
}

// runResult records one adaptation run (one method, one seed).
type runResult struct {
	Method      string      `json:"method"`
	Label       string      `json:"label"`
	Sites       string      `json:"sites"`
	Seed        uint64      `json:"seed"`
	Config      any         `json:"adapter_config"`
	Trainable   int         `json:"trainable_params"`
	LR          float64     `json:"lr"`
	Steps       int         `json:"steps"`
	Evals       []evalPoint `json:"held_out"`
	Final       float64     `json:"final_perplexity"`
	Loss        []float64   `json:"loss_per_step"`
	Seconds     float64     `json:"seconds"`
	AdapterDir  string      `json:"adapter_dir"`
	Interrupted bool        `json:"interrupted"`
	// Analysis measures the adapter's updates (Lily's mixing averaged over
	// the held-out text), plotted in updates-<method>-seed<N>.png.
	Analysis *updatestats.Report `json:"analysis,omitempty"`
}

// strideA resolves -lily_stride_A: 0 means half the layers, rounded up.
func strideA(c config, layers int) int {
	if c.LilyStrideA > 0 {
		return c.LilyStrideA
	}
	return max(1, (layers+1)/2)
}

// newAdapter returns the adapter of method m for a model with config mc,
// with its trainable parameter count. LoRA's rank, unless -lora_r sets it,
// is the one whose count is nearest to Lily's on the same sites.
func newAdapter(c config, m method, mc mamba.Config) (layers.Adapter, int, error) {
	sites := mc.Sites()
	routing, err := lilyop.ParseRouting(c.LilyRouting)
	if err != nil {
		return nil, 0, err
	}
	lily, err := layers.NewLily(layers.LilyConfig{R: c.LilyR, StrideA: strideA(c, mc.NumHiddenLayers), NumB: c.LilyNumB,
		Scaling: c.LilyScaling, TargetModules: m.Targets, Routing: routing})
	if err != nil {
		return nil, 0, err
	}
	lilyN, err := layers.CountParams(lily, sites)
	if err != nil {
		return nil, 0, err
	}
	if m.Kind == "lily" {
		return lily, lilyN, nil
	}
	r := c.LoraR
	if r == 0 {
		one, err := layers.NewLoRA(layers.LoRAConfig{R: 1, Alpha: 1, TargetModules: m.Targets})
		if err != nil {
			return nil, 0, err
		}
		perRank, err := layers.CountParams(one, sites)
		if err != nil {
			return nil, 0, err
		}
		r = max(1, int(math.Round(float64(lilyN)/float64(perRank))))
	}
	alpha := c.LoraAlpha
	if alpha == 0 {
		alpha = float64(r)
	}
	lora, err := layers.NewLoRA(layers.LoRAConfig{R: r, Alpha: alpha, TargetModules: m.Targets})
	if err != nil {
		return nil, 0, err
	}
	n, err := layers.CountParams(lora, sites)
	return lora, n, err
}

// adapterConfig returns the adapter's configuration for results.json.
func adapterConfig(a layers.Adapter) any {
	switch ad := a.(type) {
	case *layers.Lily:
		return ad.Config()
	case *layers.LoRA:
		return ad.Config()
	}
	return nil
}

// adaptJob is everything one adaptation run needs.
type adaptJob struct {
	c       config
	mc      mamba.Config
	base    *layers.Store // the pretrained weights, shared and never trained
	m       method
	seed    uint64
	train   windows
	heldOut []int
	basePPL float64 // the pretrained model's held-out perplexity (step 0)
	baseDir string  // where the pretrained model is, for the adapter config
	comm    dataparallel.Comm
}

// evalSteps returns the adaptation steps after which to evaluate: every
// -eval_every steps (default: four times) and the last step.
func evalSteps(c config) map[int]bool {
	every := c.EvalEvery
	if every == 0 {
		every = max(1, (c.Steps+3)/4)
	}
	out := map[int]bool{c.Steps: true}
	for s := every; s < c.Steps; s += every {
		out[s] = true
	}
	return out
}

// seedFor derives a generator stream from the seed and a name, so that each
// method's initialisation differs while all methods see the same batches.
func seedFor(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// adapt freezes a view of the pretrained model, attaches the method's
// adapter and trains it with AdamW (no weight decay) under a linear
// schedule with warm-up, on every rank of j.comm, evaluating the held-out
// perplexity as evalSteps says, with checkpoints in -out that -resume
// continues from; then rank 0 saves the adapter. A cancelled ctx stops it
// after the current step; it still evaluates and saves.
func adapt(ctx context.Context, j adaptJob, progressW io.Writer) (runResult, error) {
	c := j.c
	res := runResult{Method: j.m.Name, Label: j.m.Label, Sites: j.m.sites(), Seed: j.seed}
	wrap := func(err error) error { return errors.Wrapf(err, "%s seed %d", j.m.Name, j.seed) }
	store, err := frozenView(j.base)
	if err != nil {
		return res, wrap(err)
	}
	ad, n, err := newAdapter(c, j.m, j.mc)
	if err != nil {
		return res, wrap(err)
	}
	res.Config, res.Trainable = adapterConfig(ad), n
	sites := j.mc.Sites()
	if err := layers.Attach(store, ad, sites, rand.New(rand.NewPCG(j.seed, seedFor(j.m.Name)))); err != nil {
		return res, wrap(err)
	}
	g := store.NewGraph(true)
	m, err := mamba.Build(g, j.mc, ad, c.Batch, c.SeqLen)
	if err != nil {
		return res, wrap(errors.Wrap(err, "building the training graph"))
	}
	vm, err := g.Machine(m.Loss)
	if err != nil {
		return res, wrap(err)
	}
	defer vm.Close()
	ev, err := newEvaluator(store, j.mc, ad, c.Batch, c.SeqLen)
	if err != nil {
		return res, wrap(err)
	}
	defer ev.close()
	res.LR = c.LilyLR
	if j.m.Kind == "lora" {
		res.LR = c.LoraLR
	}
	sched, err := train.NewSchedule(c.Steps, c.WarmupRatio)
	if err != nil {
		return res, wrap(err)
	}
	at := evalSteps(c)
	name := fmt.Sprintf("%s-seed%d", j.m.Name, j.seed)
	tc := train.Config{Steps: c.Steps, Batch: c.Batch, GradAccum: c.GradAccum, Schedule: sched, Comm: j.comm, Seed: j.seed,
		Groups: []*train.Group{train.NewGroup("adapter", store.Trainable(), res.LR, 0)},
		EvalAt: func(s int) bool { return at[s] }, EvalFirst: true, Checkpoint: c.checkpointOf(name), SaveEvery: c.SaveEvery,
		Identity: struct {
			Config config `json:"config"`
			Method string `json:"method"`
			Seed   uint64 `json:"seed"`
		}{c.identity(), j.m.Name, j.seed},
		Progress: progressW, Desc: fmt.Sprintf("%s seed %d", j.m.Name, j.seed), AfterStep: afterStep}
	tc.Resume = c.Resume && train.HasCheckpoint(tc.Checkpoint)
	task := &lmTask{m: m, g: g, vm: vm, src: j.train, rng: rand.New(rand.NewPCG(j.seed, 0x61646170)), global: tc.GlobalBatch(),
		ids: make([]int, c.Batch*c.SeqLen), labels: make([]int, c.Batch*c.SeqLen), ev: ev, heldOut: j.heldOut, base: j.basePPL}
	run, err := train.Run(ctx, tc, task)
	if err != nil {
		return res, wrap(err)
	}
	res.Steps, res.Loss, res.Interrupted, res.Seconds = run.Steps, run.Losses, run.Interrupted, run.TrainSeconds+run.EvalSeconds
	for _, e := range run.Evals {
		res.Evals = append(res.Evals, evalPoint{Step: e.Step, Perplexity: e.Record})
	}
	if last := res.Evals[len(res.Evals)-1]; last.Step != res.Steps { // interrupted between evaluations
		ppl, err := ev.perplexity(j.heldOut)
		if err != nil {
			return res, wrap(err)
		}
		res.Evals = append(res.Evals, evalPoint{Step: res.Steps, Perplexity: ppl})
	}
	res.Final = res.Evals[len(res.Evals)-1].Perplexity
	res.AdapterDir = filepath.Join(c.Out, "adapters", name)
	if j.comm.Rank() != 0 {
		return res, nil
	}
	observe := func(cal *layers.MixingCalibrator) error { return ev.observeMixing(j.heldOut, cal) }
	plot := filepath.Join(c.Out, fmt.Sprintf("updates-%s.png", name))
	if res.Analysis, err = updatestats.Measure(store, ad, sites, observe, plot, fmt.Sprintf("%s seed %d", j.m.Label, j.seed)); err != nil {
		return res, wrap(err)
	}
	err = adapterfile.Save(res.AdapterDir, store, ad, sites, adapterfile.Options{BaseModel: j.baseDir, TaskType: "CAUSAL_LM", PEFTLayout: c.PEFTLayout})
	return res, wrap(err)
}
