package gorgoniafix

import (
	"math"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// fakeParam is a minimal G.ValueGrad whose gradient the test sets directly.
type fakeParam struct {
	name string
	w, g *tensor.Dense
}

func (p *fakeParam) Value() G.Value         { return p.w }
func (p *fakeParam) Grad() (G.Value, error) { return p.g, nil }
func (p *fakeParam) Name() string           { return p.name }

func newFake64(name string, shape []int, w []float64) *fakeParam {
	n := len(w)
	return &fakeParam{
		name: name,
		w:    tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float64(nil), w...))),
		g:    tensor.New(tensor.WithShape(shape...), tensor.WithBacking(make([]float64, n))),
	}
}

func newFake32(name string, shape []int, w []float64) *fakeParam {
	w32 := make([]float32, len(w))
	for i, x := range w {
		w32[i] = float32(x)
	}
	return &fakeParam{
		name: name,
		w:    tensor.New(tensor.WithShape(shape...), tensor.WithBacking(w32)),
		g:    tensor.New(tensor.WithShape(shape...), tensor.WithBacking(make([]float32, len(w)))),
	}
}

// refAdamW is the hand computation the solver is checked against, written
// directly from the AdamW formulas (Loshchilov & Hutter; torch.optim.AdamW):
// moments, bias-corrected moments, decoupled decay, then the Adam step.
type refAdamW struct {
	lr, b1, b2, eps, wd float64
	m, v                []float64
	t                   int
}

func (r *refAdamW) step(p, g []float64) {
	if r.m == nil {
		r.m, r.v = make([]float64, len(p)), make([]float64, len(p))
	}
	r.t++
	for i := range p {
		r.m[i] = r.b1*r.m[i] + (1-r.b1)*g[i]
		r.v[i] = r.b2*r.v[i] + (1-r.b2)*g[i]*g[i]
		mhat := r.m[i] / (1 - math.Pow(r.b1, float64(r.t)))
		vhat := r.v[i] / (1 - math.Pow(r.b2, float64(r.t)))
		p[i] -= r.lr * r.wd * p[i]
		p[i] -= r.lr * mhat / (math.Sqrt(vhat) + r.eps)
	}
}

// gradAt is a deterministic gradient for step s of parameter k.
func gradAt(s, k, n int) []float64 {
	g := make([]float64, n)
	for i := range g {
		g[i] = math.Sin(float64(7*s+3*k+i)*0.9) * float64(1+i%3)
	}
	return g
}

func TestAdamWFirstStepByHand(t *testing.T) {
	// One parameter p=1 with g=0.5, lr=0.1, wd=0.01, default betas/eps. At t=1
	// the bias-corrected moments are g and g², so
	// p = 1·(1−0.1·0.01) − 0.1·0.5/(0.5+1e-8) = 0.899000002 (to 1e-15).
	p := newFake64("p", []int{1}, []float64{1})
	p.g.Float64s()[0] = 0.5
	a := NewAdamW(WithLearnRate(0.1))
	mustNoErr(t, a.Step([]G.ValueGrad{p}), "Step")
	if got := p.w.Float64s()[0]; math.Abs(got-0.899000002) > 1e-12 {
		t.Fatalf("p after one step = %.15f, want 0.899000002", got)
	}
	if a.StepCount(p.w) != 1 {
		t.Fatalf("StepCount = %d, want 1", a.StepCount(p.w))
	}
}

func TestAdamWDefaultsAreTorch(t *testing.T) {
	a := NewAdamW()
	if a.LR != 1e-3 || a.Beta1 != 0.9 || a.Beta2 != 0.999 || a.Eps != 1e-8 || a.WeightDecay != 0.01 || a.ClipNorm != 0 {
		t.Fatalf("defaults %+v differ from torch.optim.AdamW's", *a)
	}
	a = NewAdamW(WithLearnRate(0.5), WithBetas(0.8, 0.9), WithEps(1e-6), WithWeightDecay(0), WithClipNorm(2))
	if a.LR != 0.5 || a.Beta1 != 0.8 || a.Beta2 != 0.9 || a.Eps != 1e-6 || a.WeightDecay != 0 || a.ClipNorm != 2 {
		t.Fatalf("options not applied: %+v", *a)
	}
	a.SetLearnRate(0.25)
	if a.LearnRate() != 0.25 {
		t.Fatalf("SetLearnRate: got %v", a.LearnRate())
	}
}

// runAgainstRef steps two parameters five times with a changing learning
// rate and compares every step with the hand computation.
func runAgainstRef(t *testing.T, float32s bool, tol float64) {
	shapes := [][]int{{2, 3}, {4}}
	inits := [][]float64{seq(6, 0.8, 0.1), seq(4, 1.5, -0.2)}
	params := make([]*fakeParam, 2)
	refs := make([]*refAdamW, 2)
	refP := make([][]float64, 2)
	a := NewAdamW(WithBetas(0.8, 0.95), WithEps(1e-3), WithWeightDecay(0.1))
	model := make([]G.ValueGrad, 2)
	for k := range params {
		if float32s {
			params[k] = newFake32("p", shapes[k], inits[k])
		} else {
			params[k] = newFake64("p", shapes[k], inits[k])
		}
		model[k] = params[k]
		refs[k] = &refAdamW{b1: 0.8, b2: 0.95, eps: 1e-3, wd: 0.1}
		refP[k] = append([]float64(nil), inits[k]...)
	}
	// Remember each value tensor and its backing array: the update must be in place.
	type where struct {
		t   *tensor.Dense
		ptr uintptr
	}
	before := make([]where, 2)
	for k, p := range params {
		before[k] = where{p.w, p.w.Uintptr()}
	}
	for s := 1; s <= 5; s++ {
		lr := 0.05 / float64(s) // a schedule: SetLearnRate before each step
		a.SetLearnRate(lr)
		for k, p := range params {
			g := gradAt(s, k, len(refP[k]))
			for i, x := range g {
				if float32s {
					p.g.Float32s()[i] = float32(x)
				} else {
					p.g.Float64s()[i] = x
				}
			}
			refs[k].lr = lr
			if float32s { // the reference sees the gradient the solver sees
				for i := range g {
					g[i] = float64(float32(g[i]))
				}
			}
			refs[k].step(refP[k], g)
		}
		mustNoErr(t, a.Step(model), "Step")
		for k, p := range params {
			if p.w != before[k].t || p.w.Uintptr() != before[k].ptr {
				t.Fatalf("step %d: parameter %d's value tensor or backing array was replaced", s, k)
			}
			for i, want := range refP[k] {
				var got, gz float64
				if float32s {
					got, gz = float64(p.w.Float32s()[i]), float64(p.g.Float32s()[i])
				} else {
					got, gz = p.w.Float64s()[i], p.g.Float64s()[i]
				}
				if !closeRel(got, want, tol) {
					t.Fatalf("step %d param %d[%d]: got %.12g, hand computation %.12g", s, k, i, got, want)
				}
				if gz != 0 {
					t.Fatalf("step %d param %d[%d]: gradient not zeroed (%v)", s, k, i, gz)
				}
			}
		}
	}
	if a.StepCount(params[0].w) != 5 {
		t.Fatalf("StepCount = %d, want 5", a.StepCount(params[0].w))
	}
}

func TestAdamWMatchesHandComputationFloat64(t *testing.T) { runAgainstRef(t, false, 1e-12) }

func TestAdamWMatchesHandComputationFloat32(t *testing.T) { runAgainstRef(t, true, 2e-6) }

func TestAdamWClipsByGlobalNorm(t *testing.T) {
	// Gradients (3,4) and (12) have global norm 13; ClipNorm 1 scales both by
	// 1/(13+1e-6) before the update, as torch's clip_grad_norm_ does.
	p1 := newFake64("a", []int{2}, []float64{0.5, -0.5})
	p2 := newFake64("b", []int{1}, []float64{2})
	a := NewAdamW(WithLearnRate(0.1), WithBetas(0.5, 0.6), WithEps(0.1), WithClipNorm(1))
	r1 := &refAdamW{lr: 0.1, b1: 0.5, b2: 0.6, eps: 0.1, wd: 0.01}
	r2 := &refAdamW{lr: 0.1, b1: 0.5, b2: 0.6, eps: 0.1, wd: 0.01}
	w1, w2 := []float64{0.5, -0.5}, []float64{2}
	for s := 0; s < 3; s++ {
		g1, g2 := []float64{3, 4}, []float64{12}
		copy(p1.g.Float64s(), g1)
		copy(p2.g.Float64s(), g2)
		c := 1 / (13 + 1e-6)
		r1.step(w1, []float64{3 * c, 4 * c})
		r2.step(w2, []float64{12 * c})
		mustNoErr(t, a.Step([]G.ValueGrad{p1, p2}), "Step")
		if math.Abs(a.GradNorm()-13) > 1e-12 {
			t.Fatalf("GradNorm = %v, want 13", a.GradNorm())
		}
		for i, want := range w1 {
			if !closeRel(p1.w.Float64s()[i], want, 1e-12) {
				t.Fatalf("step %d a[%d] = %v, want %v", s, i, p1.w.Float64s()[i], want)
			}
		}
		if !closeRel(p2.w.Float64s()[0], w2[0], 1e-12) {
			t.Fatalf("step %d b = %v, want %v", s, p2.w.Float64s()[0], w2[0])
		}
	}
	// A norm under ClipNorm leaves the gradient alone.
	q := newFake64("q", []int{1}, []float64{1})
	q.g.Float64s()[0] = 0.5
	b := NewAdamW(WithLearnRate(0.1), WithClipNorm(10))
	mustNoErr(t, b.Step([]G.ValueGrad{q}), "Step")
	if got := q.w.Float64s()[0]; math.Abs(got-0.899000002) > 1e-12 {
		t.Fatalf("unclipped step gave %v, want 0.899000002", got)
	}
}

func TestAdamWErrors(t *testing.T) {
	good := newFake64("ok", []int{2}, []float64{1, 2})
	bad := newFake64("layer0.bias", []int{2}, []float64{3, 4})
	bad.g.Float64s()[1] = math.NaN()
	a := NewAdamW()
	err := a.Step([]G.ValueGrad{good, bad})
	if err == nil || !strings.Contains(err.Error(), "layer0.bias") || !strings.Contains(err.Error(), "NaN") {
		t.Fatalf("NaN gradient: err = %v, want one naming layer0.bias and NaN", err)
	}
	if good.w.Float64s()[0] != 1 || bad.w.Float64s()[0] != 3 || a.StepCount(good.w) != 0 {
		t.Fatal("a failed Step modified parameters or state")
	}
	bad.g.Float64s()[1] = math.Inf(-1)
	if err := a.Step([]G.ValueGrad{bad}); err == nil || !strings.Contains(err.Error(), "Inf") {
		t.Fatalf("Inf gradient: err = %v", err)
	}

	ints := &fakeParam{name: "i",
		w: tensor.New(tensor.WithShape(2), tensor.WithBacking([]int{1, 2})),
		g: tensor.New(tensor.WithShape(2), tensor.WithBacking([]int{1, 2}))}
	if err := a.Step([]G.ValueGrad{ints}); err == nil || !strings.Contains(err.Error(), "dtype") {
		t.Fatalf("int dtype: err = %v", err)
	}
	mixed := &fakeParam{name: "m", w: good.w, g: tensor.New(tensor.WithShape(3), tensor.Of(tensor.Float64))}
	if err := a.Step([]G.ValueGrad{mixed}); err == nil {
		t.Fatal("shape mismatch accepted")
	}
	if err := a.Step([]G.ValueGrad{good, good}); err == nil {
		t.Fatal("a parameter listed twice was accepted")
	}
	if err := a.Step([]G.ValueGrad{nil}); err == nil {
		t.Fatal("nil parameter accepted")
	}
	a.Beta1 = 1
	if err := a.Step([]G.ValueGrad{good}); err == nil {
		t.Fatal("beta1 = 1 accepted")
	}
	a.Beta1 = 0.9
	a.SetLearnRate(math.NaN())
	if err := a.Step([]G.ValueGrad{good}); err == nil {
		t.Fatal("NaN learning rate accepted")
	}
	// A graph node without a gradient yields an error, not a panic.
	g := G.NewGraph()
	n, _ := f64Input(g, "nograd", []int{2}, []float64{1, 2})
	a.SetLearnRate(1e-3)
	if err := a.Step(G.NodesToValueGrads(G.Nodes{n})); err == nil || !strings.Contains(err.Error(), "nograd") {
		t.Fatalf("node without gradient: err = %v", err)
	}
}

// quadraticGraph builds loss = Σ c⊙w² for a parameter w, so ∂loss/∂w = 2c⊙w.
func quadraticGraph(t *testing.T, w0 []float64) (*G.ExprGraph, *G.Node, *tensor.Dense, G.VM, []float64) {
	g := G.NewGraph()
	w, wv := f64Input(g, "w", []int{2, 2}, w0)
	cs := []float64{1, 2, 0.5, 3}
	c, _ := f64Input(g, "c", []int{2, 2}, cs)
	sq, err := G.Square(w)
	mustNoErr(t, err, "Square")
	prod, err := G.HadamardProd(sq, c)
	mustNoErr(t, err, "HadamardProd")
	loss, err := G.Sum(prod)
	mustNoErr(t, err, "Sum")
	_, err = G.Grad(loss, w)
	mustNoErr(t, err, "Grad")
	return g, w, wv, G.NewTapeMachine(g, G.BindDualValues(w)), cs
}

func TestAdamWOnGraph(t *testing.T) {
	w0 := []float64{0.3, -1.2, 2.0, 0.7}
	_, w, wv, m, cs := quadraticGraph(t, w0)
	defer m.Close()
	a := NewAdamW(WithLearnRate(0.05), WithWeightDecay(0.2))
	ref := &refAdamW{lr: 0.05, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.2}
	want := append([]float64(nil), w0...)
	for s := 0; s < 4; s++ {
		mustNoErr(t, m.RunAll(), "RunAll")
		g := make([]float64, 4)
		for i := range g {
			g[i] = 2 * cs[i] * want[i]
		}
		ref.step(want, g)
		mustNoErr(t, a.Step(G.NodesToValueGrads(G.Nodes{w})), "Step")
		m.Reset()
		if w.Value().(*tensor.Dense) != wv {
			t.Fatal("the node's value tensor was replaced")
		}
		for i := range want {
			if !closeRel(wv.Float64s()[i], want[i], 1e-12) {
				t.Fatalf("step %d w[%d] = %v, hand computation %v (did gradients accumulate?)", s, i, wv.Float64s()[i], want[i])
			}
		}
	}
}

// TestUpstreamAdamWDefect shows that G.NewAdamW's Step leaves the weights
// untouched: `w, err = tensor.Mul(w, decay)` allocates a new tensor, and the
// rest of the update goes into that copy.
func TestUpstreamAdamWDefect(t *testing.T) {
	w0 := []float64{0.3, -1.2, 2.0, 0.7}
	_, w, wv, m, _ := quadraticGraph(t, w0)
	defer m.Close()
	up := G.NewAdamW(G.WithLearnRate(0.05))
	for s := 0; s < 3; s++ {
		mustNoErr(t, m.RunAll(), "RunAll")
		gv, err := w.Grad()
		mustNoErr(t, err, "Grad")
		if gv.Data().([]float64)[0] == 0 {
			t.Fatal("test setup: zero gradient")
		}
		mustNoErr(t, up.Step(G.NodesToValueGrads(G.Nodes{w})), "upstream Step")
		m.Reset()
	}
	for i, x := range w0 {
		if wv.Float64s()[i] != x {
			t.Fatalf("G.AdamW changed w[%d] from %v to %v after 3 steps: %s", i, x, wv.Float64s()[i], removable)
		}
	}
}
