//go:build openblas

package bench

// #cgo LDFLAGS: -lopenblas
// void openblas_set_num_threads(int);
import "C"

import (
	"runtime"

	"gonum.org/v1/netlib/blas/netlib"
	G "gorgonia.org/gorgonia"
)

// UseOpenBLASThreads switches Gorgonia to OpenBLAS with OpenBLAS's own
// thread pool of GOMAXPROCS threads, instead of the build's default
// (single-threaded OpenBLAS with large GEMMs split across goroutines), for
// comparing the two; UseBLAS(BuildBLAS) switches back. It reports false in
// a build without OpenBLAS.
func UseOpenBLASThreads() bool {
	C.openblas_set_num_threads(C.int(runtime.GOMAXPROCS(0)))
	G.Use(netlib.Implementation{})
	return true
}

func resetOpenBLASThreads() { C.openblas_set_num_threads(1) }
