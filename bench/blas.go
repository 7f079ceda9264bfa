package bench

import (
	"github.com/lilygo/lily/lilyop"
	"gonum.org/v1/gonum/blas/gonum"
	G "gorgonia.org/gorgonia"
)

// BuildBLAS is the BLAS this binary was built with: "openblas" (-tags
// openblas) or "gonum" (pure Go).
const BuildBLAS = lilyop.BLAS

// buildBLAS is the implementation Gorgonia used at start-up.
var buildBLAS = G.WhichBLAS()

// UseBLAS switches Gorgonia (and every op of this module) to name's BLAS:
// "gonum" (pure Go, available in every build) or BuildBLAS. It is global.
func UseBLAS(name string) bool {
	switch {
	case name == BuildBLAS:
		resetOpenBLASThreads()
		G.Use(buildBLAS)
		return true
	case name == "gonum":
		G.Use(gonum.Implementation{})
		return true
	}
	return false
}
