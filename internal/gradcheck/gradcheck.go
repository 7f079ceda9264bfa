// Package gradcheck verifies symbolic gradients of Gorgonia graphs against
// float64 central differences. It is used by the tests of every package that
// defines a custom op or a model graph.
package gradcheck

import (
	"math"
	"math/rand"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Input is one leaf of the graph under test.
type Input struct {
	Name  string
	Value *tensor.Dense // float64; copied, never modified
	Diff  bool          // whether the gradient with respect to it is checked
}

// Build adds the computation under test to g, reading the given input nodes
// (in the order of the Inputs), and returns its output node of any shape.
type Build func(g *G.ExprGraph, in G.Nodes) (*G.Node, error)

// Options tunes a check. The zero value means: step 1e-6, tolerance 1e-6,
// every element checked.
type Options struct {
	Eps         float64 // central-difference step
	Tol         float64 // |analytic − numeric| ≤ Tol·max(1, |analytic|, |numeric|)
	MaxElements int     // check at most this many elements per input (0: all)
	Seed        int64   // for the random projection and element sampling
}

// Rand returns a float64 tensor of the given shape with entries uniform in
// [-1, 1).
func Rand(rng *rand.Rand, shape ...int) *tensor.Dense {
	n := 1
	for _, d := range shape {
		n *= d
	}
	data := make([]float64, n)
	for i := range data {
		data[i] = 2*rng.Float64() - 1
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
}

func leaves(g *G.ExprGraph, inputs []Input) G.Nodes {
	nodes := make(G.Nodes, len(inputs))
	for i, in := range inputs {
		v := in.Value.Clone().(*tensor.Dense)
		nodes[i] = G.NewTensor(g, tensor.Float64, v.Dims(), G.WithShape(v.Shape()...), G.WithName(in.Name), G.WithValue(v))
	}
	return nodes
}

// project turns out into the scalar Σ out ⊙ P for a fixed random P, so that
// every output element contributes to the checked gradient.
func project(g *G.ExprGraph, out *G.Node, seed int64) (*G.Node, error) {
	if out.IsScalar() {
		return out, nil
	}
	p := Rand(rand.New(rand.NewSource(seed)), out.Shape()...)
	pn := G.NewTensor(g, tensor.Float64, p.Dims(), G.WithShape(p.Shape()...), G.WithName("gradcheck.projection"), G.WithValue(p))
	prod, err := G.HadamardProd(out, pn)
	if err != nil {
		return nil, err
	}
	return G.Sum(prod)
}

// Check builds the computation twice: once with gorgonia.Grad for the
// symbolic gradients, once forward-only for central differences, and fails t
// when any gradient has the wrong shape or differs from the numeric one. It
// returns the largest error relative to max(1, |analytic|, |numeric|).
func Check(t testing.TB, build Build, inputs []Input, opt Options) float64 {
	t.Helper()
	if opt.Eps == 0 {
		opt.Eps = 1e-6
	}
	if opt.Tol == 0 {
		opt.Tol = 1e-6
	}
	// Symbolic gradients.
	g := G.NewGraph()
	nodes := leaves(g, inputs)
	out, err := build(g, nodes)
	if err != nil {
		t.Fatalf("building graph: %+v", err)
	}
	loss, err := project(g, out, opt.Seed)
	if err != nil {
		t.Fatalf("projecting output: %+v", err)
	}
	var wrt G.Nodes
	for i, in := range inputs {
		if in.Diff {
			wrt = append(wrt, nodes[i])
		}
	}
	if _, err := G.Grad(loss, wrt...); err != nil {
		t.Fatalf("Grad: %+v", err)
	}
	m := G.NewTapeMachine(g, G.BindDualValues(wrt...))
	defer m.Close()
	if err := m.RunAll(); err != nil {
		t.Fatalf("running gradient graph: %+v", err)
	}
	grads := map[int][]float64{}
	for i, in := range inputs {
		if !in.Diff {
			continue
		}
		gv, err := nodes[i].Grad()
		if err != nil {
			t.Fatalf("gradient of %s: %v", in.Name, err)
		}
		if !gv.Shape().Eq(in.Value.Shape()) {
			t.Fatalf("gradient of %s has shape %v, input has %v", in.Name, gv.Shape(), in.Value.Shape())
		}
		grads[i] = append([]float64(nil), gv.Data().([]float64)...)
	}

	// Numeric gradients on a forward-only twin.
	g2 := G.NewGraph()
	nodes2 := leaves(g2, inputs)
	out2, err := build(g2, nodes2)
	if err != nil {
		t.Fatalf("building forward graph: %+v", err)
	}
	loss2, err := project(g2, out2, opt.Seed)
	if err != nil {
		t.Fatalf("projecting output: %+v", err)
	}
	fwd := G.NewTapeMachine(g2)
	defer fwd.Close()
	eval := func() float64 {
		fwd.Reset()
		if err := fwd.RunAll(); err != nil {
			t.Fatalf("running forward graph: %+v", err)
		}
		return loss2.Value().Data().(float64)
	}
	rng := rand.New(rand.NewSource(opt.Seed + 1))
	worst := 0.0
	for i, in := range inputs {
		if !in.Diff {
			continue
		}
		data := nodes2[i].Value().Data().([]float64)
		idx := rng.Perm(len(data))
		if opt.MaxElements > 0 && len(idx) > opt.MaxElements {
			idx = idx[:opt.MaxElements]
		}
		for _, j := range idx {
			orig := data[j]
			data[j] = orig + opt.Eps
			fp := eval()
			data[j] = orig - opt.Eps
			fm := eval()
			data[j] = orig
			num := (fp - fm) / (2 * opt.Eps)
			ana := grads[i][j]
			e := math.Abs(ana-num) / math.Max(1, math.Max(math.Abs(ana), math.Abs(num)))
			if e > worst {
				worst = e
			}
			if e > opt.Tol || math.IsNaN(ana) {
				t.Errorf("d/d%s[%d]: analytic %.10g, numeric %.10g (error %.3g > %.3g)", in.Name, j, ana, num, e, opt.Tol)
			}
		}
	}
	return worst
}
