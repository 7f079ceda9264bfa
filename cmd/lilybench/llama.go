package main

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/lilygo/lily/bench"
	"github.com/lilygo/lily/gorgoniafix"
	"github.com/lilygo/lily/graphs/llama"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// llamaFlags are the settings of the llama experiment.
type llamaFlags struct {
	dir        string // a Hugging Face LLaMA folder (llama synth writes one)
	batch, seq int
	f32        bool // keep the frozen weights in float32 instead of bfloat16
}

// llama times one training step of a Hugging Face LLaMA with the paper's
// Lily setting (r 16, stride_A 8, num_B 4 on q, k, v; frozen weights in
// bfloat16 unless -llama_f32) against the GEMM time of the matrix products
// it performs (bench.LlamaGEMMs, each run alone on package gemm): the
// step's share of its GEMM roofline is the inverse of the ratio.
func (r *runner) llama() error {
	f := r.llamaFlags
	if f.dir == "" {
		return errors.New("-run llama needs -llama DIR, a Hugging Face LLaMA folder (go run ./examples/llama synth -config llama3.2-1b -dtype bf16 -out DIR writes one)")
	}
	weights := lilyop.BFloat16
	if f.f32 {
		weights = tensor.Float32
	}
	t0 := time.Now()
	cfg, store, err := llama.LoadHFWith(f.dir, llama.HFOptions{Dtype: tensor.Float32, Weights: weights})
	if err != nil {
		return err
	}
	fmt.Fprintf(r.log, "   loaded %s in %.1f s\n", f.dir, time.Since(t0).Seconds())
	lily, err := layers.NewLily(layers.LilyConfig{R: 16, StrideA: 8, NumB: 4, Scaling: 1, TargetModules: []string{"q_proj", "k_proj", "v_proj"}})
	if err != nil {
		return err
	}
	store.Freeze()
	if err := layers.Attach(store, lily, cfg.Sites(), rand.New(rand.NewPCG(1, 2))); err != nil {
		return err
	}
	g := store.NewGraph(true)
	m, err := llama.Build(g, cfg, lily, f.batch, f.seq)
	if err != nil {
		return err
	}
	loss, err := m.Loss()
	if err != nil {
		return err
	}
	vm, err := g.Machine(loss)
	if err != nil {
		return err
	}
	defer vm.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	seqs := make([][]int, f.batch)
	for i := range seqs {
		seqs[i] = make([]int, f.seq)
		for j := range seqs[i] {
			seqs[i][j] = rng.IntN(cfg.VocabSize)
		}
	}
	if err := m.SetBatch(seqs); err != nil {
		return err
	}
	opt := gorgoniafix.NewAdamW(gorgoniafix.WithLearnRate(1e-5))
	step := bench.StepFunc(func() error {
		vm.Reset()
		if err := vm.RunAll(); err != nil {
			return err
		}
		return opt.Step(G.NodesToValueGrads(g.Learnables()))
	})
	gemms := bench.LlamaGEMMs(bench.LlamaStep{Config: cfg, Batch: f.batch, Seq: f.seq, R: 16, NumB: 4, BF16: !f.f32})
	products := bench.NewGEMMRunner(gemms)
	what := fmt.Sprintf("LLaMA %d layers × %d wide (%s), Lily r16 s8 b4 on q,k,v, %d×%d tokens, frozen weights %v",
		cfg.NLayers, cfg.Dim, f.dir, f.batch, f.seq, weights)
	t, err := r.compare("L", what, "training step", "its GEMMs alone", step, products, 1, r.bigRounds)
	if err != nil {
		return err
	}
	flops := bench.TotalFlops(gemms)
	r.last().target, r.last().met = "≤ 2 (≥ 0.5 of the roofline)", yes(t.Ratio() <= 2)
	r.last().note = fmt.Sprintf("%.1f TFLOP a step; step %.0f GFLOP/s, GEMMs alone %.0f GFLOP/s", flops/1e12,
		flops/t.MedA().Seconds()/1e9, flops/t.MedB().Seconds()/1e9)
	return nil
}
