package tensorfile

import (
	"encoding/binary"
	"math"

	"github.com/lilygo/lily/gemm"
)

// FromBF16 returns a BF16 tensor holding data, bit for bit, with the given
// shape. The shape is copied but not checked here: [Write] and [Encode]
// reject a tensor whose data does not match its shape.
func FromBF16(name string, shape []int, data []gemm.BF16) Tensor {
	b := make([]byte, 2*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	return Tensor{Name: name, Dtype: BF16, Shape: append([]int{}, shape...), Data: b}
}

// BF16 returns the named tensor's elements as bfloat16 values, with its
// shape: a BF16 tensor's exactly, an F16, F32 or F64 tensor's rounded to the
// nearest bfloat16, ties to even (F64 through float32, as PyTorch's
// .to(torch.bfloat16) of a float64 tensor; F16 and F32 round once). Other
// dtypes are an error.
func (f *File) BF16(name string) ([]gemm.BF16, []int, error) {
	t, err := f.floatTensor(name, "bfloat16")
	if err != nil {
		return nil, nil, err
	}
	out := make([]gemm.BF16, numElements(t))
	decodeBF16(out, t.Dtype, t.Data)
	return out, append([]int{}, t.Shape...), nil
}

// decodeBF16 fills out from raw little-endian data of a float dtype,
// rounding to bfloat16 where the dtype is wider.
func decodeBF16(out []gemm.BF16, dtype string, data []byte) {
	switch dtype {
	case BF16:
		for i := range out {
			out[i] = gemm.BF16(binary.LittleEndian.Uint16(data[2*i:]))
		}
	case F64:
		for i := range out {
			out[i] = gemm.ToBF16(float32(math.Float64frombits(binary.LittleEndian.Uint64(data[8*i:]))))
		}
	default: // F16, F32
		for i := range out {
			out[i] = gemm.ToBF16(math.Float32frombits(toF32Bits(dtype, data, i)))
		}
	}
}

// FromF16 returns an F16 tensor holding data, bit for bit, with the given
// shape. The shape is copied but not checked here, as by [FromBF16].
func FromF16(name string, shape []int, data []gemm.F16) Tensor {
	b := make([]byte, 2*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	return Tensor{Name: name, Dtype: F16, Shape: append([]int{}, shape...), Data: b}
}

// F16 returns the named tensor's elements as float16 values, with its
// shape: an F16 tensor's exactly, a BF16, F32 or F64 tensor's rounded to
// the nearest float16, ties to even, magnitudes from 65520 up to infinity
// (F64 through float32, as [File.BF16] does; BF16 and F32 round once).
// Other dtypes are an error.
func (f *File) F16(name string) ([]gemm.F16, []int, error) {
	t, err := f.floatTensor(name, "float16")
	if err != nil {
		return nil, nil, err
	}
	out := make([]gemm.F16, numElements(t))
	decodeF16(out, t.Dtype, t.Data)
	return out, append([]int{}, t.Shape...), nil
}

// decodeF16 fills out from raw little-endian data of a float dtype,
// rounding to float16 where the dtype is not F16.
func decodeF16(out []gemm.F16, dtype string, data []byte) {
	switch dtype {
	case F16:
		for i := range out {
			out[i] = gemm.F16(binary.LittleEndian.Uint16(data[2*i:]))
		}
	case F64:
		for i := range out {
			out[i] = gemm.ToF16(float32(math.Float64frombits(binary.LittleEndian.Uint64(data[8*i:]))))
		}
	default: // BF16, F32
		for i := range out {
			out[i] = gemm.ToF16(math.Float32frombits(toF32Bits(dtype, data, i)))
		}
	}
}
