//go:build !amd64 || purego

package gemm

// Without the amd64 assembly (another architecture, or the purego build
// tag) the portable kernel is the only one.

func kernels32() []*microKernel[float32] { return []*microKernel[float32]{goKernel32} }
func kernels64() []*microKernel[float64] { return []*microKernel[float64]{goKernel64} }

var (
	kernel32 = goKernel32
	kernel64 = goKernel64
)

// transposeFast reports false: the portable build transposes in Go.
func transposeFast[T Float](dst []T, ldd int, src []T, lds, rows, cols int) bool { return false }

// transposeFastHalf reports false: the portable build transposes in Go.
func transposeFastHalf[T Float](dst []T, ldd int, src []BF16, lds, rows, cols int, alpha T) bool {
	return false
}
