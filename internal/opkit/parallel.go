package opkit

import (
	"gonum.org/v1/gonum/blas"
	"runtime"
	"sync"
)

// Parallel calls f on consecutive ranges [lo, hi) that together cover
// [0, n), running the ranges on up to GOMAXPROCS goroutines. Each range
// holds at least grain items (a range of fewer would cost more to schedule
// than it saves), so a small n runs on the calling goroutine alone. f must
// only write data owned by its range.
func Parallel(n, grain int, f func(lo, hi int)) {
	parts := Parts(n, grain)
	if parts <= 1 {
		if n > 0 {
			f(0, n)
		}
		return
	}
	var wg sync.WaitGroup
	wg.Add(parts - 1)
	for p := 1; p < parts; p++ {
		lo, hi := n*p/parts, n*(p+1)/parts
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	f(0, n/parts)
	wg.Wait()
}

// Parts is the number of ranges Parallel splits n items into.
func Parts(n, grain int) int {
	if grain < 1 {
		grain = 1
	}
	p := min(runtime.GOMAXPROCS(0), n/grain)
	return max(p, 1)
}

// ElementGrain is the number of elements of a simple elementwise loop
// (an add, a multiply) below which splitting it across goroutines does not
// pay; loops with a transcendental function per element use a tenth of it.
const ElementGrain = 1 << 15

// GemmFunc is the signature of a row-major BLAS GEMM (gonum's blas.Float32
// Sgemm or blas.Float64 Dgemm).
type GemmFunc[T Float] func(tA, tB blas.Transpose, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int)

// gemmGrain is the least number of multiply-adds (m·n·k) a block of a split
// GEMM gets: about 20 µs of work, several times what starting a goroutine
// costs.
const gemmGrain = 1 << 20

// SplitGemm computes the GEMM c = alpha·op(a)·op(b) + beta·c (row-major, as
// gemm does) as independent GEMMs on blocks of c's rows (or of its columns
// when c is wider than tall), run by gemm on up to GOMAXPROCS goroutines.
// It is for a single-threaded BLAS (OpenBLAS set to one thread): Go then
// owns the parallelism, which keeps skinny and small products (a rank-32
// adapter, an attention head) from paying a BLAS thread pool's start-up
// and spin-waiting, and lets several ops run in parallel goroutines without
// oversubscribing the cores.
func SplitGemm[T Float](gemm GemmFunc[T], tA, tB blas.Transpose, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	work := m * n * k
	if m >= n {
		parts := min(Parts(work, gemmGrain), m/16)
		if parts <= 1 {
			gemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
			return
		}
		Parallel(parts, 1, func(lo, hi int) {
			for p := lo; p < hi; p++ {
				r0, r1 := m*p/parts, m*(p+1)/parts
				aOff := r0 * lda
				if tA == blas.Trans {
					aOff = r0
				}
				gemm(tA, tB, r1-r0, n, k, alpha, a[aOff:], lda, b, ldb, beta, c[r0*ldc:], ldc)
			}
		})
		return
	}
	parts := min(Parts(work, gemmGrain), n/16)
	if parts <= 1 {
		gemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	Parallel(parts, 1, func(lo, hi int) {
		for p := lo; p < hi; p++ {
			c0, c1 := n*p/parts, n*(p+1)/parts
			bOff := c0
			if tB == blas.Trans {
				bOff = c0 * ldb
			}
			gemm(tA, tB, m, c1-c0, k, alpha, a, lda, b[bOff:], ldb, beta, c[c0:], ldc)
		}
	})
}
