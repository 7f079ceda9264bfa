package tensorfile

import (
	"encoding/binary"
	"math"
	"sort"
	"unicode/utf8"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/pkg/errors"
)

// FromFloat32 returns an F32 tensor holding data, bit for bit (NaN payloads
// included), with the given shape. The shape is copied but not checked here:
// [Write] and [Encode] reject a tensor whose data does not match its shape.
func FromFloat32(name string, shape []int, data []float32) Tensor {
	b := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return Tensor{Name: name, Dtype: F32, Shape: append([]int{}, shape...), Data: b}
}

// FromFloat64 returns an F64 tensor holding data, bit for bit (NaN payloads
// included), with the given shape. The shape is copied but not checked here:
// [Write] and [Encode] reject a tensor whose data does not match its shape.
func FromFloat64(name string, shape []int, data []float64) Tensor {
	b := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(v))
	}
	return Tensor{Name: name, Dtype: F64, Shape: append([]int{}, shape...), Data: b}
}

// Encode returns the safetensors file holding tensors and metadata (which
// may be nil). It fails if a tensor has an unknown dtype, a negative
// dimension or data that does not match its shape, if two tensors share a
// name, if a name is "__metadata__", if a name or metadata string is not
// valid UTF-8, or if the header would exceed [MaxHeaderSize].
//
// The output depends only on the set of tensors and the metadata, not on
// their order: tensors are laid out by decreasing dtype alignment, then by
// name, as the reference implementation does, so every tensor is aligned
// to its element size within the data buffer.
func Encode(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	order, err := checkTensors(tensors, metadata)
	if err != nil {
		return nil, errors.Wrap(err, "tensorfile: encode")
	}
	out, err := encode(tensors, order, metadata)
	if err != nil {
		return nil, errors.Wrap(err, "tensorfile: encode")
	}
	return out, nil
}

// Write atomically writes tensors and metadata (which may be nil) to a
// safetensors file at path, as [Encode] lays them out, with
// atomicfile.WriteBytes: a temporary file in the same directory, synced and
// renamed over path, so readers see either the old file or the complete new
// one. On any error an existing file at path is left untouched. The file
// gets mode 0644.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	order, err := checkTensors(tensors, metadata)
	if err != nil {
		return errors.Wrapf(err, "tensorfile: write %s", path)
	}
	data, err := encode(tensors, order, metadata)
	if err != nil {
		return errors.Wrapf(err, "tensorfile: write %s", path)
	}
	return errors.Wrap(atomicfile.WriteBytes(path, data), "tensorfile")
}

// checkTensors validates tensors and metadata for writing and returns the
// indices of tensors in file order.
func checkTensors(tensors []Tensor, metadata map[string]string) ([]int, error) {
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, errors.Errorf("metadata key %q: key and value must be valid UTF-8", k)
		}
	}
	seen := make(map[string]bool, len(tensors))
	order := make([]int, len(tensors))
	for i, t := range tensors {
		order[i] = i
		switch {
		case t.Name == metadataKey:
			return nil, errors.Errorf("tensor name %q is reserved", metadataKey)
		case !utf8.ValidString(t.Name):
			return nil, errors.Errorf("tensor name %q is not valid UTF-8", t.Name)
		case seen[t.Name]:
			return nil, errors.Errorf("duplicate tensor name %q", t.Name)
		}
		seen[t.Name] = true
		if _, ok := dtypes[t.Dtype]; !ok {
			return nil, errors.Errorf("tensor %q: unknown dtype %q", t.Name, t.Dtype)
		}
		size, err := byteSize(t.Dtype, t.Shape)
		if err != nil {
			return nil, errors.Wrapf(err, "tensor %q", t.Name)
		}
		if len(t.Data) != size {
			return nil, errors.Errorf("tensor %q: shape %v of %s needs %d bytes of data, got %d", t.Name, t.Shape, t.Dtype, size, len(t.Data))
		}
	}
	sort.Slice(order, func(i, j int) bool {
		a, b := tensors[order[i]], tensors[order[j]]
		if ra, rb := dtypes[a.Dtype].rank, dtypes[b.Dtype].rank; ra != rb {
			return ra > rb
		}
		return a.Name < b.Name
	})
	return order, nil
}

// encode lays out validated tensors in the given order, with a compact JSON
// header in the reference implementation's style: "__metadata__" first
// (keys sorted), then the tensors in data order, each with its fields in the
// order dtype, shape, data_offsets; padded with spaces to a multiple of 8
// (streamHeader). It fails if the header would exceed MaxHeaderSize, which
// readers refuse.
func encode(tensors []Tensor, order []int, metadata map[string]string) ([]byte, error) {
	specs := make([]Spec, len(tensors))
	sizes := make([]int, len(tensors))
	total := 0
	for i, t := range tensors {
		specs[i] = Spec{Name: t.Name, Dtype: t.Dtype, Shape: t.Shape}
		sizes[i] = len(t.Data)
		total += len(t.Data)
	}
	h, err := streamHeader(specs, sizes, order, metadata)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(h)+total)
	out = append(out, h...)
	for _, idx := range order {
		out = append(out, tensors[idx].Data...)
	}
	return out, nil
}

// appendJSONString appends s, valid UTF-8, as a JSON string escaped the way
// serde_json (the reference implementation's encoder) does it: only '"',
// '\\' and control characters are escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\f':
			b = append(b, '\\', 'f')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
