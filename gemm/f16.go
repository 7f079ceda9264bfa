package gemm

import (
	"math"

	"gonum.org/v1/gonum/blas"
)

// F16 is an IEEE 754 binary16 (half precision) number, the "F16" dtype of
// safetensors checkpoints. Converting to float32 is exact.
type F16 uint16

// Float32 is h's exact float32 value: subnormals become normal float32
// values, infinities stay infinite, and a NaN keeps its sign and payload.
func (h F16) Float32() float32 { return math.Float32frombits(h.bits32()) }

// bits32 is the binary32 encoding of h's value.
func (h F16) bits32() uint32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf or NaN
		return sign | 0xff<<23 | mant<<13
	case exp != 0: // normal
		return sign | (exp+127-15)<<23 | mant<<13
	case mant == 0: // signed zero
		return sign
	}
	// Subnormal: value = mant × 2^-24. Shift the leading 1 up to bit 10
	// (the implicit bit of a normal number), lowering the exponent.
	e := uint32(127 - 15 + 1)
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return sign | e<<23 | (mant&0x3ff)<<13
}

// Float32Bits is the binary32 encoding of h's value, computed without the
// FPU, so that a signaling NaN stays signaling bit for bit.
func (h F16) Float32Bits() uint32 { return h.bits32() }

// ToF16 rounds f to the nearest float16, ties to even, as PyTorch's
// tensor.to(torch.float16) does: magnitudes from 65520 up become infinite,
// those below 2^-14 round to subnormals (or zero), and a NaN stays a
// (quiet) NaN with its sign.
func ToF16(f float32) F16 {
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	a := u & 0x7fffffff
	switch {
	case a > 0x7f800000: // NaN: keep the sign and the top payload bits, set the quiet bit
		return F16(sign | 0x7e00 | uint16(a>>13)&0x3ff)
	case a >= 0x477ff000: // 65520 (halfway past 65504, to even) and up, inf included
		return F16(sign | 0x7c00)
	case a >= 0x38800000: // normal: rebias, round on the 13 dropped bits
		a -= (127 - 15) << 23
		a += 0xfff + (a>>13)&1
		return F16(sign | uint16(a>>13))
	}
	e := a >> 23
	if e < 102 { // below 2^-25: rounds to zero
		return F16(sign)
	}
	// Subnormal: the result's mantissa is round(value × 2^24) = round(m ×
	// 2^(e-126)) for the 24-bit significand m; a carry into bit 10 gives
	// the smallest normal, as it should.
	m := a&0x7fffff | 0x800000
	shift := 126 - e
	r, rem, half := m>>shift, m&(1<<shift-1), uint32(1)<<(shift-1)
	if rem > half || rem == half && r&1 == 1 {
		r++
	}
	return F16(sign | uint16(r))
}

// SgemmF16 is Sgemm with B in float16: C = alpha·op(A)·op(B) + beta·C, A
// and C float32. B's values are widened to float32 while its blocks are
// packed (always: there is no in-place float16 kernel), so the product
// equals Sgemm on B's float32 values bit for bit. Like [SgemmBF16] it is
// for frozen weights kept in half the memory.
func SgemmF16(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []F16, ldb int, beta float32, c []float32, ldc int) {
	multiplyF16(kernel32, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// multiplyF16 is SgemmF16 with kern.
func multiplyF16(kern *microKernel[float32], tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []F16, ldb int, beta float32, c []float32, ldc int) {
	p := problem[float32]{m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, bf: b, ldb: ldb, beta: beta, c: c, ldc: ldc}
	solve(kern, tA, tB, p, len(b))
}
