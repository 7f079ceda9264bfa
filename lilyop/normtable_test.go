package lilyop

import (
	"math"
	"testing"
)

// The float32 GELU's tables agree with the exact functions far below
// float32 resolution across and beyond their range.
func TestNormTables(t *testing.T) {
	for i := 0; i <= 40000; i++ {
		x := -10 + 20*float64(i)/40000 + 1e-7
		exact := 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
		dexact := 0.5*(1+math.Erf(x/math.Sqrt2)) + x*math.Exp(-x*x/2)/math.Sqrt(2*math.Pi)
		if d := math.Abs(gelu32(x) - exact); d > 1e-10*math.Max(1, math.Abs(x)) {
			t.Fatalf("gelu32(%g) = %g, exact %g", x, gelu32(x), exact)
		}
		if d := math.Abs(gelu32Grad(x) - dexact); d > 1e-10*math.Max(1, math.Abs(x)) {
			t.Fatalf("gelu32Grad(%g) = %g, exact %g", x, gelu32Grad(x), dexact)
		}
		// Relative accuracy where Φ is tiny (the left tail).
		if c, ok := normCDFTable.at(x); ok && math.Abs(c-normCDF(x)) > 1e-7*normCDF(x)+1e-300 {
			t.Fatalf("Φ(%g): table %g, exact %g", x, c, normCDF(x))
		}
	}
	if !math.IsNaN(gelu32(math.NaN())) || gelu32(math.Inf(1)) != math.Inf(1) {
		t.Error("gelu32 mishandles NaN or +Inf")
	}
}

// The slice kernels compute what the per-element functions compute.
func TestGELU32Rows(t *testing.T) {
	x, g := make([]float32, 4001), make([]float32, 4001)
	for i := range x {
		x[i] = float32(-10 + 20*float64(i)/4000)
		g[i] = float32(1 + float64(i%7))
	}
	y, d := make([]float32, len(x)), make([]float32, len(x))
	gelu32Rows(y, x)
	gelu32GradRows(d, x, g)
	for i, v := range x {
		if want := float32(gelu32(float64(v))); y[i] != want {
			t.Fatalf("gelu32Rows at %g: %g, want %g", v, y[i], want)
		}
		if want := float32(gelu32Grad(float64(v)) * float64(g[i])); math.Abs(float64(d[i]-want)) > 1e-6*math.Abs(float64(want)) {
			t.Fatalf("gelu32GradRows at %g: %g, want %g", v, d[i], want)
		}
	}
}
