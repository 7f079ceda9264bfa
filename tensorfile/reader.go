package tensorfile

import (
	"encoding/binary"
	"io"
	"os"
	"sort"
	"unicode/utf8"
	"unsafe"

	"github.com/lilygo/lily/gemm"
	"github.com/pkg/errors"
)

// Reader is a safetensors file opened for reading one tensor at a time:
// [OpenReader] reads and validates the header only, and each method reads
// the bytes of one tensor from disk when asked. It is how a checkpoint
// larger than memory's slack is loaded: [Reader.BF16] of a BF16 tensor
// reads the file's bytes straight into the returned slice, so loading a
// bfloat16 model into bfloat16 storage needs no more memory than the
// tensors themselves (about the file's size), where [Open] holds the whole
// file and a copy. Its methods may be called from several goroutines.
// Close it when done.
type Reader struct {
	file     *os.File
	source   string
	base     int64 // file offset of the data buffer
	metadata map[string]string
	entries  map[string]entry
	names    []string // sorted
}

// OpenReader opens the safetensors file at path and validates its header
// as [Open] does (dtypes, shapes, byte ranges that tile the data exactly).
// Errors name the file and, where one is at fault, the tensor.
func OpenReader(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errors.Wrap(err, "tensorfile")
	}
	r, err := newReader(path, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

func newReader(source string, f *os.File) (*Reader, error) {
	fail := func(format string, args ...any) (*Reader, error) {
		return nil, errors.Errorf(prefix(source)+format, args...)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, errors.Wrap(err, "tensorfile")
	}
	size := st.Size()
	if size < 8 {
		return fail("%d bytes is too short for a safetensors file (need at least 8 for the header length)", size)
	}
	var lb [8]byte
	if _, err := f.ReadAt(lb[:], 0); err != nil {
		return nil, errors.Wrap(err, prefix(source)+"reading the header length")
	}
	n := binary.LittleEndian.Uint64(lb[:])
	if n > MaxHeaderSize {
		return fail("header length %d exceeds the limit of %d bytes", n, MaxHeaderSize)
	}
	if n > uint64(size-8) {
		return fail("header length %d exceeds the %d bytes after the length prefix (truncated file?)", n, size-8)
	}
	header := make([]byte, n)
	if _, err := f.ReadAt(header, 8); err != nil {
		return nil, errors.Wrap(err, prefix(source)+"reading the header")
	}
	if !utf8.Valid(header) {
		return fail("header is not valid UTF-8")
	}
	bufLen := size - 8 - int64(n)
	if bufLen != int64(int(bufLen)) {
		return fail("%d bytes of data do not fit in an int", bufLen)
	}
	meta, entries, err := parseHeader(header, int(bufLen))
	if err != nil {
		return nil, errors.Wrap(err, prefix(source)+"invalid header")
	}
	if err := checkCoverage(entries, int(bufLen)); err != nil {
		return nil, errors.Wrap(err, prefix(source)+"invalid data layout")
	}
	r := &Reader{file: f, source: source, base: 8 + int64(n), metadata: meta, entries: make(map[string]entry, len(entries))}
	for _, e := range entries {
		r.entries[e.name] = e
		r.names = append(r.names, e.name)
	}
	sort.Strings(r.names)
	return r, nil
}

// Close closes the file.
func (r *Reader) Close() error { return errors.Wrap(r.file.Close(), "tensorfile") }

// Names returns the names of all tensors, sorted.
func (r *Reader) Names() []string { return append([]string(nil), r.names...) }

// Metadata returns a copy of the header's "__metadata__" pairs; it is
// empty, not nil, when the file has none.
func (r *Reader) Metadata() map[string]string {
	m := make(map[string]string, len(r.metadata))
	for k, v := range r.metadata {
		m[k] = v
	}
	return m
}

// Shape returns a copy of the named tensor's shape (empty for a scalar),
// and whether the file has the tensor.
func (r *Reader) Shape(name string) ([]int, bool) {
	e, ok := r.entries[name]
	if !ok {
		return nil, false
	}
	return append([]int{}, e.shape...), true
}

// Dtype returns the named tensor's dtype, and whether the file has the
// tensor.
func (r *Reader) Dtype(name string) (string, bool) {
	e, ok := r.entries[name]
	return e.dtype, ok
}

// Tensor reads the named tensor with its raw bytes.
func (r *Reader) Tensor(name string) (Tensor, error) {
	e, ok := r.entries[name]
	if !ok {
		return Tensor{}, errors.Errorf("%sno tensor %q", prefix(r.source), name)
	}
	data := make([]byte, e.end-e.begin)
	if err := r.readAt(e, data); err != nil {
		return Tensor{}, err
	}
	return Tensor{Name: name, Dtype: e.dtype, Shape: append([]int{}, e.shape...), Data: data}, nil
}

// readAt reads e's bytes into dst (len(dst) == e.end-e.begin).
func (r *Reader) readAt(e entry, dst []byte) error {
	if _, err := r.file.ReadAt(dst, r.base+int64(e.begin)); err != nil && !(err == io.EOF && len(dst) == 0) {
		return errors.Wrapf(err, "%stensor %q", prefix(r.source), e.name)
	}
	return nil
}

// floatTensor reads a float tensor, or returns an error naming it.
func (r *Reader) floatTensor(name, to string) (Tensor, error) {
	e, ok := r.entries[name]
	if !ok {
		return Tensor{}, errors.Errorf("%sno tensor %q", prefix(r.source), name)
	}
	if !isFloat(e.dtype) {
		return Tensor{}, errors.Errorf("%stensor %q: dtype %s cannot be converted to %s", prefix(r.source), name, e.dtype, to)
	}
	return r.Tensor(name)
}

// Float32 reads the named tensor as float32 values, with its shape, as
// [File.Float32] converts.
func (r *Reader) Float32(name string) ([]float32, []int, error) {
	t, err := r.floatTensor(name, "float32")
	if err != nil {
		return nil, nil, err
	}
	return float32s(t.Dtype, t.Data, numElements(t)), t.Shape, nil
}

// Float64 reads the named tensor as float64 values, with its shape, as
// [File.Float64] converts.
func (r *Reader) Float64(name string) ([]float64, []int, error) {
	t, err := r.floatTensor(name, "float64")
	if err != nil {
		return nil, nil, err
	}
	return float64s(t.Dtype, t.Data, numElements(t)), t.Shape, nil
}

// littleEndian reports whether this machine stores a uint16's low byte
// first, as safetensors does.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// BF16 reads the named tensor as bfloat16 values, with its shape, as
// [File.BF16] converts. A BF16 tensor's bytes are read from the file
// directly into the returned slice, with no intermediate buffer.
func (r *Reader) BF16(name string) ([]gemm.BF16, []int, error) {
	return readHalf(r, name, BF16, "bfloat16", decodeBF16)
}

// F16 reads the named tensor as float16 values, with its shape, as
// [File.F16] converts. An F16 tensor's bytes are read from the file
// directly into the returned slice, with no intermediate buffer.
func (r *Reader) F16(name string) ([]gemm.F16, []int, error) {
	return readHalf(r, name, F16, "float16", decodeF16)
}

// readHalf is Reader.BF16 or Reader.F16: a tensor of dtype is read
// straight into the result, one of another float dtype is converted by
// decode.
func readHalf[H gemm.BF16 | gemm.F16](r *Reader, name, dtype, to string, decode func([]H, string, []byte)) ([]H, []int, error) {
	e, ok := r.entries[name]
	if !ok {
		return nil, nil, errors.Errorf("%sno tensor %q", prefix(r.source), name)
	}
	if e.dtype != dtype {
		t, err := r.floatTensor(name, to)
		if err != nil {
			return nil, nil, err
		}
		out := make([]H, numElements(t))
		decode(out, t.Dtype, t.Data)
		return out, t.Shape, nil
	}
	out := make([]H, (e.end-e.begin)/2)
	if len(out) > 0 {
		raw := unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), 2*len(out))
		if err := r.readAt(e, raw); err != nil {
			return nil, nil, err
		}
		swapHalves(out)
	}
	return out, append([]int{}, e.shape...), nil
}

// swapHalves turns little-endian 16-bit values read into v into native
// ones (nothing to do on a little-endian machine).
func swapHalves[H gemm.BF16 | gemm.F16](v []H) {
	if !littleEndian {
		for i, x := range v {
			v[i] = x>>8 | x<<8
		}
	}
}

// BF16At reads len(dst) elements of the named BF16 tensor, starting at
// element start (in row-major order), into dst, straight from the file:
// for a caller that rearranges a large tensor (a transpose) piece by
// piece instead of holding it twice. A tensor of another dtype, or a range
// outside the tensor, is an error.
func (r *Reader) BF16At(name string, start int, dst []gemm.BF16) error {
	return halfAt(r, name, BF16, "BF16At", start, dst)
}

// F16At is [Reader.BF16At] for an F16 tensor.
func (r *Reader) F16At(name string, start int, dst []gemm.F16) error {
	return halfAt(r, name, F16, "F16At", start, dst)
}

// halfAt is BF16At or F16At (fn) for a tensor of dtype.
func halfAt[H gemm.BF16 | gemm.F16](r *Reader, name, dtype, fn string, start int, dst []H) error {
	e, ok := r.entries[name]
	if !ok {
		return errors.Errorf("%sno tensor %q", prefix(r.source), name)
	}
	if e.dtype != dtype {
		return errors.Errorf("%stensor %q: dtype %s, %s reads %s only", prefix(r.source), name, e.dtype, fn, dtype)
	}
	n := (e.end - e.begin) / 2
	if start < 0 || start > n || len(dst) > n-start {
		return errors.Errorf("%stensor %q: elements %d to %d are outside its %d", prefix(r.source), name, start, start+len(dst), n)
	}
	if len(dst) == 0 {
		return nil
	}
	part := e
	part.begin += 2 * start
	part.end = part.begin + 2*len(dst)
	if err := r.readAt(part, unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 2*len(dst))); err != nil {
		return err
	}
	swapHalves(dst)
	return nil
}
