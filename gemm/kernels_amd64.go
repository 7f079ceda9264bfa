//go:build amd64 && !purego

package gemm

import "golang.org/x/sys/cpu"

//go:generate go run ./asmgen -out kernels_amd64.s

// The assembly micro-kernels (kernels_amd64.s, see asmgen). A's MR values
// for one k step are contiguous and successive steps as elements apart;
// B's NR values likewise, bs apart.
// AVX2 kernels take the lane masks of the row's two vectors for edge tiles.

//go:noescape
func sgemmAVX512(kc int, a *float32, as int, b *float32, bs int, c *float32, ldc int, beta float32, accumulate, mr, nr int)

//go:noescape
func dgemmAVX512(kc int, a *float64, as int, b *float64, bs int, c *float64, ldc int, beta float64, accumulate, mr, nr int)

//go:noescape
func sgemmAVX2(kc int, a *float32, as int, b *float32, bs int, c *float32, ldc int, beta float32, accumulate, mr, nr int, m0, m1 *int32)

//go:noescape
func dgemmAVX2(kc int, a *float64, as int, b *float64, bs int, c *float64, ldc int, beta float64, accumulate, mr, nr int, m0, m1 *int64)

// The BF16 kernels read a bfloat16 B in place (steps bs elements apart),
// widening it to float32 as it is loaded.

//go:noescape
func sgemmAVX512BF16(kc int, a *float32, as int, b *BF16, bs int, c *float32, ldc int, beta float32, accumulate, mr, nr int)

//go:noescape
func sgemmAVX2BF16(kc int, a *float32, as int, b *BF16, bs int, c *float32, ldc int, beta float32, accumulate, mr, nr int, m0, m1 *int32)

// The direct kernels read MR rows of A in place (row stride lda) instead of
// a packed panel.

//go:noescape
func sgemmAVX512Direct(kc int, a *float32, lda int, b *float32, bs int, c *float32, ldc int, beta float32, accumulate, nr int)

//go:noescape
func dgemmAVX512Direct(kc int, a *float64, lda int, b *float64, bs int, c *float64, ldc int, beta float64, accumulate, nr int)

//go:noescape
func sgemmAVX2Direct(kc int, a *float32, lda int, b *float32, bs int, c *float32, ldc int, beta float32, accumulate, nr int, m0, m1 *int32)

//go:noescape
func dgemmAVX2Direct(kc int, a *float64, lda int, b *float64, bs int, c *float64, ldc int, beta float64, accumulate, nr int, m0, m1 *int64)

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
	avx512Kernel32 = newKernel("avx512", 14, 32, func(kc int, a *float32, as int, b *float32, bs int, c *float32, ldc int, beta float32, accumulate bool, mr, nr int) {
		sgemmAVX512(kc, a, as, b, bs, c, ldc, beta, b2i(accumulate), mr, nr)
	}, func(kc int, a *float32, lda int, b *float32, bs int, c *float32, ldc int, beta float32, accumulate bool, nr int) {
		sgemmAVX512Direct(kc, a, lda, b, bs, c, ldc, beta, b2i(accumulate), nr)
	}).withBF16(func(kc int, a *float32, as int, b *BF16, bs int, c *float32, ldc int, beta float32, accumulate bool, mr, nr int) {
		sgemmAVX512BF16(kc, a, as, b, bs, c, ldc, beta, b2i(accumulate), mr, nr)
	})
	avx512Kernel64 = newKernel("avx512", 14, 16, func(kc int, a *float64, as int, b *float64, bs int, c *float64, ldc int, beta float64, accumulate bool, mr, nr int) {
		dgemmAVX512(kc, a, as, b, bs, c, ldc, beta, b2i(accumulate), mr, nr)
	}, func(kc int, a *float64, lda int, b *float64, bs int, c *float64, ldc int, beta float64, accumulate bool, nr int) {
		dgemmAVX512Direct(kc, a, lda, b, bs, c, ldc, beta, b2i(accumulate), nr)
	})
	avx2Kernel32 = newKernel("avx2", 6, 16, func(kc int, a *float32, as int, b *float32, bs int, c *float32, ldc int, beta float32, accumulate bool, mr, nr int) {
		m0, m1 := masks32(nr)
		sgemmAVX2(kc, a, as, b, bs, c, ldc, beta, b2i(accumulate), mr, nr, m0, m1)
	}, func(kc int, a *float32, lda int, b *float32, bs int, c *float32, ldc int, beta float32, accumulate bool, nr int) {
		m0, m1 := masks32(nr)
		sgemmAVX2Direct(kc, a, lda, b, bs, c, ldc, beta, b2i(accumulate), nr, m0, m1)
	}).withBF16(func(kc int, a *float32, as int, b *BF16, bs int, c *float32, ldc int, beta float32, accumulate bool, mr, nr int) {
		m0, m1 := masks32(nr)
		sgemmAVX2BF16(kc, a, as, b, bs, c, ldc, beta, b2i(accumulate), mr, nr, m0, m1)
	})
	avx2Kernel64 = newKernel("avx2", 6, 8, func(kc int, a *float64, as int, b *float64, bs int, c *float64, ldc int, beta float64, accumulate bool, mr, nr int) {
		m0, m1 := masks64(nr)
		dgemmAVX2(kc, a, as, b, bs, c, ldc, beta, b2i(accumulate), mr, nr, m0, m1)
	}, func(kc int, a *float64, lda int, b *float64, bs int, c *float64, ldc int, beta float64, accumulate bool, nr int) {
		m0, m1 := masks64(nr)
		dgemmAVX2Direct(kc, a, lda, b, bs, c, ldc, beta, b2i(accumulate), nr, m0, m1)
	})
)

// masks32 and masks64 point at the lane masks of a 2-vector row of nr
// valid elements.
func masks32(nr int) (m0, m1 *int32) {
	v0 := min(nr, 8)
	return &laneMask32[8-v0], &laneMask32[8-(nr-v0)]
}

func masks64(nr int) (m0, m1 *int64) {
	v0 := min(nr, 4)
	return &laneMask64[4-v0], &laneMask64[4-(nr-v0)]
}

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

// transpose8x8s and transpose4x4d transpose blocks consecutive 8×8 blocks
// of float32 and 4×4 blocks of float64 (transpose_amd64.s):
// dst[(8b+c)·ldd + r] = src[r·lds + 8b + c].
//
//go:noescape
func transpose8x8s(src *float32, lds int, dst *float32, ldd int, blocks int)

//go:noescape
func transpose4x4d(src *float64, lds int, dst *float64, ldd int, blocks int)

// transpose8x8h is transpose8x8s for a bfloat16 source, widened and
// scaled by alpha on the way (transpose_amd64.s).
//
//go:noescape
func transpose8x8h(src *BF16, lds int, dst *float32, ldd int, blocks int, alpha float32)

// transposeFastHalf sets dst[c·ldd + r] = alpha·src[r·lds + c] for r <
// rows, c < cols, src in bfloat16, as transposeFast does, and reports
// whether it could: AVX2, a float32 dst, and at least 8 rows and columns.
func transposeFastHalf[T Float](dst []T, ldd int, src []BF16, lds, rows, cols int, alpha T) bool {
	d, ok := any(dst).([]float32)
	if !hasAVX2 || !ok || rows < 8 || cols < 8 {
		return false
	}
	a := float32(alpha)
	_ = src[(rows-1)*lds+cols-1]
	_ = d[(cols-1)*ldd+rows-1]
	for r := 0; ; r += 8 {
		r = min(r, rows-8)
		transpose8x8h(&src[r*lds], lds, &d[r], ldd, cols/8, a)
		if cols%8 != 0 {
			transpose8x8h(&src[r*lds+cols-8], lds, &d[(cols-8)*ldd+r], ldd, 1, a)
		}
		if r+8 >= rows {
			return true
		}
	}
}

// transposeFast sets dst[c·ldd + r] = src[r·lds + c] for r < rows, c < cols
// with AVX transposes of 8×8 float32 or 4×4 float64 blocks, overlapping
// the last block of rows and of columns with the one before (the overlap
// is written twice with the same values), and reports whether it could:
// AVX2, and at least a block's worth of rows and columns.
func transposeFast[T Float](dst []T, ldd int, src []T, lds, rows, cols int) bool {
	if !hasAVX2 {
		return false
	}
	switch d := any(dst).(type) {
	case []float32:
		return transposeBlocks(d, ldd, any(src).([]float32), lds, rows, cols, 8, transpose8x8s)
	case []float64:
		return transposeBlocks(d, ldd, any(src).([]float64), lds, rows, cols, 4, transpose4x4d)
	}
	return false
}

// transposeBlocks is transposeFast with an assembly routine for blocks of
// bs×bs elements.
func transposeBlocks[T Float](d []T, ldd int, s []T, lds, rows, cols, bs int, f func(src *T, lds int, dst *T, ldd int, blocks int)) bool {
	if rows < bs || cols < bs {
		return false
	}
	_ = s[(rows-1)*lds+cols-1]
	_ = d[(cols-1)*ldd+rows-1]
	for r := 0; ; r += bs {
		r = min(r, rows-bs)
		f(&s[r*lds], lds, &d[r], ldd, cols/bs)
		if cols%bs != 0 {
			f(&s[r*lds+cols-bs], lds, &d[(cols-bs)*ldd+r], ldd, 1)
		}
		if r+bs >= rows {
			return true
		}
	}
}
