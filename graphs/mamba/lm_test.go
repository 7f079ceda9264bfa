package mamba

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/lilygo/lily/gorgoniafix"
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func TestInputsAndLabels(t *testing.T) {
	got, err := NextTokenLabels([]int{5, 6, 7, 8, 9, 1}, []int{1, 1, 0, 1, 1, 1}, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []int{6, IgnoreIndex, IgnoreIndex, 9, 1, IgnoreIndex}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("NextTokenLabels = %v, want %v", got, want)
		}
	}
	if _, err := NextTokenLabels([]int{1, 2, 3}, nil, 2); err == nil {
		t.Error("ragged rows: no error")
	}
	cfg := TinyConfig()
	s := tinyStore(t, cfg, tensor.Float32, 1)
	m, err := Build(s.NewGraph(false), cfg, nil, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][3][]int{
		{{1}, nil, nil}, {{1, 32}, nil, nil}, {{1, 2}, {0, 32}, nil}, {{1, 2}, {-1, 0}, nil}, {{1, 2}, nil, {1, 2}}, {{1, 2}, {1}, nil},
	} {
		if err := m.SetInputs(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("SetInputs%v: no error", bad)
		}
	}
	if err := m.SetInputs([]int{1, 2}, []int{IgnoreIndex, 3}, []int{1, 0}); err != nil || m.Targets() != 1 {
		t.Errorf("SetInputs: %v, %d targets", err, m.Targets())
	}
	if mask := m.AttentionMask.Value().Data().([]float32); mask[0] != 1 || mask[1] != 0 {
		t.Errorf("mask %v", mask)
	}
	if _, err := Build(nil, cfg, nil, 1, 1); err == nil {
		t.Error("nil graph: no error")
	}
	if _, err := Build(s.NewGraph(false), cfg, nil, 0, 1); err == nil {
		t.Error("empty batch: no error")
	}
	empty, _ := layers.NewStore(tensor.Float64)
	if _, err := Build(empty.NewGraph(false), cfg, nil, 1, 1); err == nil || !strings.Contains(err.Error(), EmbeddingName) {
		t.Errorf("empty store: %v", err)
	}
	if _, err := Build(s.NewGraph(false), Config{}, nil, 1, 1); err == nil {
		t.Error("invalid config: no error")
	}
}

// Perplexity covers every token after the first once, with the context of
// its own window, and equals the reference computed window by window.
func TestPerplexity(t *testing.T) {
	cfg := TinyConfig()
	s := tinyStore(t, cfg, tensor.Float64, 2)
	ref := newRef(s, cfg)
	rng := rand.New(rand.NewPCG(1, 1))
	tokens := make([]int, 17)
	for i := range tokens {
		tokens[i] = rng.IntN(cfg.VocabSize)
	}
	const b, l = 2, 3
	bt := build(t, s, cfg, nil, b, l, false)
	defer bt.vm.Close()
	ppl, n, err := bt.m.Perplexity(bt.vm, tokens)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	sum := 0.0
	for start := 0; start < len(tokens)-1; start += l {
		end := min(start+l, len(tokens)-1)
		logits := ref.forward(tokens[start:end])
		labels := tokens[start+1 : end+1]
		sum += refLoss(logits, labels) * float64(len(labels))
	}
	if want := math.Exp(sum / 16); n != 16 || math.Abs(ppl-want) > 1e-9*want {
		t.Errorf("perplexity %v over %d tokens, reference %v over 16", ppl, n, want)
	}
	// PerplexityEach calls back after each of the ceil(16 / (2·3)) = 3 runs
	// and stops at its error.
	runs := 0
	if again, _, err := bt.m.PerplexityEach(bt.vm, tokens, func() error { runs++; return nil }); err != nil || again != ppl || runs != 3 {
		t.Errorf("PerplexityEach: %v after %d calls (%v), want %v after 3", again, runs, err, ppl)
	}
	if _, _, err := bt.m.PerplexityEach(bt.vm, tokens, func() error { return errors.New("stop") }); err == nil || !strings.Contains(err.Error(), "stop") {
		t.Errorf("PerplexityEach ignored its callback's error: %v", err)
	}
	if _, _, err := bt.m.Perplexity(bt.vm, tokens[:1]); err == nil {
		t.Error("one token: no error")
	}
	if _, _, err := bt.m.Perplexity(nil, tokens); err == nil {
		t.Error("nil VM: no error")
	}
	if _, _, err := bt.m.Perplexity(bt.vm, []int{1, 99}); err == nil {
		t.Error("token outside the vocabulary: no error")
	}
}

// InitStore follows the reference initialisation.
func TestInitStore(t *testing.T) {
	cfg := falconTiny()
	cfg.TimeStepMin, cfg.TimeStepMax, cfg.TimeStepFloor = 0.01, 0.05, 0.02
	s, _ := layers.NewStore(tensor.Float64)
	if err := InitStore(s, cfg, 1); err != nil {
		t.Fatal(err)
	}
	get := func(name string) []float64 {
		p, ok := s.Get(name)
		if !ok {
			t.Fatalf("no %s", name)
		}
		if !p.Trainable {
			t.Errorf("%s is frozen", name)
		}
		return layers.Float64s(p.Value)
	}
	within := func(name string, lo, hi float64) {
		for _, v := range get(name) {
			if v < lo || v > hi {
				t.Fatalf("%s has %v outside [%v, %v]", name, v, lo, hi)
			}
		}
	}
	mx := mixerPath(1)
	for i, v := range get(mx + ".A_log") {
		if want := math.Log(float64(i%cfg.StateSize + 1)); v != want {
			t.Fatalf("A_log[%d] = %v, want %v", i, v, want)
		}
	}
	within(mx+".D", 1, 1)
	within(LayerPath(0)+".norm.weight", 1, 1)
	within(NormFName, 1, 1)
	within(mx+".in_proj.bias", 0, 0)
	within(mx+".out_proj.bias", 0, 0)
	for _, b := range get(mx + ".dt_proj.bias") {
		if sp := math.Log1p(math.Exp(b)); sp < 0.02-1e-12 || sp > 0.05+1e-12 {
			t.Fatalf("softplus(dt bias) = %v outside [floor 0.02, dt_max 0.05]", sp)
		}
	}
	std := 1 / math.Sqrt(float64(cfg.TimeStepRank))
	within(mx+".dt_proj.weight", -std, std)
	within(mx+".conv1d.weight", -1/math.Sqrt(3), 1/math.Sqrt(3))
	within(mx+".in_proj.weight", -1/math.Sqrt(8), 1/math.Sqrt(8))
	within(mx+".out_proj.weight", -0.25/math.Sqrt(2), 0.25/math.Sqrt(2)) // 1/√16 over √2 layers
	within(LMHeadName, -1/math.Sqrt(8), 1/math.Sqrt(8))
	if _, ok := s.Get(mx + ".conv1d.bias"); ok {
		t.Error("conv1d.bias without use_conv_bias")
	}
	emb := get(EmbeddingName)
	ss := 0.0
	for _, v := range emb {
		ss += v * v
	}
	if sd := math.Sqrt(ss / float64(len(emb))); sd < 0.07 || sd > 0.13 {
		t.Errorf("embedding std %v, want about initializer_range 0.1", sd)
	}
	cfg.TimeStepInitScheme = "constant"
	s2, _ := layers.NewStore(tensor.Float32)
	if err := InitStore(s2, cfg, 1); err != nil {
		t.Fatal(err)
	}
	p, _ := s2.Get(mx + ".dt_proj.weight")
	for _, v := range layers.Float64s(p.Value) {
		if math.Abs(v-std) > 1e-7 {
			t.Fatalf("constant dt_proj init %v, want %v", v, std)
		}
	}
	if err := InitStore(s2, cfg, 1); err == nil {
		t.Error("initialising twice into one store: no error")
	}
	if err := InitStore(nil, cfg, 1); err == nil {
		t.Error("nil store: no error")
	}
	for name, want := range map[string]bool{
		mx + ".A_log": true, mx + ".D": true, mx + ".dt_proj.bias": true, LayerPath(0) + ".norm.weight": true,
		NormFName: true, mx + ".in_proj.weight": false, EmbeddingName: false, mx + ".conv1d.weight": false,
	} {
		if NoWeightDecay(name) != want {
			t.Errorf("NoWeightDecay(%s) = %t", name, !want)
		}
	}
}

// Fine-tuning end to end: with B at zero, Lily leaves the model unchanged;
// AdamW steps on the adapter lower the loss and leave the frozen weights
// bit-identical, in float32.
func TestLilyFineTuning(t *testing.T) {
	cfg := TinyConfig()
	s := tinyStore(t, cfg, tensor.Float32, 4)
	s.Freeze()
	frozen := map[string][]float64{}
	for _, p := range s.Params() {
		frozen[p.Name] = layers.Float64s(p.Value)
	}
	ids, labels := tinyBatch(t, cfg, 2, 6, 8)
	base := build(t, s, cfg, nil, 2, 6, false)
	base.m.SetInputs(ids, labels, nil)
	baseLoss := base.run(t)
	lily, err := layers.NewLily(layers.LilyConfig{R: 4, StrideA: 2, NumB: 2, Scaling: 1, TargetModules: []string{"in_proj", "dt_proj"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := layers.Attach(s, lily, cfg.Sites(), rand.New(rand.NewPCG(1, 1))); err != nil {
		t.Fatal(err)
	}
	tr := build(t, s, cfg, lily, 2, 6, true)
	defer tr.vm.Close()
	tr.m.SetInputs(ids, labels, nil)
	opt := gorgoniafix.NewAdamW(gorgoniafix.WithLearnRate(0.02), gorgoniafix.WithWeightDecay(0))
	var losses []float64
	for i := 0; i < 15; i++ {
		losses = append(losses, tr.run(t))
		if err := opt.Step(G.NodesToValueGrads(tr.m.Graph.Learnables())); err != nil {
			t.Fatal(err)
		}
	}
	if losses[0] != baseLoss {
		t.Errorf("zero-initialised Lily changed the loss: %v vs %v", losses[0], baseLoss)
	}
	if !(losses[len(losses)-1] < 0.9*losses[0]) {
		t.Errorf("loss did not fall: %v", losses)
	}
	for name, want := range frozen {
		p, _ := s.Get(name)
		assertClose(t, "frozen "+name, layers.Float64s(p.Value), want, 0)
	}
	base.vm.Close()
}
