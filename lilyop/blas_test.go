package lilyop

import (
	"fmt"
	"testing"

	G "gorgonia.org/gorgonia"
)

// The build tag decides which BLAS Gorgonia (and so every op here) uses.
func TestBLASMatchesBuild(t *testing.T) {
	impl := fmt.Sprintf("%T", G.WhichBLAS())
	want := map[string]string{"gemm": "gemm.Implementation", "openblas": "lilyop.openBLAS"}[BLAS]
	if impl != want {
		t.Fatalf("build says %s, Gorgonia uses %s", BLAS, impl)
	}
}
