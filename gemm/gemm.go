package gemm

import (
	"fmt"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// Float is the element type of the matrices: float32 or float64.
type Float interface{ float32 | float64 }

// Sgemm computes C = alpha·op(A)·op(B) + beta·C for row-major float32
// matrices, where op(X) is X or Xᵀ as tA and tB say, op(A) is m×k, op(B)
// is k×n and C is m×n; lda, ldb and ldc are the row strides as stored.
// Like gonum's Sgemm it panics on arguments that break the BLAS contract
// (negative sizes, strides narrower than a row, slices too short).
func Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	multiply(kernel32, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Dgemm is Sgemm for float64 matrices.
func Dgemm(tA, tB blas.Transpose, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	multiply(kernel64, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Implementation is gonum's pure-Go BLAS with Sgemm and Dgemm replaced by
// this package's. It satisfies gorgonia.BLAS: gorgonia.Use(gemm.Implementation{})
// makes every matrix product of a Gorgonia graph run here.
type Implementation struct{ gonum.Implementation }

// Sgemm is the package-level Sgemm.
func (Implementation) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	Sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Dgemm is the package-level Dgemm.
func (Implementation) Dgemm(tA, tB blas.Transpose, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	Dgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Kernel names the micro-kernel this process multiplies float32 matrices
// with: "avx512", "avx2" or "go".
func Kernel() string { return kernel32.name }

// multiply runs one call with kern.
func multiply[T Float](kern *microKernel[T], tA, tB blas.Transpose, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	p := problem[T]{m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc}
	solve(kern, tA, tB, p, len(b))
}

// solve checks p's arguments (lenB: the length of B, whichever its type),
// handles the cases that need no product, and runs the blocked algorithm
// with kern, split across goroutines when the product is large enough.
func solve[T Float](kern *microKernel[T], tA, tB blas.Transpose, p problem[T], lenB int) {
	p.ta, p.tb = check(tA, tB, p.m, p.n, p.k, len(p.a), p.lda, lenB, p.ldb, len(p.c), p.ldc)
	if p.m == 0 || p.n == 0 {
		return
	}
	if p.alpha == 0 || p.k == 0 {
		scale(p.m, p.n, p.beta, p.c, p.ldc)
		return
	}
	split(kern, p)
}

// check panics unless the arguments meet the BLAS contract, and reports
// whether A and B are transposed.
func check(tA, tB blas.Transpose, m, n, k, la, lda, lb, ldb, lc, ldc int) (ta, tb bool) {
	ta, tb = transposed(tA, "tA"), transposed(tB, "tB")
	switch {
	case m < 0:
		panic("gemm: m < 0")
	case n < 0:
		panic("gemm: n < 0")
	case k < 0:
		panic("gemm: k < 0")
	}
	rowsA, colsA := stored(ta, m, k)
	rowsB, colsB := stored(tb, k, n)
	switch {
	case lda < max(1, colsA):
		panic(fmt.Sprintf("gemm: lda %d < %d", lda, max(1, colsA)))
	case ldb < max(1, colsB):
		panic(fmt.Sprintf("gemm: ldb %d < %d", ldb, max(1, colsB)))
	case ldc < max(1, n):
		panic(fmt.Sprintf("gemm: ldc %d < %d", ldc, max(1, n)))
	}
	switch {
	case la < minLen(rowsA, colsA, lda):
		panic("gemm: insufficient length of a")
	case lb < minLen(rowsB, colsB, ldb):
		panic("gemm: insufficient length of b")
	case lc < minLen(m, n, ldc):
		panic("gemm: insufficient length of c")
	}
	return ta, tb
}

// stored is the shape of an operand as stored: op(X) is rows×cols, and X
// is its transpose when trans.
func stored(trans bool, rows, cols int) (int, int) {
	if trans {
		return cols, rows
	}
	return rows, cols
}

// minLen is the fewest elements a rows×cols matrix at row stride ld
// occupies (the BLAS contract's slice length).
func minLen(rows, cols, ld int) int {
	if rows == 0 || cols == 0 {
		return 0
	}
	return (rows-1)*ld + cols
}

func transposed(t blas.Transpose, name string) bool {
	switch t {
	case blas.NoTrans:
		return false
	case blas.Trans, blas.ConjTrans:
		return true
	}
	panic("gemm: bad " + name)
}

// scale sets C = beta·C, without reading C when beta is 0.
func scale[T Float](m, n int, beta T, c []T, ldc int) {
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		switch beta {
		case 0:
			clear(row)
		case 1:
		default:
			for j := range row {
				row[j] *= beta
			}
		}
	}
}

// problem is one call's operands.
type problem[T Float] struct {
	ta, tb      bool
	m, n, k     int
	alpha, beta T
	a, b, c     []T
	bh          []BF16 // B in bfloat16 instead of b (SgemmBF16)
	bf          []F16  // B in float16 instead of b (SgemmF16)
	lda, ldb    int
	ldc         int
}

// Packing buffers are kept between calls in pools, one per element type
// and operand, so that a buffer taken for B was grown for B before and a
// call allocates nothing once warm.
const (
	operandA = iota
	operandB
)

// panelBuf is one packing buffer.
type panelBuf[T Float] struct{ s []T }

var pools [2][2]sync.Pool // [float32, float64][operandA, operandB]

// getPanels takes a buffer of at least n elements for operand from the
// pool; putPanels returns it.
func getPanels[T Float](operand, n int) *panelBuf[T] {
	buf, _ := pool[T](operand).Get().(*panelBuf[T])
	if buf == nil {
		buf = new(panelBuf[T])
	}
	if len(buf.s) < n {
		buf.s = make([]T, n)
	}
	return buf
}

func putPanels[T Float](operand int, buf *panelBuf[T]) { pool[T](operand).Put(buf) }

func pool[T Float](operand int) *sync.Pool {
	var zero T
	if any(zero) == any(float32(0)) {
		return &pools[0][operand]
	}
	return &pools[1][operand]
}
