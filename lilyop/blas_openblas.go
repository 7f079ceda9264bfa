//go:build openblas

package lilyop

// #cgo LDFLAGS: -lopenblas
import "C"

import (
	"gonum.org/v1/netlib/blas/netlib"
	G "gorgonia.org/gorgonia"
)

// BLAS names the BLAS implementation this build uses: "openblas" when built
// with -tags openblas, "gonum" (pure Go) otherwise.
const BLAS = "openblas"

// The openblas build routes Gorgonia's BLAS — and so every GEMM of these ops,
// which go through gorgonia.WhichBLAS — to OpenBLAS through cgo.
func init() { G.Use(netlib.Implementation{}) }
