package gorgoniafix

import (
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// TestUpstreamDropoutGradientScale shows that G.Dropout's backward pass
// divides by p instead of 1−p: with p=0.1 a kept element's forward factor is
// 1/0.9 but its gradient is 1/0.1, nine times too large.
func TestUpstreamDropoutGradientScale(t *testing.T) {
	const p = 0.1
	g := G.NewGraph()
	x, _ := f64Input(g, "x", []int{1000}, seq(1000, 0, 1)) // all ones
	y, err := G.Dropout(x, p)
	mustNoErr(t, err, "G.Dropout")
	loss, err := G.Sum(y)
	mustNoErr(t, err, "Sum")
	_, err = G.Grad(loss, x)
	mustNoErr(t, err, "Grad")
	m := G.NewTapeMachine(g, G.BindDualValues(x))
	defer m.Close()
	mustNoErr(t, m.RunAll(), "RunAll")
	gv, err := x.Grad()
	mustNoErr(t, err, "x.Grad")
	ys, gs := y.Value().Data().([]float64), gv.Data().([]float64)
	kept := 0
	for i := range ys {
		if ys[i] == 0 {
			continue
		}
		kept++
		// Correct: the gradient equals the forward factor, ratio 1.
		if ratio := gs[i] / ys[i]; math.Abs(ratio-(1-p)/p) > 1e-9 {
			t.Fatalf("G.Dropout gradient/forward ratio at %d is %v, no longer (1-p)/p = %v: %s", i, ratio, (1-p)/p, removable)
		}
	}
	if kept == 0 {
		t.Fatal("test setup: every element dropped")
	}
	t.Logf("G.Dropout(p=%v): forward factor %v, gradient %v (ratio %v, should be 1)", p, 1/(1-p), 1/p, (1-p)/p)
}

// TestUpstreamDropoutHashIgnoresP shows that G.Dropout's op hash leaves p out,
// so two dropouts on one input with different p are one node.
func TestUpstreamDropoutHashIgnoresP(t *testing.T) {
	g := G.NewGraph()
	x, _ := f64Input(g, "x", []int{8}, seq(8, 1, 0))
	a, err := G.Dropout(x, 0.1)
	mustNoErr(t, err, "G.Dropout")
	b, err := G.Dropout(x, 0.5)
	mustNoErr(t, err, "G.Dropout")
	if a != b {
		t.Fatalf("G.Dropout(x, 0.1) and G.Dropout(x, 0.5) are now distinct nodes: %s", removable)
	}
}

// TestUpstreamDropoutEvalAliases shows that G.Dropout in eval mode returns its
// input tensor itself, so a following Add (which works in place on its left
// operand) overwrites the input.
func TestUpstreamDropoutEvalAliases(t *testing.T) {
	g := G.NewGraph()
	src := []float64{1, 2, 3, 4}
	x, xv := f64Input(g, "x", []int{4}, src)
	c, _ := f64Input(g, "c", []int{4}, []float64{10, 10, 10, 10})
	y, err := G.Dropout(x, 0.5)
	mustNoErr(t, err, "G.Dropout")
	_, err = G.Add(y, c)
	mustNoErr(t, err, "Add")
	m := G.NewTapeMachine(g, G.EvalMode())
	defer m.Close()
	mustNoErr(t, m.RunAll(), "RunAll")
	if xv.Float64s()[0] == src[0] {
		t.Fatalf("G.Dropout in eval mode no longer lets a following Add overwrite its input (x = %v): %s", xv.Data(), removable)
	}
}

// dropoutGraph builds loss = Σ dropout(x) and returns what the tests need.
func dropoutGraph(t *testing.T, dt tensor.Dtype, shape []int, p float64) (*Dropout, *G.Node, *tensor.Dense, G.VM) {
	g := G.NewGraph()
	n := tensor.Shape(shape).TotalSize()
	xs := seq(n, 1.3, 0.2)
	var xv *tensor.Dense
	if dt == tensor.Float64 {
		xv = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(xs))
	} else {
		x32 := make([]float32, n)
		for i, v := range xs {
			x32[i] = float32(v)
		}
		xv = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(x32))
	}
	x := G.NewTensor(g, dt, len(shape), G.WithShape(shape...), G.WithName("x"), G.WithValue(xv))
	d, err := NewDropout(g, x, p, "block0.attn")
	mustNoErr(t, err, "NewDropout")
	loss, err := G.Sum(d.Output())
	mustNoErr(t, err, "Sum")
	_, err = G.Grad(loss, x)
	mustNoErr(t, err, "Grad")
	return d, x, xv, G.NewTapeMachine(g, G.BindDualValues(x))
}

// asF64 copies a float32 or float64 tensor's data to []float64.
func asF64(t *testing.T, v G.Value) []float64 {
	switch d := v.Data().(type) {
	case []float64:
		return append([]float64(nil), d...)
	case []float32:
		out := make([]float64, len(d))
		for i, x := range d {
			out[i] = float64(x)
		}
		return out
	}
	t.Fatalf("unexpected data %T", v.Data())
	return nil
}

func testDropoutGradientIsMask(t *testing.T, dt tensor.Dtype) {
	const p = 0.3
	d, x, xv, m := dropoutGraph(t, dt, []int{30, 20}, p)
	defer m.Close()
	x0 := asF64(t, xv)
	rng := rand.New(rand.NewPCG(7, 11))
	var prevMask []float64
	for run := 0; run < 3; run++ {
		mustNoErr(t, d.Refill(rng), "Refill")
		if !d.Training() {
			t.Fatal("Training() false after Refill")
		}
		mustNoErr(t, m.RunAll(), "RunAll")
		mask := asF64(t, d.Mask().Value())
		gv, err := x.Grad()
		mustNoErr(t, err, "x.Grad")
		grad, out := asF64(t, gv), asF64(t, d.Output().Value())
		for i := range mask {
			if grad[i] != mask[i] {
				t.Fatalf("run %d: grad[%d] = %v, mask %v", run, i, grad[i], mask[i])
			}
			// Forward is x·mask computed in the tensor's dtype.
			want := x0[i] * mask[i]
			if dt == tensor.Float32 {
				want = float64(float32(x0[i]) * float32(mask[i]))
			}
			if out[i] != want {
				t.Fatalf("run %d: out[%d] = %v, want x·mask = %v", run, i, out[i], want)
			}
		}
		if prevMask != nil {
			same := true
			for i := range mask {
				same = same && mask[i] == prevMask[i]
			}
			if same {
				t.Fatal("Refill drew the same mask twice")
			}
		}
		prevMask = mask
		for i, v := range asF64(t, xv) {
			if v != x0[i] {
				t.Fatalf("run %d: input x changed at %d", run, i)
			}
		}
		gv.(*tensor.Dense).Zero() // BindDualValues accumulates until zeroed
		m.Reset()
	}
}

func TestDropoutGradientIsMaskFloat64(t *testing.T) { testDropoutGradientIsMask(t, tensor.Float64) }

func TestDropoutGradientIsMaskFloat32(t *testing.T) { testDropoutGradientIsMask(t, tensor.Float32) }

func TestDropoutStatistics(t *testing.T) {
	const n = 400 * 250
	for _, tc := range []struct {
		p  float64
		dt tensor.Dtype
	}{{0.1, tensor.Float64}, {0.5, tensor.Float32}, {0.9, tensor.Float64}} {
		g := G.NewGraph()
		x := G.NewTensor(g, tc.dt, 2, G.WithShape(400, 250), G.WithName("x"), G.WithInit(G.Ones()))
		d, err := NewDropout(g, x, tc.p, "drop")
		mustNoErr(t, err, "NewDropout")
		mustNoErr(t, d.Refill(rand.New(rand.NewPCG(1, uint64(tc.p*100)))), "Refill")
		mask := asF64(t, d.Mask().Value())
		keepVal := 1 / (1 - tc.p)
		if tc.dt == tensor.Float32 {
			keepVal = float64(float32(keepVal))
		}
		kept, sum := 0, 0.0
		for _, v := range mask {
			switch v {
			case 0:
			case keepVal:
				kept++
			default:
				t.Fatalf("p=%v: mask value %v is neither 0 nor 1/(1-p)", tc.p, v)
			}
			sum += v
		}
		// Binomial keep count: 5σ bounds on the keep fraction and the mean.
		frac := float64(kept) / n
		if sd := math.Sqrt(tc.p * (1 - tc.p) / n); math.Abs(frac-(1-tc.p)) > 5*sd {
			t.Errorf("p=%v: keep fraction %v, want %v ± %v", tc.p, frac, 1-tc.p, 5*sd)
		}
		if sd := math.Sqrt(tc.p / (1 - tc.p) / n); math.Abs(sum/n-1) > 5*sd+1e-6 {
			t.Errorf("p=%v: mean of dropout(ones) %v, want 1 ± %v", tc.p, sum/n, 5*sd)
		}
	}
}

func TestDropoutEvalAndSeeds(t *testing.T) {
	g := G.NewGraph()
	src := []float64{1, 2, 3, 4}
	x, xv := f64Input(g, "x", []int{4}, src)
	c, _ := f64Input(g, "c", []int{4}, []float64{10, 10, 10, 10})
	d, err := NewDropout(g, x, 0.5, "l0")
	mustNoErr(t, err, "NewDropout")
	if d.Training() || d.P() != 0.5 {
		t.Fatalf("new dropout: Training %v, P %v", d.Training(), d.P())
	}
	z, err := G.Add(d.Output(), c) // the case that corrupts G.Dropout's input
	mustNoErr(t, err, "Add")
	m := G.NewTapeMachine(g)
	defer m.Close()
	mustNoErr(t, d.Refill(rand.New(rand.NewPCG(3, 4))), "Refill")
	first := asF64(t, d.Mask().Value())
	d.SetEval()
	if d.Training() {
		t.Fatal("Training() true after SetEval")
	}
	for run := 0; run < 2; run++ {
		mustNoErr(t, m.RunAll(), "RunAll")
		for i, v := range src {
			if xv.Float64s()[i] != v {
				t.Fatalf("run %d: x changed to %v", run, xv.Data())
			}
			if got := z.Value().Data().([]float64)[i]; got != v+10 {
				t.Fatalf("run %d: eval z = %v", run, z.Value().Data())
			}
		}
		m.Reset()
	}
	mustNoErr(t, d.Refill(rand.New(rand.NewPCG(3, 4))), "Refill")
	for i, v := range asF64(t, d.Mask().Value()) {
		if v != first[i] {
			t.Fatal("the same seed gave a different mask")
		}
	}
}

func TestDropoutZeroP(t *testing.T) {
	g := G.NewGraph()
	x, _ := f64Input(g, "x", []int{3}, []float64{1, 2, 3})
	d, err := NewDropout(g, x, 0, "none")
	mustNoErr(t, err, "NewDropout")
	if d.Output() != x || d.Mask() != nil {
		t.Fatal("p = 0 must return x itself and no mask")
	}
	mustNoErr(t, d.Refill(nil), "Refill with p = 0")
	d.SetEval()
}

func TestDropoutDistinctAndErrors(t *testing.T) {
	g := G.NewGraph()
	x, _ := f64Input(g, "x", []int{3}, []float64{1, 2, 3})
	a, err := NewDropout(g, x, 0.1, "a")
	mustNoErr(t, err, "NewDropout")
	b, err := NewDropout(g, x, 0.5, "b")
	mustNoErr(t, err, "NewDropout")
	if a.Output() == b.Output() || a.Mask() == b.Mask() {
		t.Fatal("two dropouts on one input were merged")
	}
	if _, err := NewDropout(g, x, 0.2, "a"); err == nil {
		t.Error("a reused name was accepted")
	}
	if err := a.Refill(nil); err == nil {
		t.Error("Refill(nil) accepted")
	}
	for _, p := range []float64{1, -0.1, math.NaN(), 2} {
		if _, err := NewDropout(g, x, p, "p"); err == nil {
			t.Errorf("p = %v accepted", p)
		}
	}
	if _, err := NewDropout(nil, x, 0.1, "n"); err == nil {
		t.Error("nil graph accepted")
	}
	if _, err := NewDropout(g, nil, 0.1, "n"); err == nil {
		t.Error("nil node accepted")
	}
	if _, err := NewDropout(g, x, 0.1, ""); err == nil {
		t.Error("empty name accepted")
	}
	if _, err := NewDropout(G.NewGraph(), x, 0.1, "other"); err == nil {
		t.Error("a node from another graph accepted")
	}
	xi := G.NewTensor(g, tensor.Int, 1, G.WithShape(3), G.WithName("xi"), G.WithInit(G.Zeroes()))
	if _, err := NewDropout(g, xi, 0.1, "int"); err == nil {
		t.Error("int dtype accepted")
	}
}
