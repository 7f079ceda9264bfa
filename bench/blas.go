package bench

import (
	"github.com/lilygo/lily/gemm"
	"github.com/lilygo/lily/lilyop"
	"gonum.org/v1/gonum/blas/gonum"
	G "gorgonia.org/gorgonia"
)

// BuildBLAS is the BLAS this binary was built with: "openblas" (-tags
// openblas) or "gemm" (this module's pure-Go GEMM).
const BuildBLAS = lilyop.BLAS

// buildBLAS is the implementation Gorgonia used at start-up.
var buildBLAS = G.WhichBLAS()

// UseBLAS switches Gorgonia (and every op of this module) to name's BLAS:
// BuildBLAS, "gemm" (package gemm, available in every build, so the
// OpenBLAS build can compare the two in one process) or "gonum" (gonum's
// portable pure-Go BLAS, the default build's before package gemm). It
// reports false for any other name. It is global.
func UseBLAS(name string) bool {
	switch {
	case name == BuildBLAS:
		resetOpenBLASThreads()
		G.Use(buildBLAS)
	case name == "gemm":
		G.Use(gemm.Implementation{})
	case name == "gonum":
		G.Use(gonum.Implementation{})
	default:
		return false
	}
	return true
}
