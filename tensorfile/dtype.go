package tensorfile

import (
	"encoding/binary"
	"math"

	"github.com/lilygo/lily/gemm"
)

// Dtype names of the floating-point types that [File.Float32] and
// [File.Float64] convert and that [FromFloat32] and [FromFloat64] produce.
const (
	F16  = "F16"  // IEEE 754 binary16 (half precision)
	BF16 = "BF16" // bfloat16: the top 16 bits of a binary32
	F32  = "F32"  // IEEE 754 binary32
	F64  = "F64"  // IEEE 754 binary64
)

// dtypeInfo describes one dtype: its element size in bytes and its rank in
// the reference implementation's Dtype enumeration, which is ordered by
// alignment and decides the order of tensors in a written file.
type dtypeInfo struct {
	size int
	rank int
}

// dtypes lists every dtype this package accepts. Tensors of any of them can
// be read and written as raw bytes; only the float ones convert.
var dtypes = map[string]dtypeInfo{
	"BOOL":    {1, 0},
	"U8":      {1, 1},
	"I8":      {1, 2},
	"F8_E5M2": {1, 3},
	"F8_E4M3": {1, 4},
	"I16":     {2, 5},
	"U16":     {2, 6},
	F16:       {2, 7},
	BF16:      {2, 8},
	"I32":     {4, 9},
	"U32":     {4, 10},
	F32:       {4, 11},
	F64:       {8, 12},
	"I64":     {8, 13},
	"U64":     {8, 14},
}

// f16ToF32Bits converts IEEE binary16 bits to the binary32 bits of the same
// value (gemm.F16's conversion). Every binary16 value, subnormals included,
// is exactly representable in binary32; NaN sign and payload are kept (a
// signaling NaN stays signaling).
func f16ToF32Bits(h uint16) uint32 { return gemm.F16(h).Float32Bits() }

// f32ToF64Bits converts binary32 bits to the binary64 bits of the same value
// without going through the FPU, so NaN payloads (and signaling NaNs) are
// kept bit for bit.
func f32ToF64Bits(b uint32) uint64 {
	sign := uint64(b>>31) << 63
	exp := uint64(b>>23) & 0xff
	mant := uint64(b) & 0x7fffff
	switch {
	case exp == 0xff: // inf or NaN
		return sign | 0x7ff<<52 | mant<<29
	case exp != 0: // normal
		return sign | (exp+1023-127)<<52 | mant<<29
	case mant == 0: // signed zero
		return sign
	}
	// binary32 subnormal: value = mant × 2^-149, normal in binary64.
	e := uint64(1023 - 127 + 1)
	for mant&0x800000 == 0 {
		mant <<= 1
		e--
	}
	return sign | e<<52 | (mant&0x7fffff)<<29
}

// toF32Bits decodes element i of raw little-endian data of the given 16- or
// 32-bit float dtype into binary32 bits.
func toF32Bits(dtype string, data []byte, i int) uint32 {
	switch dtype {
	case F16:
		return f16ToF32Bits(binary.LittleEndian.Uint16(data[2*i:]))
	case BF16:
		return uint32(binary.LittleEndian.Uint16(data[2*i:])) << 16
	default: // F32
		return binary.LittleEndian.Uint32(data[4*i:])
	}
}

// float32s decodes n elements of a float dtype into float32 values.
func float32s(dtype string, data []byte, n int) []float32 {
	out := make([]float32, n)
	if dtype == F64 {
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(data[8*i:])))
		}
		return out
	}
	for i := range out {
		out[i] = math.Float32frombits(toF32Bits(dtype, data, i))
	}
	return out
}

// float64s decodes n elements of a float dtype into float64 values, exactly.
func float64s(dtype string, data []byte, n int) []float64 {
	out := make([]float64, n)
	if dtype == F64 {
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(data[8*i:]))
		}
		return out
	}
	for i := range out {
		out[i] = math.Float64frombits(f32ToF64Bits(toF32Bits(dtype, data, i)))
	}
	return out
}

// isFloat reports whether dtype is one that float32s and float64s handle.
func isFloat(dtype string) bool {
	return dtype == F16 || dtype == BF16 || dtype == F32 || dtype == F64
}
