package llama

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"gorgonia.org/tensor"
)

func TestForwardMatchesReference(t *testing.T) {
	configs := []Config{
		tinyConfig(true, Interleaved),
		tinyConfig(false, Halves),
		{Dim: 16, HiddenDim: 20, NLayers: 1, NHeads: 4, NKVHeads: 2, VocabSize: 9, MaxSeqLen: 8, NormEps: 1e-6, RopeTheta: 10000, Rope: Halves},
		{Dim: 12, HiddenDim: 8, NLayers: 2, NHeads: 2, NKVHeads: 2, VocabSize: 7, MaxSeqLen: 8, NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: true, Rope: Interleaved},
	}
	for ci, c := range configs {
		for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
			s := randomStore(t, c, dt, uint64(ci))
			w := refWeights(s)
			rng := rand.New(rand.NewPCG(uint64(ci), 5))
			seqs := randomTokens(rng, c.VocabSize, 5, 3)
			b := buildModel(t, c, s, nil, 2, 5, false)
			if err := b.m.SetBatch(seqs); err != nil {
				t.Fatal(err)
			}
			loss := b.run(t)
			tol := 1e-10
			if dt == tensor.Float32 {
				tol = 1e-5
			}
			var wantLoss float64
			var n int
			for i, seq := range seqs {
				ref := refForward(c, w, seq)
				for p := range seq {
					closeTo(t, "logits", b.logits(i, p), ref[p], tol)
					if p+1 < len(seq) {
						var z float64
						for _, v := range ref[p] {
							z += math.Exp(v)
						}
						wantLoss += math.Log(z) - ref[p][seq[p+1]]
						n++
					}
				}
			}
			closeTo(t, "loss", []float64{loss}, []float64{wantLoss / float64(n)}, tol)
			b.vm.Close()
		}
	}
}

func TestPaddingDoesNotChangeRealPositions(t *testing.T) {
	c := tinyConfig(false, Interleaved)
	s := randomStore(t, c, tensor.Float64, 3)
	seq := randomTokens(rand.New(rand.NewPCG(1, 1)), c.VocabSize, 4)[0]
	short := buildModel(t, c, s, nil, 1, 4, false)
	long := buildModel(t, c, s, nil, 1, 7, false)
	defer short.vm.Close()
	defer long.vm.Close()
	for _, b := range []*built{short, long} {
		if err := b.m.SetBatch([][]int{seq}); err != nil {
			t.Fatal(err)
		}
	}
	l1, l2 := short.run(t), long.run(t)
	for p := range seq {
		closeTo(t, "padded logits", long.logits(0, p), short.logits(0, p), 1e-13)
	}
	closeTo(t, "padded loss", []float64{l2}, []float64{l1}, 1e-13)
	mask := toFloat64s(long.m.Mask.Value())
	targets := long.m.Targets.Value().Data().([]int)
	for p := 0; p < 7; p++ {
		wantMask, wantTarget := 0.0, lilyop.IgnoreIndex
		if p < 4 {
			wantMask = 1
		}
		if p < 3 {
			wantTarget = seq[p+1]
		}
		if mask[p] != wantMask || targets[p] != wantTarget {
			t.Errorf("position %d: mask %v target %d, want %v and %d", p, mask[p], targets[p], wantMask, wantTarget)
		}
	}
}

func TestSetBatchErrors(t *testing.T) {
	c := tinyConfig(true, Interleaved)
	s := randomStore(t, c, tensor.Float32, 4)
	b := buildModel(t, c, s, nil, 2, 3, false)
	defer b.vm.Close()
	for _, bad := range [][][]int{{{1}, {2}, {3}}, {{1, 2, 3, 4}}, {{1, 11}}, {{-1}}} {
		if err := b.m.SetBatch(bad); err == nil {
			t.Errorf("SetBatch(%v) must fail", bad)
		}
	}
	g := s.NewGraph(false)
	if _, err := Build(g, c, nil, 1, c.MaxSeqLen+1); err == nil {
		t.Error("a sequence longer than MaxSeqLen must be rejected")
	}
	if _, err := Build(nil, c, nil, 1, 2); err == nil {
		t.Error("a nil graph must be rejected")
	}
	if _, err := NewGenerator(c, nil, nil); err == nil {
		t.Error("a nil store must be rejected")
	}
	gen, err := NewGenerator(c, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gen.Generate(nil, "x", SampleOptions{}); err == nil {
		t.Error("a nil tokenizer must be rejected")
	}
	other := c
	other.Dim = 16
	if _, err := Build(s.NewGraph(false), other, nil, 1, 2); err == nil {
		t.Error("a config that does not fit the store must be rejected")
	}
}

// gradCheck compares the symbolic gradient of every trainable parameter of
// the store with central differences of the loss on a forward-only twin.
func gradCheck(t *testing.T, c Config, s *layers.Store, a layers.Adapter) {
	t.Helper()
	seqs := randomTokens(rand.New(rand.NewPCG(8, 8)), c.VocabSize, 4, 3)
	gb := buildModel(t, c, s, a, 2, 4, true)
	fb := buildModel(t, c, s, a, 2, 4, false)
	defer gb.vm.Close()
	defer fb.vm.Close()
	for _, b := range []*built{gb, fb} {
		if err := b.m.SetBatch(seqs); err != nil {
			t.Fatal(err)
		}
	}
	gb.run(t)
	if len(gb.learn) != len(s.Trainable()) {
		t.Fatalf("the graph uses %d of %d trainable parameters", len(gb.learn), len(s.Trainable()))
	}
	const eps = 1e-6
	for _, n := range gb.learn {
		gv, err := n.Grad()
		if err != nil {
			t.Fatal(err)
		}
		if !gv.Shape().Eq(n.Shape()) {
			t.Fatalf("gradient of %s has shape %v, want %v", n.Name(), gv.Shape(), n.Shape())
		}
		ana := gv.Data().([]float64)
		p, _ := s.Get(n.Name())
		vals := p.Value.Data().([]float64)
		for j := range vals {
			orig := vals[j]
			vals[j] = orig + eps
			fp := fb.run(t)
			vals[j] = orig - eps
			fm := fb.run(t)
			vals[j] = orig
			num := (fp - fm) / (2 * eps)
			if e := math.Abs(num-ana[j]) / math.Max(1, math.Abs(num)); e > 1e-6 || math.IsNaN(ana[j]) {
				t.Errorf("d loss/d %s[%d]: analytic %.10g, numeric %.10g", n.Name(), j, ana[j], num)
			}
		}
	}
}

func TestGradientLilyOnTinyModel(t *testing.T) {
	c := tinyConfig(true, Interleaved)
	s := randomStore(t, c, tensor.Float64, 6)
	lily, err := layers.NewLily(layers.LilyConfig{R: 2, StrideA: 2, NumB: 2, Scaling: 0.7,
		TargetModules: []string{"q_proj", "v_proj"}, NonZeroB: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := layers.Attach(s, lily, c.Sites(), rand.New(rand.NewPCG(6, 6))); err != nil {
		t.Fatal(err)
	}
	// One A per target (stride 2 over 2 layers), one B pool per target, a
	// router per site.
	if n := len(s.Trainable()); n != 2*(1+1+2) {
		t.Fatalf("%d trainable tensors", n)
	}
	// The adapter (B non-zero) changes the model.
	seqs := randomTokens(rand.New(rand.NewPCG(8, 8)), c.VocabSize, 4, 3)
	var losses []float64
	for _, a := range []layers.Adapter{nil, lily} {
		b := buildModel(t, c, s, a, 2, 4, false)
		if err := b.m.SetBatch(seqs); err != nil {
			t.Fatal(err)
		}
		losses = append(losses, b.run(t))
		b.vm.Close()
	}
	if math.Abs(losses[0]-losses[1]) < 1e-6 {
		t.Fatalf("the Lily adapter does not change the loss: %v", losses)
	}
	gradCheck(t, c, s, lily)
}

func TestGradientAllWeights(t *testing.T) {
	for _, c := range []Config{tinyConfig(true, Interleaved), tinyConfig(false, Halves)} {
		s := randomStore(t, c, tensor.Float64, 7)
		for _, p := range s.Params() {
			p.Trainable = true
		}
		gradCheck(t, c, s, nil)
	}
}

func TestSitesMatchLilyCounts(t *testing.T) {
	// LILY.md's reference counts, from the model shapes alone.
	llama3 := Config{Dim: 4096, HiddenDim: 14336, NLayers: 32, NHeads: 32, NKVHeads: 8, VocabSize: 128256, MaxSeqLen: 8192, NormEps: 1e-5, RopeTheta: 500000}
	llama32 := Config{Dim: 3072, HiddenDim: 8192, NLayers: 28, NHeads: 24, NKVHeads: 8, VocabSize: 128256, MaxSeqLen: 8192, NormEps: 1e-5, RopeTheta: 500000}
	for _, tc := range []struct {
		c       Config
		lily    layers.LilyConfig
		want    int
		targets []string
	}{
		{llama3, layers.LilyConfig{R: 16, StrideA: 8, NumB: 4, Scaling: 1}, 1185792, []string{"q_proj", "k_proj", "v_proj"}},
		{llama32, layers.LilyConfig{R: 896, StrideA: 14, NumB: 2, Scaling: 1}, 18450432, []string{"q_proj", "v_proj"}},
	} {
		tc.lily.TargetModules = tc.targets
		a, err := layers.NewLily(tc.lily)
		if err != nil {
			t.Fatal(err)
		}
		n, err := layers.CountParams(a, tc.c.Sites())
		if err != nil {
			t.Fatal(err)
		}
		if n != tc.want {
			t.Errorf("%v: %d trainable parameters, want %d", tc.targets, n, tc.want)
		}
	}
	sites := tinyConfig(true, Interleaved).Sites()
	if len(sites) != 14 || sites[8].Path != "model.layers.1.self_attn.k_proj" || sites[8].Target != "k_proj" ||
		sites[8].DIn != 8 || sites[8].DOut != 4 || sites[13].Weight != "model.layers.1.mlp.down_proj.weight" || sites[13].DIn != 12 {
		t.Errorf("sites %+v", sites)
	}
}

func TestLayoutConversionKeepsLogits(t *testing.T) {
	for _, c := range []Config{tinyConfig(true, Interleaved), {Dim: 16, HiddenDim: 20, NLayers: 1, NHeads: 4, NKVHeads: 2, VocabSize: 9, MaxSeqLen: 8, NormEps: 1e-6, RopeTheta: 10000, Rope: Interleaved}} {
		s := randomStore(t, c, tensor.Float64, 9)
		seqs := randomTokens(rand.New(rand.NewPCG(2, 2)), c.VocabSize, 6)
		before := buildModel(t, c, s, nil, 1, 6, false)
		if err := before.m.SetBatch(seqs); err != nil {
			t.Fatal(err)
		}
		before.run(t)
		want := append([]float64(nil), toFloat64s(before.m.Logits.Value())...)
		before.vm.Close()
		hf, err := ToHFLayout(c, s)
		if err != nil {
			t.Fatal(err)
		}
		if hf.Rope != Halves {
			t.Fatal("ToHFLayout must switch the layout")
		}
		after := buildModel(t, hf, s, nil, 1, 6, false)
		if err := after.m.SetBatch(seqs); err != nil {
			t.Fatal(err)
		}
		after.run(t)
		closeTo(t, "logits after conversion", toFloat64s(after.m.Logits.Value()), want, 1e-12)
		after.vm.Close()
		// The permutation really moved weights: the interleaved model with
		// the converted weights computes something else.
		wrong := buildModel(t, c, s, nil, 1, 6, false)
		if err := wrong.m.SetBatch(seqs); err != nil {
			t.Fatal(err)
		}
		wrong.run(t)
		if got := toFloat64s(wrong.m.Logits.Value()); math.Abs(got[len(got)-1]-want[len(want)-1]) < 1e-9 {
			t.Error("converted weights under the old layout give the same logits")
		}
		wrong.vm.Close()
	}
}

// BenchmarkLilyTrainStep measures one forward and backward pass of
// stories260K with Lily on q_proj and v_proj, batch 8 × 128 tokens.
func BenchmarkLilyTrainStep(b *testing.B) {
	c, s, _ := loadStories(b, tensor.Float32)
	lily, err := layers.NewLily(layers.LilyConfig{R: 8, StrideA: 2, NumB: 2, Scaling: 1, TargetModules: []string{"q_proj", "v_proj"}})
	if err != nil {
		b.Fatal(err)
	}
	if err := layers.Attach(s, lily, c.Sites(), rand.New(rand.NewPCG(1, 1))); err != nil {
		b.Fatal(err)
	}
	m := buildModel(b, c, s, lily, 8, 128, true)
	defer m.vm.Close()
	if err := m.m.SetBatch(randomTokens(rand.New(rand.NewPCG(2, 2)), c.VocabSize, 128, 128, 128, 128, 128, 128, 128, 100)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.run(b)
	}
	b.ReportMetric(float64(8*128*b.N)/b.Elapsed().Seconds(), "tokens/s")
}
