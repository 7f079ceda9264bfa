//go:build openblas

package lilyop

// #cgo LDFLAGS: -lopenblas
// void openblas_set_num_threads(int);
import "C"

import (
	"github.com/lilygo/lily/internal/opkit"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/netlib/blas/netlib"
	G "gorgonia.org/gorgonia"
)

// BLAS names the BLAS implementation this build uses: "openblas" when built
// with -tags openblas, "gemm" (this module's pure-Go GEMM) otherwise.
const BLAS = "openblas"

// openBLAS is OpenBLAS through gonum's netlib binding, single-threaded,
// with large GEMMs split across goroutines (opkit.SplitGemm). OpenBLAS's own
// thread pool parallelises a skinny product (a rank-32 adapter: 1024×32×768)
// so badly that it runs 2–4 times slower than on one thread, and its idle
// workers spin in sched_yield between calls, taking a core from the Go code
// that runs between GEMMs; Go's goroutines do neither.
type openBLAS struct{ netlib.Implementation }

// Sgemm splits c's rows (or columns) across goroutines.
func (openBLAS) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	opkit.SplitGemm(netlib.Implementation{}.Sgemm, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Dgemm splits c's rows (or columns) across goroutines.
func (openBLAS) Dgemm(tA, tB blas.Transpose, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	opkit.SplitGemm(netlib.Implementation{}.Dgemm, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// The openblas build routes Gorgonia's BLAS — and so every GEMM of these ops,
// which go through gorgonia.WhichBLAS, and of Gorgonia's own matrix ops — to
// OpenBLAS through cgo, with OpenBLAS on one thread and Go owning the
// parallelism (see openBLAS). GOMAXPROCS bounds the cores used.
func init() {
	C.openblas_set_num_threads(1)
	G.Use(openBLAS{})
}

// sgemmBF16 is the float32 × bfloat16 GEMM of MatMul with a BFloat16
// weight: package gemm's, as in the default build. Debian's OpenBLAS 0.3.21
// has no cblas_sbgemm (it is built without BUILD_BFLOAT16, and sbgemm would
// round x to bfloat16 too), and widening the weight into a float32 buffer
// for OpenBLAS's Sgemm measured 1.4–2.4 times slower on training shapes and
// 6 times on a decoding step (BenchmarkMixedGemm, docs/performance.md).
var sgemmBF16 = sgemmBF16Gemm
