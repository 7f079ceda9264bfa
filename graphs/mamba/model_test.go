package mamba

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// falconTiny is TinyConfig with every option the tiny default leaves off:
// untied head, linear biases, no conv bias, Falcon-Mamba's mixer RMSNorms
// (with a large eps so that it matters) and a rescaled out_proj.
func falconTiny() Config {
	c := TinyConfig()
	c.TieWordEmbeddings, c.UseBias, c.UseConvBias, c.RescalePrenormResidual = false, true, false, true
	c.ModelType = "falcon_mamba"
	eps := 1e-2
	c.MixerRMSEps = &eps
	return c
}

// tinyStore returns a store holding an initialised model whose every
// parameter is then shifted by up to ±0.1, so that zero-initialised biases
// and unit weights are exercised too.
func tinyStore(t testing.TB, cfg Config, dt tensor.Dtype, seed uint64) *layers.Store {
	t.Helper()
	s, err := layers.NewStore(dt)
	if err != nil {
		t.Fatal(err)
	}
	if err := InitStore(s, cfg, seed); err != nil {
		t.Fatalf("%+v", err)
	}
	rng := rand.New(rand.NewPCG(seed, 99))
	for _, p := range s.Params() {
		switch d := p.Value.Data().(type) {
		case []float64:
			for i := range d {
				d[i] += 0.2 * (rng.Float64() - 0.5)
			}
		case []float32:
			for i := range d {
				d[i] += float32(0.2 * (rng.Float64() - 0.5))
			}
		}
	}
	return s
}

// tinyBatch draws token ids and next-token labels for a [b, l] batch, with
// one ignored label.
func tinyBatch(t testing.TB, cfg Config, b, l int, seed uint64) (ids, labels []int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 5))
	ids = make([]int, b*l)
	for i := range ids {
		ids[i] = rng.IntN(cfg.VocabSize)
	}
	labels, err := NextTokenLabels(ids, nil, l)
	if err != nil {
		t.Fatal(err)
	}
	labels[0] = IgnoreIndex
	return ids, labels
}

// refModel is an independent plain-Go forward pass of the model, written
// after Hugging Face's MambaForCausalLM slow path, reading the store.
type refModel struct {
	cfg Config
	p   map[string][]float64
}

func newRef(s *layers.Store, cfg Config) *refModel {
	r := &refModel{cfg: cfg, p: map[string][]float64{}}
	for _, p := range s.Params() {
		r.p[p.Name] = layers.Float64s(p.Value)
	}
	return r
}

// linear returns x·W (+ b) for W stored [in, out].
func (r *refModel) linear(x []float64, name string, out int, bias bool) []float64 {
	w := r.p[name+".weight"]
	y := make([]float64, out)
	for o := 0; o < out; o++ {
		for i, xi := range x {
			y[o] += xi * w[i*out+o]
		}
		if bias {
			y[o] += r.p[name+".bias"][o]
		}
	}
	return y
}

func rmsNorm(x, w []float64, eps float64) []float64 {
	ms := 0.0
	for _, v := range x {
		ms += v * v
	}
	inv := 1 / math.Sqrt(ms/float64(len(x))+eps)
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = v * inv
		if w != nil {
			y[i] *= w[i]
		}
	}
	return y
}

func silu(x float64) float64 { return x / (1 + math.Exp(-x)) }

// forward returns the logits [len(ids), V] of one sequence.
func (r *refModel) forward(ids []int) [][]float64 {
	c := r.cfg
	d, di, rk, n, k := c.HiddenSize, c.DInner(), c.TimeStepRank, c.StateSize, c.ConvKernel
	L := len(ids)
	x := make([][]float64, L)
	for t, id := range ids {
		x[t] = append([]float64(nil), r.p[EmbeddingName][id*d:(id+1)*d]...)
	}
	for l := 0; l < c.NumHiddenLayers; l++ {
		pre := LayerPath(l)
		mx := pre + ".mixer"
		hs, gate := make([][]float64, L), make([][]float64, L)
		for t := range x {
			xz := r.linear(rmsNorm(x[t], r.p[pre+".norm.weight"], c.LayerNormEpsilon), mx+".in_proj", 2*di, c.UseBias)
			hs[t], gate[t] = xz[:di], xz[di:]
		}
		// Depthwise conv1d with k−1 zeros of left padding, cut to L.
		conv := make([][]float64, L)
		for t := range conv {
			conv[t] = make([]float64, di)
			for ch := 0; ch < di; ch++ {
				v := 0.0
				if c.UseConvBias {
					v = r.p[mx+".conv1d.bias"][ch]
				}
				for j := 0; j < k; j++ {
					if src := t + j - (k - 1); src >= 0 {
						v += r.p[mx+".conv1d.weight"][ch*k+j] * hs[src][ch]
					}
				}
				conv[t][ch] = silu(v)
			}
		}
		state := make([][]float64, di)
		for ch := range state {
			state[ch] = make([]float64, n)
		}
		for t := 0; t < L; t++ {
			ssm := r.linear(conv[t], mx+".x_proj", rk+2*n, false)
			dt, B, C := ssm[:rk], ssm[rk:rk+n], ssm[rk+n:]
			if c.MixerRMSEps != nil {
				dt, B, C = rmsNorm(dt, nil, *c.MixerRMSEps), rmsNorm(B, nil, *c.MixerRMSEps), rmsNorm(C, nil, *c.MixerRMSEps)
			}
			delta := r.linear(dt, mx+".dt_proj", di, true)
			y := make([]float64, di)
			for ch := 0; ch < di; ch++ {
				sp := math.Log1p(math.Exp(delta[ch]))
				u := conv[t][ch]
				for j := 0; j < n; j++ {
					A := -math.Exp(r.p[mx+".A_log"][ch*n+j])
					state[ch][j] = math.Exp(sp*A)*state[ch][j] + sp*B[j]*u
					y[ch] += state[ch][j] * C[j]
				}
				y[ch] = (y[ch] + r.p[mx+".D"][ch]*u) * silu(gate[t][ch])
			}
			out := r.linear(y, mx+".out_proj", d, c.UseBias)
			for i := range out {
				x[t][i] += out[i]
			}
		}
	}
	logits := make([][]float64, L)
	for t := range x {
		h := rmsNorm(x[t], r.p[NormFName], c.LayerNormEpsilon)
		if c.TieWordEmbeddings {
			logits[t] = make([]float64, c.VocabSize)
			for v := range logits[t] {
				for i, hi := range h {
					logits[t][v] += hi * r.p[EmbeddingName][v*d+i]
				}
			}
		} else {
			logits[t] = r.linear(h, "lm_head", c.VocabSize, false)
		}
	}
	return logits
}

// loss is the mean cross-entropy over labels that are not IgnoreIndex.
func refLoss(logits [][]float64, labels []int) float64 {
	sum, n := 0.0, 0
	for i, l := range labels {
		if l == IgnoreIndex {
			continue
		}
		z := 0.0
		for _, v := range logits[i] {
			z += math.Exp(v)
		}
		sum += math.Log(z) - logits[i][l]
		n++
	}
	return sum / float64(n)
}

// built is a model with its VM.
type built struct {
	m  *Model
	vm G.VM
}

func build(t testing.TB, s *layers.Store, cfg Config, a layers.Adapter, b, l int, grad bool) *built {
	t.Helper()
	g := s.NewGraph(grad)
	m, err := Build(g, cfg, a, b, l)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if !grad {
		return &built{m: m, vm: G.NewTapeMachine(g.G)}
	}
	if _, err := G.Grad(m.Loss, g.Learnables()...); err != nil {
		t.Fatalf("%+v", err)
	}
	return &built{m: m, vm: G.NewTapeMachine(g.G, G.BindDualValues(g.Learnables()...))}
}

func (bt *built) run(t testing.TB) float64 {
	t.Helper()
	bt.vm.Reset()
	if err := bt.vm.RunAll(); err != nil {
		t.Fatalf("%+v", err)
	}
	v, err := bt.m.LossValue()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The whole model equals the independent reference to 1e-10 in float64,
// twice in a row (no op may write into a parameter), and float32 agrees to
// float32 precision.
func TestModelMatchesReference(t *testing.T) {
	for _, cfg := range []Config{TinyConfig(), falconTiny()} {
		const b, l = 2, 5
		s := tinyStore(t, cfg, tensor.Float64, 1)
		before := newRef(s, cfg)
		ids, labels := tinyBatch(t, cfg, b, l, 2)
		bt := build(t, s, cfg, nil, b, l, false)
		if err := bt.m.SetInputs(ids, labels, nil); err != nil {
			t.Fatal(err)
		}
		var logits []float64
		for run := 0; run < 2; run++ {
			loss := bt.run(t)
			logits = bt.m.Logits.Value().Data().([]float64)
			var all [][]float64
			for seq := 0; seq < b; seq++ {
				ref := before.forward(ids[seq*l : (seq+1)*l])
				all = append(all, ref...)
				for pos, row := range ref {
					got := logits[(seq*l+pos)*cfg.VocabSize : (seq*l+pos+1)*cfg.VocabSize]
					assertClose(t, cfg.ModelType+" logits", got, row, 1e-10)
				}
			}
			if want := refLoss(all, labels); math.Abs(loss-want) > 1e-10 {
				t.Fatalf("%s loss %v, reference %v", cfg.ModelType, loss, want)
			}
		}
		for name, want := range before.p {
			p, _ := s.Get(name)
			assertClose(t, "parameter "+name+" after two runs", layers.Float64s(p.Value), want, 0)
		}
		// float32: the same parameters rounded.
		s32, _ := layers.NewStore(tensor.Float32)
		for _, p := range s.Params() {
			q := *p
			q.Value = layers.FromFloat64(tensor.Float32, p.Value.Shape(), layers.Float64s(p.Value))
			if err := s32.Add(&q); err != nil {
				t.Fatal(err)
			}
		}
		bt32 := build(t, s32, cfg, nil, b, l, false)
		if err := bt32.m.SetInputs(ids, labels, nil); err != nil {
			t.Fatal(err)
		}
		bt32.run(t)
		assertClose(t, "float32 logits", f64s(bt32.m.Logits.Value().(*tensor.Dense)), logits, 1e-4)
		bt.vm.Close()
		bt32.vm.Close()
	}
}

// gradCheckStore compares the gradient of the loss with respect to every
// trainable parameter (at most maxPer elements of each, 0: all) with
// central differences of the forward graph.
func gradCheckStore(t *testing.T, s *layers.Store, cfg Config, a layers.Adapter, maxPer int) int {
	t.Helper()
	const b, l, eps = 2, 4, 1e-6
	ids, labels := tinyBatch(t, cfg, b, l, 3)
	lg := build(t, s, cfg, a, b, l, true)
	fwd := build(t, s, cfg, a, b, l, false)
	defer lg.vm.Close()
	defer fwd.vm.Close()
	for _, m := range []*Model{lg.m, fwd.m} {
		if err := m.SetInputs(ids, labels, nil); err != nil {
			t.Fatal(err)
		}
	}
	lg.run(t)
	params := lg.m.Graph.Learnables()
	if len(params) != len(s.Trainable()) {
		t.Fatalf("the graph uses %d of the store's %d trainable parameters", len(params), len(s.Trainable()))
	}
	rng := rand.New(rand.NewPCG(4, 4))
	checked := 0
	for _, n := range params {
		gv, err := n.Grad()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(gv.Shape(), n.Shape()) {
			t.Fatalf("gradient of %s has shape %v, want %v", n.Name(), gv.Shape(), n.Shape())
		}
		ana := gv.Data().([]float64)
		p, _ := s.Get(n.Name())
		vals := p.Value.Data().([]float64)
		idx := rng.Perm(len(vals))
		if maxPer > 0 && len(idx) > maxPer {
			idx = idx[:maxPer]
		}
		for _, j := range idx {
			orig := vals[j]
			vals[j] = orig + eps
			fp := fwd.run(t)
			vals[j] = orig - eps
			fm := fwd.run(t)
			vals[j] = orig
			num := (fp - fm) / (2 * eps)
			if e := math.Abs(num-ana[j]) / math.Max(1, math.Abs(num)); e > 1e-6 || math.IsNaN(ana[j]) {
				t.Errorf("d/d%s[%d]: analytic %.10g, numeric %.10g", n.Name(), j, ana[j], num)
			}
			checked++
		}
	}
	return checked
}

// Lily on in_proj and dt_proj ("Δ + in"), with non-zero B: the gradient of
// every adapter parameter matches central differences, for both variants.
func TestLilyModelGradient(t *testing.T) {
	for _, cfg := range []Config{TinyConfig(), falconTiny()} {
		s := tinyStore(t, cfg, tensor.Float64, 6)
		s.Freeze()
		lily, err := layers.NewLily(layers.LilyConfig{R: 2, StrideA: 1, NumB: 2, Scaling: 0.8, NonZeroB: true, TargetModules: []string{"in_proj", "dt_proj"}, Routing: lilyop.Batch})
		if err != nil {
			t.Fatal(err)
		}
		if err := layers.Attach(s, lily, cfg.Sites(), rand.New(rand.NewPCG(7, 7))); err != nil {
			t.Fatal(err)
		}
		for _, p := range s.Trainable() {
			if !strings.Contains(p.Name, ".in_proj.lily_") && !strings.Contains(p.Name, ".dt_proj.lily_") {
				t.Errorf("unexpected trainable parameter %s", p.Name)
			}
		}
		if n := gradCheckStore(t, s, cfg, lily, 0); n < 200 {
			t.Errorf("only %d elements checked", n)
		}
	}
}

// LoRA on the same sites is one flag away and differentiates correctly too.
func TestLoRAModelGradient(t *testing.T) {
	cfg := falconTiny()
	s := tinyStore(t, cfg, tensor.Float64, 9)
	s.Freeze()
	lora, err := layers.NewLoRA(layers.LoRAConfig{R: 2, Alpha: 4, NonZeroB: true, TargetModules: []string{"in_proj", "dt_proj"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := layers.Attach(s, lora, cfg.Sites(), rand.New(rand.NewPCG(8, 8))); err != nil {
		t.Fatal(err)
	}
	gradCheckStore(t, s, cfg, lora, 8)
}

// Training from scratch: the gradient of every model parameter (a sample
// of the elements of each) matches central differences, for both variants.
func TestBaseModelGradient(t *testing.T) {
	for _, cfg := range []Config{TinyConfig(), falconTiny()} {
		s := tinyStore(t, cfg, tensor.Float64, 8)
		gradCheckStore(t, s, cfg, nil, 6)
	}
}
