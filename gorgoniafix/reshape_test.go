package gorgoniafix

import (
	"math"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// TestUpstreamReshapeDefect reproduces gorgonia#511: G.Reshape's output
// shares the source's backing array, and an elementwise op with the reshaped
// node on the left works in place, so the source input is overwritten and
// drifts further on every run.
func TestUpstreamReshapeDefect(t *testing.T) {
	g := G.NewGraph()
	src := []float64{1, 2, 3, 4, 5, 6}
	x, xv := f64Input(g, "x", []int{2, 3}, src)
	c, _ := f64Input(g, "c", []int{3, 2}, []float64{10, 10, 10, 10, 10, 10})
	r, err := G.Reshape(x, tensor.Shape{3, 2})
	mustNoErr(t, err, "G.Reshape")
	_, err = G.Add(r, c)
	mustNoErr(t, err, "G.Add")
	m := G.NewTapeMachine(g)
	defer m.Close()
	mustNoErr(t, m.RunAll(), "RunAll")
	if xv.Float64s()[0] == src[0] {
		t.Fatalf("G.Reshape followed by Add(reshaped, c) left its source intact (x = %v): %s", xv.Data(), removable)
	}
	if xv.Float64s()[0] != 11 {
		t.Logf("note: source changed differently than before: x = %v", xv.Data())
	}
}

func TestReshapeLeavesSourceIntact(t *testing.T) {
	g := G.NewGraph()
	src := []float64{1, 2, 3, 4, 5, 6}
	x, xv := f64Input(g, "x", []int{2, 3}, src)
	c, _ := f64Input(g, "c", []int{3, 2}, []float64{10, 20, 30, 40, 50, 60})
	r, err := Reshape(x, 3, 2)
	mustNoErr(t, err, "Reshape")
	if !sameShape(r.Shape(), tensor.Shape{3, 2}) {
		t.Fatalf("reshaped node has shape %v", r.Shape())
	}
	y, err := G.Add(r, c)
	mustNoErr(t, err, "G.Add")
	m := G.NewTapeMachine(g)
	defer m.Close()
	for run := 0; run < 2; run++ {
		mustNoErr(t, m.RunAll(), "RunAll")
		for i, want := range src {
			if xv.Float64s()[i] != want {
				t.Fatalf("run %d: source changed: x = %v", run, xv.Data())
			}
		}
		yv := y.Value().(*tensor.Dense)
		if !sameShape(yv.Shape(), tensor.Shape{3, 2}) {
			t.Fatalf("y has shape %v", yv.Shape())
		}
		for i, want := range []float64{11, 22, 33, 44, 55, 66} {
			if yv.Float64s()[i] != want {
				t.Fatalf("run %d: y = %v", run, yv.Data())
			}
		}
		rv := r.Value().(*tensor.Dense)
		if rv.Uintptr() == xv.Uintptr() {
			t.Fatal("reshape output aliases its input")
		}
		m.Reset()
	}
}

func TestReshapeFloat32AndInference(t *testing.T) {
	g := G.NewGraph()
	xv := tensor.New(tensor.WithShape(2, 3, 2), tensor.WithBacking([]float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}))
	x := G.NewTensor(g, tensor.Float32, 3, G.WithShape(2, 3, 2), G.WithName("x"), G.WithValue(xv))
	r, err := Reshape(x, -1, 4)
	mustNoErr(t, err, "Reshape")
	if !sameShape(r.Shape(), tensor.Shape{3, 4}) {
		t.Fatalf("inferred shape %v, want (3, 4)", r.Shape())
	}
	y, err := G.Neg(r)
	mustNoErr(t, err, "Neg")
	m := G.NewTapeMachine(g)
	defer m.Close()
	mustNoErr(t, m.RunAll(), "RunAll")
	for i, v := range y.Value().Data().([]float32) {
		if v != -float32(i+1) || xv.Float32s()[i] != float32(i+1) {
			t.Fatalf("element %d: y = %v, x = %v", i, v, xv.Float32s()[i])
		}
	}
}

// reshapeLoss is loss = Σ (W ⊙ reshape(x, 4, 3))² with the reshaped node on
// the left of the product. Its gradient is reshape(2·W²⊙r, x's shape).
func reshapeLoss(t *testing.T, xdata []float64, withGrad bool) (loss float64, grad *tensor.Dense) {
	g := G.NewGraph()
	x, _ := f64Input(g, "x", []int{2, 3, 2}, xdata)
	w, _ := f64Input(g, "w", []int{4, 3}, seq(12, 1, 0.3))
	r, err := Reshape(x, 4, 3)
	mustNoErr(t, err, "Reshape")
	p, err := G.HadamardProd(r, w)
	mustNoErr(t, err, "HadamardProd")
	sq, err := G.Square(p)
	mustNoErr(t, err, "Square")
	l, err := G.Sum(sq)
	mustNoErr(t, err, "Sum")
	var opts []G.VMOpt
	if withGrad {
		_, err = G.Grad(l, x)
		mustNoErr(t, err, "Grad")
		opts = append(opts, G.BindDualValues(x))
	}
	m := G.NewTapeMachine(g, opts...)
	defer m.Close()
	mustNoErr(t, m.RunAll(), "RunAll")
	loss = l.Value().Data().(float64)
	if withGrad {
		gv, err := x.Grad()
		mustNoErr(t, err, "x.Grad")
		grad = gv.(*tensor.Dense)
	}
	return loss, grad
}

func TestReshapeGradient(t *testing.T) {
	x0 := seq(12, 0.9, 0.05)
	_, grad := reshapeLoss(t, x0, true)
	if !sameShape(grad.Shape(), tensor.Shape{2, 3, 2}) {
		t.Fatalf("gradient shape %v, want the input's (2, 3, 2)", grad.Shape())
	}
	w := seq(12, 1, 0.3)
	const eps = 1e-6
	for i := range x0 {
		// Hand computation: ∂/∂x_i Σ (w_j r_j)² = 2 w_i² x_i, as reshape keeps
		// row-major order.
		hand := 2 * w[i] * w[i] * x0[i]
		plus := append([]float64(nil), x0...)
		minus := append([]float64(nil), x0...)
		plus[i] += eps
		minus[i] -= eps
		lp, _ := reshapeLoss(t, plus, false)
		lm, _ := reshapeLoss(t, minus, false)
		numeric := (lp - lm) / (2 * eps)
		got := grad.Float64s()[i]
		if !closeRel(got, hand, 1e-12) {
			t.Fatalf("grad[%d] = %v, hand computation %v", i, got, hand)
		}
		if math.Abs(got-numeric) > 1e-6*math.Max(1, math.Abs(numeric)) {
			t.Fatalf("grad[%d] = %v, central difference %v", i, got, numeric)
		}
	}
}

func TestReshapeHashAndType(t *testing.T) {
	g := G.NewGraph()
	x, _ := f64Input(g, "x", []int{2, 3}, seq(6, 1, 0))
	a, err := Reshape(x, 3, 2)
	mustNoErr(t, err, "Reshape")
	b, err := Reshape(x, 3, 2)
	mustNoErr(t, err, "Reshape")
	c, err := Reshape(x, 6)
	mustNoErr(t, err, "Reshape")
	d, err := Reshape(x, 1, 6)
	mustNoErr(t, err, "Reshape")
	if a != b {
		t.Fatal("identical reshapes were not merged")
	}
	if a == c || c == d || a == d {
		t.Fatal("reshapes to different shapes were merged")
	}
	op := &reshapeOp{from: tensor.Shape{2, 3}, to: tensor.Shape{6}}
	op2 := &reshapeOp{from: tensor.Shape{3, 2}, to: tensor.Shape{6}}
	if op.Hashcode() == op2.Hashcode() {
		t.Fatal("the op hash ignores the input shape")
	}
	if op.Type() == op.Type() {
		t.Fatal("Type() returned a cached FnType")
	}
	// The stock Reshape still works after ours built its types.
	if _, err := G.Reshape(x, tensor.Shape{6}); err != nil {
		t.Fatalf("G.Reshape after ours: %v", err)
	}
}

func TestReshapeErrors(t *testing.T) {
	g := G.NewGraph()
	x, _ := f64Input(g, "x", []int{2, 3}, seq(6, 1, 0))
	for _, shape := range [][]int{{}, {4}, {-1, -1}, {0, 6}, {-2, 3}, {-1, 4}, {7}} {
		if _, err := Reshape(x, shape...); err == nil {
			t.Errorf("Reshape(x, %v) succeeded", shape)
		}
	}
	if _, err := Reshape(nil, 6); err == nil {
		t.Error("Reshape(nil) succeeded")
	}
	s := G.NewScalar(g, tensor.Float64, G.WithName("s"))
	if _, err := Reshape(s, 1); err == nil {
		t.Error("Reshape(scalar) succeeded")
	}
	op := &reshapeOp{from: tensor.Shape{2, 3}, to: tensor.Shape{6}}
	if _, err := op.Do(tensor.New(tensor.WithShape(3, 2), tensor.Of(tensor.Float64))); err == nil {
		t.Error("Do accepted a wrongly shaped input")
	}
	if _, err := op.Do(); err == nil {
		t.Error("Do accepted no input")
	}
}

func TestReshapeDoCopiesViews(t *testing.T) {
	big := tensor.New(tensor.WithShape(3, 2), tensor.WithBacking([]float64{1, 2, 3, 4, 5, 6}))
	view, err := big.Slice(tensor.S(1, 3))
	mustNoErr(t, err, "Slice")
	op := &reshapeOp{from: tensor.Shape{2, 2}, to: tensor.Shape{4}}
	out, err := op.Do(view)
	mustNoErr(t, err, "Do")
	od := out.(*tensor.Dense)
	if !sameShape(od.Shape(), tensor.Shape{4}) || od.IsView() {
		t.Fatalf("Do on a view gave shape %v (view %v)", od.Shape(), od.IsView())
	}
	for i, want := range []float64{3, 4, 5, 6} {
		if od.Float64s()[i] != want {
			t.Fatalf("Do on a view gave %v", od.Data())
		}
	}
	od.Float64s()[0] = -1
	if big.Float64s()[2] != 3 {
		t.Fatal("Do's output aliases the viewed tensor")
	}
}
