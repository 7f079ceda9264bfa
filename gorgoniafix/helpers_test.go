package gorgoniafix

import (
	"math"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// removable is appended to every upstream-defect assertion.
const removable = "upstream Gorgonia behaviour changed; re-check the defect and the workaround in package gorgoniafix may be removable"

// closeRel reports whether got is within tol of want, relative to max(1,|want|).
func closeRel(got, want, tol float64) bool {
	return math.Abs(got-want) <= tol*math.Max(1, math.Abs(want))
}

// f64Input makes a named float64 input node bound to a fresh tensor.
func f64Input(g *G.ExprGraph, name string, shape []int, data []float64) (*G.Node, *tensor.Dense) {
	v := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float64(nil), data...)))
	return G.NewTensor(g, tensor.Float64, len(shape), G.WithShape(shape...), G.WithName(name), G.WithValue(v)), v
}

// seq returns n deterministic, non-trivial float64s.
func seq(n int, a, b float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = a*math.Sin(float64(i)*1.7+0.3) + b
	}
	return out
}

func mustNoErr(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %+v", what, err)
	}
}
