package lilyop

import (
	"math/rand"
	"slices"
	"testing"
	"time"
)

// BenchmarkGELUTable compares float32 GELU forward and backward from the
// tables (normtable.go) with the exact erf/exp formulas, interleaved, on
// normally distributed inputs; it reports the median time ratio table/exact.
func BenchmarkGELUTable(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	x := make([]float32, 1<<16)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	o := make([]float32, len(x))
	g := make([]float32, len(x))
	for i := range g {
		g[i] = 1
	}
	table := func() {
		gelu32Rows(o, x)
		gelu32GradRows(o, x, g)
	}
	exact := func() {
		for i, v := range x {
			o[i] = float32(gelu.y(float64(v)))
		}
		for i, v := range x {
			o[i] = float32(gelu.dy(float64(v)) * float64(g[i]))
		}
	}
	var ratios []float64
	for n := 0; n < b.N; n++ {
		t0 := time.Now()
		table()
		t1 := time.Now()
		exact()
		ratios = append(ratios, float64(t1.Sub(t0))/float64(time.Since(t1)))
	}
	slices.Sort(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "table/exact")
}
