package layers

import (
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func TestNormHelpers(t *testing.T) {
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		s, err := NewStore(dt)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		const d = 4
		for _, name := range []string{"ln.weight", "ln.bias", "rms.weight"} {
			if _, err := s.New(ParamSpec{Name: name, Shape: tensor.Shape{d}, Init: KaimingUniform(1)}, false, rng); err != nil {
				t.Fatal(err)
			}
		}
		g := s.NewGraph(false)
		x := g.Input("x", 3, d)
		xv := randSlice(rng, 3*d)
		copyInto(x.Value().(*tensor.Dense), xv)
		rms, err := RMSNorm(g, x, "rms.weight", 1e-6)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := LayerNorm(g, x, "ln.weight", "ln.bias", 1e-5)
		if err != nil {
			t.Fatal(err)
		}
		m := G.NewTapeMachine(g.G)
		if err := m.RunAll(); err != nil {
			t.Fatal(err)
		}
		m.Close()
		get := func(n string) []float64 { p, _ := s.Get(n); return Float64s(p.Value) }
		w, gm, bt := get("rms.weight"), get("ln.weight"), get("ln.bias")
		x64 := Float64s(x.Value().(*tensor.Dense))
		gotR, gotL := Float64s(rms.Value().(*tensor.Dense)), Float64s(ln.Value().(*tensor.Dense))
		tol := 1e-12
		if dt == tensor.Float32 {
			tol = 1e-5
		}
		for r := 0; r < 3; r++ {
			row := x64[r*d : (r+1)*d]
			var ms, mean, vr float64
			for _, v := range row {
				ms += v * v / d
				mean += v / d
			}
			for _, v := range row {
				vr += (v - mean) * (v - mean) / d
			}
			for j, v := range row {
				if want := v / math.Sqrt(ms+1e-6) * w[j]; math.Abs(gotR[r*d+j]-want) > tol {
					t.Errorf("%v RMSNorm[%d,%d] = %g, want %g", dt, r, j, gotR[r*d+j], want)
				}
				if want := (v-mean)/math.Sqrt(vr+1e-5)*gm[j] + bt[j]; math.Abs(gotL[r*d+j]-want) > tol {
					t.Errorf("%v LayerNorm[%d,%d] = %g, want %g", dt, r, j, gotL[r*d+j], want)
				}
			}
		}
		if _, err := RMSNorm(g, x, "missing", 1e-6); err == nil {
			t.Error("a missing weight must be an error")
		}
		if _, err := LayerNorm(g, x, "ln.weight", "missing", 1e-6); err == nil {
			t.Error("a missing bias must be an error")
		}
	}
}
