package layers

import (
	"math"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func TestActivationHelpers(t *testing.T) {
	s, err := NewStore(tensor.Float64)
	if err != nil {
		t.Fatal(err)
	}
	g := s.NewGraph(false)
	x := g.Input("x", 2, 2)
	xv := []float64{-2, -0.5, 0.5, 3}
	copyInto(x.Value().(*tensor.Dense), xv)
	si, err := SiLU(x)
	if err != nil {
		t.Fatal(err)
	}
	ge, err := GELU(x)
	if err != nil {
		t.Fatal(err)
	}
	m := G.NewTapeMachine(g.G)
	defer m.Close()
	if err := m.RunAll(); err != nil {
		t.Fatal(err)
	}
	gs, gg := Float64s(si.Value().(*tensor.Dense)), Float64s(ge.Value().(*tensor.Dense))
	for i, v := range xv {
		if want := v / (1 + math.Exp(-v)); math.Abs(gs[i]-want) > 1e-15 {
			t.Errorf("SiLU(%g) = %g, want %g", v, gs[i], want)
		}
		if want := 0.5 * v * (1 + math.Erf(v/math.Sqrt2)); math.Abs(gg[i]-want) > 1e-15 {
			t.Errorf("GELU(%g) = %g, want %g", v, gg[i], want)
		}
	}
}
