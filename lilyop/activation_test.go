package lilyop

import (
	"math"
	"math/rand"
	"testing"

	"github.com/lilygo/lily/internal/gradcheck"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func TestActivationsMatchPlainGo(t *testing.T) {
	// Values from the definitions: silu(x) = x/(1+e^−x), gelu(x) = x·Φ(x).
	known := []struct{ x, silu, gelu float64 }{
		{0, 0, 0},
		{1, 0.7310585786300049, 0.8413447460685429},
		{-1, -0.2689414213699951, -0.15865525393145707},
		{2.5, 2.3103545499468914, 2.4844758366855597},
	}
	xs := make([]float64, len(known))
	for i, k := range known {
		xs[i] = k.x
	}
	x := tensor.New(tensor.WithShape(len(xs)), tensor.WithBacking(xs))
	for _, f32 := range []bool{false, true} {
		in, tol := x, 1e-14
		if f32 {
			in, tol = as32(x), 1e-6
		}
		s := floats(run(t, func(g *G.ExprGraph) (*G.Node, error) { return SiLU(leaf(g, "x", in)) }))
		ge := floats(run(t, func(g *G.ExprGraph) (*G.Node, error) { return GELU(leaf(g, "x", in)) }))
		for i, k := range known {
			if math.Abs(s[i]-k.silu) > tol || math.Abs(ge[i]-k.gelu) > tol {
				t.Errorf("x=%g (float32 %t): silu %.16g want %.16g, gelu %.16g want %.16g", k.x, f32, s[i], k.silu, ge[i], k.gelu)
			}
		}
	}
	// Random 3-D input against the formulas written out again.
	rng := rand.New(rand.NewSource(31))
	r := gradcheck.Rand(rng, 2, 3, 4)
	s := floats(run(t, func(g *G.ExprGraph) (*G.Node, error) { return SiLU(leaf(g, "x", r)) }))
	ge := floats(run(t, func(g *G.ExprGraph) (*G.Node, error) { return GELU(leaf(g, "x", r)) }))
	for i, v := range r.Data().([]float64) {
		if w := v / (1 + math.Exp(-v)); math.Abs(s[i]-w) > 1e-15 {
			t.Errorf("silu(%g) = %g, want %g", v, s[i], w)
		}
		if w := v * 0.5 * math.Erfc(-v/math.Sqrt2); math.Abs(ge[i]-w) > 1e-15 {
			t.Errorf("gelu(%g) = %g, want %g", v, ge[i], w)
		}
	}
}

func TestActivationGradients(t *testing.T) {
	rng := rand.New(rand.NewSource(32))
	for _, xs := range randShapes(rng) {
		x := gradcheck.Rand(rng, xs...)
		// Spread the inputs over [-4, 4] to cover both tails.
		for i, v := range x.Data().([]float64) {
			x.Data().([]float64)[i] = 4 * v
		}
		in := []gradcheck.Input{{Name: "x", Value: x, Diff: true}}
		gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) { return SiLU(n[0]) }, in, gradcheck.Options{})
		gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) { return GELU(n[0]) }, in, gradcheck.Options{})
	}
	x := gradcheck.Rand(rng, 2, 3)
	gradShapes32(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) { return SiLU(n[0]) }, x)
	gradShapes32(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) { return GELU(n[0]) }, x)
}

func TestActivationIdentity(t *testing.T) {
	g := G.NewGraph()
	x := leaf(g, "x", gradcheck.Rand(rand.New(rand.NewSource(33)), 2, 3))
	a, err := SiLU(x)
	if err != nil {
		t.Fatal(err)
	}
	b, err := GELU(x)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := SiLU(x)
	if err != nil {
		t.Fatal(err)
	}
	if a == b || a != a2 {
		t.Error("SiLU and GELU of one input must be two nodes, two SiLUs one")
	}
	seen := map[uint32]bool{}
	for _, op := range []actOp{{kind: silu, grad: false, rank: 2}, {kind: silu, grad: true, rank: 2}, {kind: gelu, grad: false, rank: 2}, {kind: gelu, grad: true, rank: 2}, {kind: silu, grad: false, rank: 3}} {
		if seen[op.Hashcode()] {
			t.Errorf("%v hashes like another activation", op)
		}
		seen[op.Hashcode()] = true
	}
}

func TestSiLUExtremes(t *testing.T) {
	x := tensor.New(tensor.WithShape(2), tensor.WithBacking([]float64{-1000, 1000}))
	got := floats(run(t, func(g *G.ExprGraph) (*G.Node, error) { return SiLU(leaf(g, "x", x)) }))
	if got[0] != 0 || got[1] != 1000 {
		t.Errorf("silu(±1000) = %v", got)
	}
	for _, v := range []float64{-1000, 1000} {
		if _, d := silu.f(v); math.IsNaN(d) {
			t.Errorf("silu'(%g) is NaN", v)
		}
	}
}
