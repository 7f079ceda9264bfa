package gemm

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
)

// f16Value is the value of the binary16 encoding h by the defining
// formula, computed with math.Ldexp.
func f16Value(h uint16) float64 {
	sign, exp, mant := h>>15, int(h>>10&0x1f), float64(h&0x3ff)
	var v float64
	switch {
	case exp == 0x1f && mant == 0:
		v = math.Inf(1)
	case exp == 0x1f:
		v = math.NaN()
	case exp == 0:
		v = math.Ldexp(mant, -24)
	default:
		v = math.Ldexp(1024+mant, exp-25)
	}
	if sign == 1 {
		v = -v
	}
	return v
}

// Every one of the 65536 float16 values widens exactly; ToF16 maps each
// back to itself (NaNs to a quiet NaN of the same sign).
func TestF16Exhaustive(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := F16(i)
		want, got := f16Value(uint16(i)), h.Float32()
		if math.IsNaN(want) {
			back := ToF16(got)
			if !math.IsNaN(float64(got)) || math.Signbit(float64(got)) != (i>>15 == 1) || back&0x7e00 != 0x7e00 || back>>15 != h>>15 {
				t.Fatalf("f16 %#04x: %v, back %#04x", i, got, back)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
			t.Fatalf("f16 %#04x: %v, want %v", i, got, want)
		}
		if back := ToF16(got); back != h {
			t.Fatalf("ToF16(%v) = %#04x, want %#04x", got, back, i)
		}
	}
}

// roundF16 is ToF16's value by a float64 computation: the magnitude scaled
// so that float16's last place is 1, rounded to even, scaled back.
func roundF16(f float32) float64 {
	r := math.Abs(float64(f))
	if r >= 65520 {
		return math.Copysign(math.Inf(1), float64(f))
	}
	e := -24 // the weight of the last place of a subnormal
	if r >= math.Ldexp(1, -14) {
		_, x := math.Frexp(r) // r = frac·2^x, frac in [0.5, 1)
		e = x - 11
	}
	return math.Copysign(math.Ldexp(math.RoundToEven(math.Ldexp(r, -e)), e), float64(f))
}

// ToF16 rounds to nearest, ties to even, overflowing to infinity, on every
// midpoint between neighbouring float16 values and on random float32 values.
func TestToF16(t *testing.T) {
	check := func(f float32) {
		got, want := float64(ToF16(f).Float32()), roundF16(f)
		if got != want || math.Signbit(got) != math.Signbit(want) {
			t.Fatalf("ToF16(%g = %#x) = %v, want %v", f, math.Float32bits(f), got, want)
		}
	}
	for i := 0; i < 0x7c00; i++ {
		lo, hi := f16Value(uint16(i)), f16Value(uint16(i+1))
		if i == 0x7bff {
			hi = 65536
		}
		mid := float32((lo + hi) / 2) // exact: 12 significant bits
		for _, f := range []float32{mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, 1e9)} {
			check(f)
			check(-f)
		}
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for range 200000 {
		f := math.Float32frombits(rng.Uint32())
		if !math.IsNaN(float64(f)) {
			check(f)
		}
	}
	for _, f := range []float32{float32(math.Inf(1)), float32(math.Inf(-1)), 65504, 65519.996, 65520, 1e-8, 2.9802322e-08, 2.9802326e-08} {
		check(f)
	}
	if n := ToF16(float32(math.NaN())); n&0x7c00 != 0x7c00 || n&0x3ff == 0 {
		t.Fatalf("ToF16(NaN) = %#04x", n)
	}
}

// SgemmF16 equals Sgemm on B's float32 values bit for bit, over the grid
// SgemmBF16 is tested on.
func TestSgemmF16(t *testing.T) {
	inPlaceModes(t, testSgemmF16)
	defer func() {
		if recover() == nil {
			t.Fatal("short b: no panic")
		}
	}()
	SgemmF16(blas.NoTrans, blas.NoTrans, 2, 2, 2, 1, make([]float32, 4), 2, make([]F16, 3), 2, 0, make([]float32, 4), 2)
}

func testSgemmF16(t *testing.T) { testSgemmHalf(t, ToF16, multiplyF16) }
