//go:build amd64 && !purego

package gemm

import "golang.org/x/sys/cpu"

//go:generate go run ./asmgen -out kernels_amd64.s

// The assembly micro-kernels (kernels_amd64.s, see asmgen). AVX2 kernels
// take the lane masks of the row's two vectors for edge tiles.

//go:noescape
func sgemmAVX512(kc int, a, b, c *float32, ldc int, beta float32, accumulate, mr, nr int)

//go:noescape
func dgemmAVX512(kc int, a, b, c *float64, ldc int, beta float64, accumulate, mr, nr int)

//go:noescape
func sgemmAVX2(kc int, a, b, c *float32, ldc int, beta float32, accumulate, mr, nr int, m0, m1 *int32)

//go:noescape
func dgemmAVX2(kc int, a, b, c *float64, ldc int, beta float64, accumulate, mr, nr int, m0, m1 *int64)

// laneMask32 and laneMask64 hold a vector's worth of all-ones lanes then a
// vector's worth of zeros: the 8 (4) lanes starting at index 8−v (4−v)
// enable the first v lanes of a ymm vector.
var (
	laneMask32 = [16]int32{-1, -1, -1, -1, -1, -1, -1, -1}
	laneMask64 = [8]int64{-1, -1, -1, -1}
)

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

var (
	avx512Kernel32 = newKernel("avx512", 14, 32, func(kc int, a, b, c *float32, ldc int, beta float32, accumulate bool, mr, nr int) {
		sgemmAVX512(kc, a, b, c, ldc, beta, b2i(accumulate), mr, nr)
	})
	avx512Kernel64 = newKernel("avx512", 14, 16, func(kc int, a, b, c *float64, ldc int, beta float64, accumulate bool, mr, nr int) {
		dgemmAVX512(kc, a, b, c, ldc, beta, b2i(accumulate), mr, nr)
	})
	avx2Kernel32 = newKernel("avx2", 6, 16, func(kc int, a, b, c *float32, ldc int, beta float32, accumulate bool, mr, nr int) {
		v0 := min(nr, 8)
		sgemmAVX2(kc, a, b, c, ldc, beta, b2i(accumulate), mr, nr, &laneMask32[8-v0], &laneMask32[8-(nr-v0)])
	})
	avx2Kernel64 = newKernel("avx2", 6, 8, func(kc int, a, b, c *float64, ldc int, beta float64, accumulate bool, mr, nr int) {
		v0 := min(nr, 4)
		dgemmAVX2(kc, a, b, c, ldc, beta, b2i(accumulate), mr, nr, &laneMask64[4-v0], &laneMask64[4-(nr-v0)])
	})
)

var (
	hasAVX512 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ
	hasAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA
)

// kernels32 and kernels64 list the kernels this CPU can run, fastest first;
// the first is the one the package uses.
func kernels32() []*microKernel[float32] {
	var ks []*microKernel[float32]
	if hasAVX512 {
		ks = append(ks, avx512Kernel32)
	}
	if hasAVX2 {
		ks = append(ks, avx2Kernel32)
	}
	return append(ks, goKernel32)
}

func kernels64() []*microKernel[float64] {
	var ks []*microKernel[float64]
	if hasAVX512 {
		ks = append(ks, avx512Kernel64)
	}
	if hasAVX2 {
		ks = append(ks, avx2Kernel64)
	}
	return append(ks, goKernel64)
}

var (
	kernel32 = kernels32()[0]
	kernel64 = kernels64()[0]
)
