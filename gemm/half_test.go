package gemm

import (
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"gonum.org/v1/gonum/blas"
)

// ToBF16 rounds to nearest, ties to even, against a float64 computation of
// the two neighbouring bfloat16 values.
func TestToBF16(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	check := func(f float32) {
		h := ToBF16(f)
		if math.IsNaN(float64(f)) {
			if !math.IsNaN(float64(h.Float32())) || math.Signbit(float64(h.Float32())) != math.Signbit(float64(f)) {
				t.Fatalf("ToBF16(NaN %x) = %x", math.Float32bits(f), h)
			}
			return
		}
		u := math.Float32bits(f)
		lo := BF16(u >> 16) // truncation: the neighbour towards zero
		hi := lo + 1
		hv := float64(hi.Float32())
		if math.IsInf(hv, 0) {
			// IEEE 754 rounds past the largest finite value as if the
			// next exponent existed: its value would be ±2^128.
			hv = math.Copysign(math.Ldexp(1, 128), hv)
		}
		dl := math.Abs(float64(f) - float64(lo.Float32()))
		dh := math.Abs(hv - float64(f))
		want := lo
		if u&0xffff != 0 && (dh < dl || dh == dl && lo&1 == 1) {
			want = hi
		}
		if h != want {
			t.Fatalf("ToBF16(%g = %x) = %x, want %x", f, u, h, want)
		}
	}
	for _, f := range []float32{0, -0.0, 1, -1, 1.00390625, 1.01171875, 3.4e38, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), -float32(math.NaN()), 1e-45} {
		check(f)
	}
	for range 100000 {
		check(math.Float32frombits(rng.Uint32()))
	}
}

// SgemmBF16 equals Sgemm on B's float32 values bit for bit, for every
// kernel this CPU runs, every transpose and a grid of shapes (short, narrow and blocked products, on
// one and several goroutines), with alpha and beta.
func TestSgemmBF16(t *testing.T) {
	inPlaceModes(t, testSgemmBF16)
	// Bad arguments panic as Sgemm's do.
	defer func() {
		if recover() == nil {
			t.Fatal("short b: no panic")
		}
	}()
	SgemmBF16(blas.NoTrans, blas.NoTrans, 2, 2, 2, 1, make([]float32, 4), 2, make([]BF16, 3), 2, 0, make([]float32, 4), 2)
}

func testSgemmBF16(t *testing.T) { testSgemmHalf(t, ToBF16, multiplyBF16) }

// testSgemmHalf runs checkHalf over the grid of shapes, transposes and
// scalars for the half type H, rounded to by round and multiplied by mul.
func testSgemmHalf[H BF16 | F16](t *testing.T, round func(float32) H, mul halfMultiply[H]) {
	rng := rand.New(rand.NewPCG(7, 8))
	shapes := [][3]int{{1, 1, 1}, {7, 33, 5}, {20, 100, 300}, {100, 20, 17}, {129, 130, 131}, {300, 700, 600}, {16, 64, 8}}
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			for i, s := range shapes {
				m, n, k := s[0], s[1], s[2]
				alpha, beta := float32(1), float32(0)
				if i%2 == 1 {
					alpha, beta = -0.5, 2
				}
				checkHalf(t, rng, ta, tb, m, n, k, i%3, i%2+1, alpha, beta, round, mul)
			}
		}
	}
}

// halfMultiply is multiplyBF16 or multiplyF16.
type halfMultiply[H BF16 | F16] func(kern *microKernel[float32], tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []H, ldb int, beta float32, c []float32, ldc int)

// checkHalf compares mul with multiply on the widened B, for every
// kernel, on operands exactly as long as the BLAS contract requires
// (guarded, under TestGuardPages).
func checkHalf[H BF16 | F16](t *testing.T, rng *rand.Rand, ta, tb bool, m, n, k, padA, padB int, alpha, beta float32, round func(float32) H, mul halfMultiply[H]) {
	t.Helper()
	defer releaseGuarded()
	rowsA, colsA := stored(ta, m, k)
	rowsB, colsB := stored(tb, k, n)
	lda, ldb, ldc := colsA+padA, colsB+padB, n
	a := randSlice[float32](rng, minLen(rowsA, colsA, lda))
	// B in half precision, in the upper half of a float32 operand's memory so
	// that it too ends where that memory does.
	nb := minLen(rowsB, colsB, ldb)
	mem := randSlice[float32](rng, nb)
	bh := unsafe.Slice((*H)(unsafe.Add(unsafe.Pointer(&mem[0]), 2*nb)), nb)
	wide := make([]float32, nb)
	for j := range bh {
		bh[j] = round(float32(2*rng.Float64() - 1))
		wide[j] = widenOne(bh[j])
	}
	c0 := randSlice[float32](rng, minLen(m, n, ldc))
	for _, kern := range kernels32() {
		want := append([]float32(nil), c0...)
		got := append([]float32(nil), c0...)
		multiply(kern, trans(ta), trans(tb), m, n, k, alpha, a, lda, wide, ldb, beta, want, ldc)
		mul(kern, trans(ta), trans(tb), m, n, k, alpha, a, lda, bh, ldb, beta, got, ldc)
		for j := range got {
			if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
				t.Fatalf("%s ta=%v tb=%v %d×%d×%d: c[%d] = %v, Sgemm on the widened B gives %v", kern.name, ta, tb, m, n, k, j, got[j], want[j])
			}
		}
	}
}

// widenOne is v's float32 value.
func widenOne[H BF16 | F16](v H) float32 {
	return any(v).(interface{ Float32() float32 }).Float32()
}
