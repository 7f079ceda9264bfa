package lilyop

import (
	"math"
	"math/rand"
	"testing"

	"github.com/lilygo/lily/internal/gradcheck"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func intLeaf(g *G.ExprGraph, name string, vals []int, shape ...int) *G.Node {
	v := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(vals))
	return G.NewTensor(g, tensor.Int, len(shape), G.WithShape(shape...), G.WithName(name), G.WithValue(v))
}

func TestCrossEntropyGradientAndValue(t *testing.T) {
	rng := rand.New(rand.NewSource(21))
	for _, shape := range [][]int{{4, 5}, {2, 3, 4}} {
		rows, classes := 1, shape[len(shape)-1]
		for _, d := range shape[:len(shape)-1] {
			rows *= d
		}
		targets := make([]int, rows)
		for i := range targets {
			targets[i] = rng.Intn(classes)
		}
		targets[1] = IgnoreIndex
		logits := gradcheck.Rand(rng, shape...)
		build := func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) {
			return CrossEntropy(n[0], intLeaf(g, "targets", targets, shape[:len(shape)-1]...))
		}
		gradcheck.Check(t, build, []gradcheck.Input{{Name: "logits", Value: logits, Diff: true}}, gradcheck.Options{})

		// Against a direct computation.
		got := run(t, func(g *G.ExprGraph) (*G.Node, error) {
			return build(g, G.Nodes{leaf(g, "logits", logits)})
		}).Data().(float64)
		var want float64
		n := 0
		for r, tg := range targets {
			if tg == IgnoreIndex {
				continue
			}
			row := logits.Data().([]float64)[r*classes : (r+1)*classes]
			var z float64
			for _, v := range row {
				z += math.Exp(v)
			}
			want += math.Log(z) - row[tg]
			n++
		}
		if want /= float64(n); math.Abs(got-want) > 1e-12 {
			t.Errorf("%v: loss %v, want %v", shape, got, want)
		}
	}
}

func TestCrossEntropyErrors(t *testing.T) {
	g := G.NewGraph()
	logits := leaf(g, "logits", gradcheck.Rand(rand.New(rand.NewSource(1)), 2, 3))
	if _, err := CrossEntropy(logits, leaf(g, "f", gradcheck.Rand(rand.New(rand.NewSource(1)), 2))); err == nil {
		t.Error("float targets accepted")
	}
	loss, err := CrossEntropy(logits, intLeaf(g, "t", []int{0, 3}, 2))
	if err != nil {
		t.Fatal(err)
	}
	m := G.NewTapeMachine(g)
	defer m.Close()
	if err := m.RunAll(); err == nil {
		t.Errorf("target 3 of 3 classes accepted (loss %v)", loss.Value())
	}
	a := xentOp{rank: 2}
	if a.Hashcode() == (xentOp{rank: 3}).Hashcode() || a.Hashcode() == (xentOp{rank: 2, grad: true}).Hashcode() {
		t.Error("different cross-entropy ops share a hash")
	}
}

// With every target ignored the loss and its gradient are 0 (PyTorch
// returns NaN); float32 logits give the float64 loss and gradient to float32
// precision.
func TestCrossEntropyAllIgnoredAndFloat32(t *testing.T) {
	logits := gradcheck.Rand(rand.New(rand.NewSource(23)), 2, 3, 5)
	lossAndGrad := func(v *tensor.Dense, targets []int) (float64, []float64) {
		t.Helper()
		g := G.NewGraph()
		x := leaf(g, "logits", v.Clone().(*tensor.Dense))
		loss, err := CrossEntropy(x, intLeaf(g, "targets", targets, 2, 3))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := G.Grad(loss, x); err != nil {
			t.Fatalf("%+v", err)
		}
		m := G.NewTapeMachine(g, G.BindDualValues(x))
		defer m.Close()
		if err := m.RunAll(); err != nil {
			t.Fatalf("%+v", err)
		}
		gv, err := x.Grad()
		if err != nil {
			t.Fatal(err)
		}
		var l float64
		switch s := loss.Value().Data().(type) {
		case float64:
			l = s
		case float32:
			l = float64(s)
		default:
			t.Fatalf("loss is a %T", s)
		}
		return l, to64(gv.Data())
	}
	ignored := []int{IgnoreIndex, IgnoreIndex, IgnoreIndex, IgnoreIndex, IgnoreIndex, IgnoreIndex}
	for _, v := range []*tensor.Dense{logits, to32(logits)} {
		l, g := lossAndGrad(v, ignored)
		if l != 0 {
			t.Errorf("%v, all targets ignored: loss %v, want 0", v.Dtype(), l)
		}
		for i, d := range g {
			if d != 0 {
				t.Fatalf("%v, all targets ignored: gradient[%d] = %v, want 0", v.Dtype(), i, d)
			}
		}
	}
	targets := []int{1, IgnoreIndex, 4, 0, 0, 3}
	l64, g64 := lossAndGrad(logits, targets)
	l32, g32 := lossAndGrad(to32(logits), targets)
	if math.Abs(l32-l64) > 1e-6 {
		t.Errorf("float32 loss %v, float64 %v", l32, l64)
	}
	assertClose(t, "float32 gradient", g32, g64, 1e-6)
}
