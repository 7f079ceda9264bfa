//go:build !openblas

package lilyop

import (
	"github.com/lilygo/lily/gemm"
	G "gorgonia.org/gorgonia"
)

// BLAS names the BLAS implementation this build uses: "openblas" when built
// with -tags openblas, "gemm" (this module's pure-Go GEMM, package gemm)
// otherwise.
const BLAS = "gemm"

// The default build routes Gorgonia's BLAS — and so every GEMM of these
// ops, which go through gorgonia.WhichBLAS, and of Gorgonia's own matrix
// ops — to package gemm, whose assembly micro-kernels run at close to the
// CPU's peak (gonum's portable kernels reach a tenth of it). gemm splits
// large products across GOMAXPROCS goroutines itself.
func init() {
	G.Use(gemm.Implementation{})
}

// sgemmBF16 is the float32 × bfloat16 GEMM of MatMul with a BFloat16
// weight: package gemm widening the weight while it packs it.
var sgemmBF16 = sgemmBF16Gemm
