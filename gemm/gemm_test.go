package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"unsafe"

	"gonum.org/v1/gonum/blas"
)

// reference computes alpha·op(A)·op(B) + beta·C in float64, naively, for
// elements of C (never reading C when beta is 0).
func reference[T Float](ta, tb bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) []float64 {
	out := make([]float64, len(c))
	for i := range c {
		out[i] = float64(c[i])
	}
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				ai, bi := i*lda+p, p*ldb+j
				if ta {
					ai = p*lda + i
				}
				if tb {
					bi = j*ldb + p
				}
				av, bv := a[ai], b[bi]
				s += float64(av) * float64(bv)
			}
			v := float64(alpha) * s
			if beta != 0 {
				v += float64(beta) * float64(c[i*ldc+j])
			}
			out[i*ldc+j] = v
		}
	}
	return out
}

func trans(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

func randSlice[T Float](rng *rand.Rand, n int) []T {
	var s []T
	if guardedAlloc != nil && n > 0 {
		var zero T
		b := guardedAlloc(n * int(unsafe.Sizeof(zero)))
		s = unsafe.Slice((*T)(unsafe.Pointer(&b[0])), n)
	} else {
		s = make([]T, n)
	}
	for i := range s {
		s[i] = T(2*rng.Float64() - 1)
	}
	return s
}

// gemmCase runs one product with kern and compares every element of C
// (padding columns included: they must stay untouched) with the reference.
func gemmCase[T Float](t *testing.T, kern *microKernel[T], ta, tb bool, m, n, k, padA, padB, padC int, alpha, beta T, rng *rand.Rand) {
	t.Helper()
	rowsA, colsA := stored(ta, m, k)
	rowsB, colsB := stored(tb, k, n)
	lda, ldb, ldc := max(1, colsA)+padA, max(1, colsB)+padB, max(1, n)+padC
	// Each operand is exactly as long as the BLAS contract requires, so
	// that a read past its end leaves the slice (and, with guardedAlloc,
	// faults).
	a := randSlice[T](rng, minLen(rowsA, colsA, lda))
	b := randSlice[T](rng, minLen(rowsB, colsB, ldb))
	c := randSlice[T](rng, minLen(m, n, ldc))
	if beta == 0 {
		// C must not be read: NaNs there must not reach the result.
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				c[i*ldc+j] = T(math.NaN())
			}
		}
	}
	defer releaseGuarded()
	want := reference(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	multiply(kern, trans(ta), trans(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	var zero T
	tol := 1e-12
	if any(zero) == any(float32(0)) {
		tol = 1e-5
	}
	for i := range c {
		got, w := float64(c[i]), want[i]
		// Errors grow with k: the tolerance is relative to k·|alpha| plus
		// |beta| (every operand is in [-1, 1]).
		bound := tol * (float64(k)*math.Abs(float64(alpha)) + math.Abs(float64(beta)) + 1)
		if math.IsNaN(got) || math.Abs(got-w) > bound {
			t.Fatalf("%s ta=%v tb=%v m=%d n=%d k=%d lda=%d ldb=%d ldc=%d alpha=%v beta=%v: c[%d] = %v, want %v",
				kern.name, ta, tb, m, n, k, lda, ldb, ldc, alpha, beta, i, got, w)
		}
	}
}

// guardedAlloc, when set (guard_linux_test.go), allocates test operands
// so that they end just before an inaccessible page; guardedRelease frees
// what it allocated. Each test case calls releaseGuarded when done.
var (
	guardedAlloc   func(bytes int) []byte
	guardedRelease func()
)

func releaseGuarded() {
	if guardedRelease != nil {
		guardedRelease()
	}
}

var edgeSizes = []int{1, 2, 7, 15, 16, 17, 31, 33, 127, 129}

// inPlaceModes runs f with the in-place thresholds as tuned, with every
// operand packed, and with every operand that can be read in place read
// in place, so that small products exercise every path.
func inPlaceModes(t *testing.T, f func(t *testing.T)) {
	defer func(a, b, c int) { narrowCols, narrowColsT, shortRows = a, b, c }(narrowCols, narrowColsT, shortRows)
	for _, mode := range []struct {
		name    string
		a, b, c int
	}{{"tuned", narrowCols, narrowColsT, shortRows}, {"packed", 0, 0, 0}, {"in-place", 1 << 30, 1 << 30, 1 << 30}} {
		narrowCols, narrowColsT, shortRows = mode.a, mode.b, mode.c
		t.Run(mode.name, f)
	}
}

func testKernels[T Float](t *testing.T, kernels []*microKernel[T]) {
	inPlaceModes(t, func(t *testing.T) { testKernelsGrid(t, kernels) })
}

// smallBlocks is kern with cache blocks of a few tiles and an odd kc, so
// that small products cross every block boundary (the real blocks are
// hundreds of rows and columns wide).
func smallBlocks[T Float](kern *microKernel[T]) *microKernel[T] {
	k := *kern
	k.mc, k.kc, k.nc = 2*k.mr, 9, 3*k.nr
	return &k
}

func testKernelsGrid[T Float](t *testing.T, kernels []*microKernel[T]) {
	rng := rand.New(rand.NewPCG(1, 2))
	scalars := [][2]T{{1, 0}, {1, 1}, {-0.5, 0.25}, {2, -1}, {0, 0.5}, {0, 0}}
	for _, kern := range kernels {
		kern := smallBlocks(kern)
		t.Run(kern.name, func(t *testing.T) {
			for _, ta := range []bool{false, true} {
				for _, tb := range []bool{false, true} {
					for i, m := range edgeSizes {
						for j, n := range edgeSizes {
							// k over the edge sizes, 0, and past two kc blocks.
							ks := []int{0, edgeSizes[(i+j)%len(edgeSizes)], 2*kern.kc + 3}
							for _, k := range ks {
								s := scalars[(i*3+j+k)%len(scalars)]
								gemmCase(t, kern, ta, tb, m, n, k, (i+j)%3, (i*j)%2, j%2, s[0], s[1], rng)
							}
						}
					}
				}
			}
		})
	}
}

// Every kernel this CPU can run, every transpose, a grid of edge sizes,
// k = 0 and k past the cache blocks, padded leading dimensions, and alpha
// and beta cases (beta = 0 with NaNs in C) against a float64 reference,
// with every operand packed, read in place, or as tuned.
func TestSgemmGrid(t *testing.T) { testKernels(t, kernels32()) }

func TestDgemmGrid(t *testing.T) { testKernels(t, kernels64()) }

// Products large enough to be split across goroutines (by rows with a
// shared packed B, or by columns), on 2 and 3 of them, crossing every
// block boundary, every operand packed or read in place; and products
// crossing the real cache blocks.
func TestBlocksAndThreads(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	inPlaceModes(t, testBlocksAndThreads)
	for _, kern := range []*microKernel[float32]{kernel32} {
		gemmCase(t, kern, false, false, kern.mc+5, 3*kern.nr+1, 2*kern.kc+1, 0, 0, 0, 1, 0, rng)
		gemmCase(t, kern, true, true, kern.mc+kern.mr+1, 33, kern.kc+1, 1, 2, 3, 1, 1, rng)
		gemmCase(t, kern, false, true, 21, kern.nc+17, 40, 0, 0, 0, 0.5, 2, rng)
	}
	kern := kernel64
	gemmCase(t, kern, true, false, kern.mc+1, 2*kern.nr+3, 2*kern.kc+2, 0, 1, 0, 1, 0.5, rng)
}

func testBlocksAndThreads(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, procs := range []int{2, 3} {
		runtime.GOMAXPROCS(procs)
		for _, kern := range kernels32() {
			kern := smallBlocks(kern)
			gemmCase(t, kern, false, false, 173, 301, 41, 0, 0, 0, 1, 0, rng)
			gemmCase(t, kern, true, true, 201, 133, 45, 1, 2, 3, 1, 1, rng)
			gemmCase(t, kern, false, true, 40, 1000, 37, 0, 0, 0, 0.5, 2, rng)
			gemmCase(t, kern, true, false, 2*kern.mr-1, 1200, 50, 1, 3, 0, 1, 0, rng)
			gemmCase(t, kern, false, false, 777, kern.nr, 60, 3, 0, 1, -2, 0, rng)
			gemmCase(t, kern, false, true, 800, kern.nr+1, 50, 0, 0, 2, 1, 1, rng)
		}
		for _, kern := range kernels64() {
			kern := smallBlocks(kern)
			gemmCase(t, kern, true, false, 150, 2*kern.nr+3, 50, 0, 1, 0, 1, 0.5, rng)
			gemmCase(t, kern, false, false, 300, kern.nr+1, 70, 0, 1, 0, 1.5, 0, rng)
		}
	}
}

// The exported functions and the Gorgonia Implementation run the default
// kernel; bad arguments panic as BLAS requires.
func TestPublicAPI(t *testing.T) {
	a := []float32{1, 2, 3, 4, 5, 6} // 2×3
	b := []float32{1, 0, 0, 1, 1, 1} // 3×2
	c := make([]float32, 4)
	Implementation{}.Sgemm(blas.NoTrans, blas.NoTrans, 2, 2, 3, 1, a, 3, b, 2, 0, c, 2)
	if want := []float32{4, 5, 10, 11}; fmt.Sprint(c) != fmt.Sprint(want) {
		t.Fatalf("Sgemm = %v, want %v", c, want)
	}
	d := make([]float64, 4)
	Dgemm(blas.Trans, blas.NoTrans, 2, 2, 2, 1, []float64{1, 2, 3, 4}, 2, []float64{1, 0, 0, 1}, 2, 0, d, 2)
	if want := []float64{1, 3, 2, 4}; fmt.Sprint(d) != fmt.Sprint(want) {
		t.Fatalf("Dgemm = %v, want %v", d, want)
	}
	if Kernel() == "" {
		t.Fatal("no kernel name")
	}
	for name, f := range map[string]func(){
		"m<0":   func() { Sgemm(blas.NoTrans, blas.NoTrans, -1, 1, 1, 1, a, 1, b, 1, 0, c, 1) },
		"lda":   func() { Sgemm(blas.NoTrans, blas.NoTrans, 2, 2, 3, 1, a, 2, b, 2, 0, c, 2) },
		"short": func() { Sgemm(blas.NoTrans, blas.NoTrans, 2, 2, 3, 1, a[:5], 3, b, 2, 0, c, 2) },
		"trans": func() { Sgemm(blas.Transpose('x'), blas.NoTrans, 2, 2, 3, 1, a, 3, b, 2, 0, c, 2) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}
