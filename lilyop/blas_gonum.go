//go:build !openblas

package lilyop

// BLAS names the BLAS implementation this build uses: "openblas" when built
// with -tags openblas, "gonum" (pure Go) otherwise.
const BLAS = "gonum"
