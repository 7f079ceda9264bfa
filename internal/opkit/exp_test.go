package opkit_test

import (
	"math"
	"testing"

	"github.com/lilygo/lily/internal/opkit"
)

func TestExp32(t *testing.T) {
	for i := 0; i <= 200000; i++ {
		x := -90 + 180*float64(i)/200000
		got, want := opkit.Exp32(x), math.Exp(x)
		if x < -87.4 {
			want = 0
		}
		if x > 88.8 {
			want = math.Inf(1)
		}
		if got != want && math.Abs(got-want) > 1e-8*want {
			t.Fatalf("Exp32(%g) = %g, want %g", x, got, want)
		}
	}
	if !math.IsNaN(opkit.Exp32(math.NaN())) || opkit.Exp32(math.Inf(-1)) != 0 || opkit.Exp32(0) != 1 {
		t.Error("Exp32 mishandles NaN, −Inf or 0")
	}
}

func BenchmarkExp(b *testing.B) {
	xs := make([]float64, 4096)
	for i := range xs {
		xs[i] = -20 * float64(i) / 4096
	}
	var s float64
	b.Run("Exp32", func(b *testing.B) {
		for n := 0; n < b.N; n++ {
			for _, x := range xs {
				s += opkit.Exp32(x)
			}
		}
	})
	b.Run("math.Exp", func(b *testing.B) {
		for n := 0; n < b.N; n++ {
			for _, x := range xs {
				s += math.Exp(x)
			}
		}
	})
	_ = s
}

func TestExpShift32(t *testing.T) {
	row := []float32{-100, -87, -3, 0, 1.5, 2, float32(math.NaN())}
	want := make([]float32, len(row))
	var sum float64
	for i, v := range row[:len(row)-1] {
		e := opkit.Exp32(float64(v - 2))
		want[i] = float32(e)
		sum += e
	}
	orig := append([]float32(nil), row...)
	got := opkit.ExpShift32(row, 2)
	for i := range want[:len(want)-1] {
		if row[i] != want[i] {
			t.Fatalf("element %d: %g, want %g", i, row[i], want[i])
		}
	}
	if !math.IsNaN(float64(row[len(row)-1])) || !math.IsNaN(got) {
		t.Errorf("NaN not propagated: %g, sum %g", row[len(row)-1], got)
	}
	if s := opkit.ExpShift32(orig[:len(orig)-1], 2); math.Abs(s-sum) > 1e-12*sum {
		t.Errorf("sum %g, want %g", s, sum)
	}
}
