package gemm

import (
	"math"

	"gonum.org/v1/gonum/blas"
)

// BF16 is a bfloat16 number: the upper 16 bits of an IEEE 754 binary32,
// the format Hugging Face checkpoints of large models ship in. Converting
// to float32 is exact.
type BF16 uint16

// Float32 is h's exact float32 value.
func (h BF16) Float32() float32 { return math.Float32frombits(uint32(h) << 16) }

// ToBF16 rounds f to the nearest bfloat16, ties to even, as PyTorch's
// tensor.to(torch.bfloat16) does; a NaN stays a (quiet) NaN.
func ToBF16(f float32) BF16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 { // NaN: keep the sign, set the quiet bit
		return BF16(u>>16 | 0x40)
	}
	u += 0x7fff + (u>>16)&1
	return BF16(u >> 16)
}

// SgemmBF16 is Sgemm with B in bfloat16: C = alpha·op(A)·op(B) + beta·C,
// A and C float32. B's values are widened to float32 while its blocks are
// packed, so the product runs on the same kernels as Sgemm, at the same
// speed, and equals Sgemm on B's float32 values bit for bit. It is for
// frozen weights kept in half the memory: y = x·W (B = W) and the input
// gradient dY·Wᵀ (B = W, tB = Trans).
func SgemmBF16(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []BF16, ldb int, beta float32, c []float32, ldc int) {
	multiplyBF16(kernel32, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// multiplyBF16 is SgemmBF16 with kern.
func multiplyBF16(kern *microKernel[float32], tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []BF16, ldb int, beta float32, c []float32, ldc int) {
	p := problem[float32]{m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, bh: b, ldb: ldb, beta: beta, c: c, ldc: ldc}
	solve(kern, tA, tB, p, len(b))
}

// packBHalf is packB for a bfloat16 B, widening to T while packing (the
// columns of a partial panel past nb are left as they were, as packB's); a
// transposed B is packed with AVX2 8×8 transposes that widen and scale on
// the way (transposeFastHalf) where the CPU has them.
func packBHalf[T Float](dst []T, trans bool, b []BF16, ldb, pc, jc, kb, nb, nr int, alpha T) {
	for jr := 0; jr < nb; jr += nr {
		cols := min(nr, nb-jr)
		panel := dst[jr*kb : jr*kb+nr*kb]
		if !trans {
			for p := 0; p < kb; p++ {
				d := panel[p*nr : p*nr+nr]
				for j, v := range b[(pc+p)*ldb+jc+jr:][:cols] {
					d[j] = alpha * T(v.Float32())
				}
			}
			continue
		}
		if transposeFastHalf(panel, nr, b[(jc+jr)*ldb+pc:], ldb, cols, kb, alpha) {
			continue
		}
		for j := 0; j < cols; j++ {
			d := panel[j:]
			for p, v := range b[(jc+jr+j)*ldb+pc:][:kb] {
				d[p*nr] = alpha * T(v.Float32())
			}
		}
	}
}

// packBFloat16 is packBHalf for a float16 B, always in Go. It is a copy
// rather than one function generic over both halves: with BF16 and F16
// sharing one instantiation, bfloat16 packing was measured 20% slower.
func packBFloat16[T Float](dst []T, trans bool, b []F16, ldb, pc, jc, kb, nb, nr int, alpha T) {
	for jr := 0; jr < nb; jr += nr {
		cols := min(nr, nb-jr)
		panel := dst[jr*kb : jr*kb+nr*kb]
		if !trans {
			for p := 0; p < kb; p++ {
				d := panel[p*nr : p*nr+nr]
				for j, v := range b[(pc+p)*ldb+jc+jr:][:cols] {
					d[j] = alpha * T(v.Float32())
				}
			}
			continue
		}
		for j := 0; j < cols; j++ {
			d := panel[j:]
			for p, v := range b[(jc+jr+j)*ldb+pc:][:kb] {
				d[p*nr] = alpha * T(v.Float32())
			}
		}
	}
}
