package tensorfile

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/pkg/errors"
)

// MaxHeaderSize is the largest JSON header, in bytes, that [Open] and
// [Decode] accept; a larger declared length means a corrupt file. It is the
// reference implementation's limit.
const MaxHeaderSize = 100_000_000

// metadataKey is the reserved header key of the string-to-string metadata.
const metadataKey = "__metadata__"

// Tensor is one named tensor: its dtype (for example "F32", "BF16"), its
// shape (empty for a scalar) and its elements as raw little-endian bytes in
// row-major order. len(Data) must be the product of Shape times the dtype's
// element size.
type Tensor struct {
	Name  string
	Dtype string
	Shape []int
	Data  []byte
}

// File is a parsed, validated safetensors file held in memory. Its methods
// return copies, so callers may modify what they get back.
type File struct {
	source   string // path for error messages, "" for in-memory data
	metadata map[string]string
	tensors  map[string]Tensor
	names    []string // sorted
}

// Open reads and validates the safetensors file at path. Errors name the
// file and, where one is at fault, the tensor.
func Open(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errors.Wrap(err, "tensorfile")
	}
	return decode(path, data, false)
}

// Decode parses and validates a whole safetensors file held in data. The
// returned File does not refer to data afterwards.
func Decode(data []byte) (*File, error) {
	return decode("", data, true)
}

// Names returns the names of all tensors, sorted.
func (f *File) Names() []string {
	return append([]string(nil), f.names...)
}

// Metadata returns a copy of the header's "__metadata__" pairs; it is empty,
// not nil, when the file has none.
func (f *File) Metadata() map[string]string {
	m := make(map[string]string, len(f.metadata))
	for k, v := range f.metadata {
		m[k] = v
	}
	return m
}

// Tensor returns a copy of the named tensor with its raw bytes, and whether
// the file has it.
func (f *File) Tensor(name string) (Tensor, bool) {
	t, ok := f.tensors[name]
	if !ok {
		return Tensor{}, false
	}
	t.Shape = append([]int{}, t.Shape...)
	t.Data = append([]byte{}, t.Data...)
	return t, true
}

// Shape returns a copy of the named tensor's shape (empty for a scalar), and
// whether the file has the tensor.
func (f *File) Shape(name string) ([]int, bool) {
	t, ok := f.tensors[name]
	if !ok {
		return nil, false
	}
	return append([]int{}, t.Shape...), true
}

// Dtype returns the named tensor's dtype, and whether the file has the
// tensor.
func (f *File) Dtype(name string) (string, bool) {
	t, ok := f.tensors[name]
	return t.Dtype, ok
}

// Float32 returns the named tensor's elements as float32 values, with its
// shape. F16, BF16 and F32 convert exactly (NaN payloads included); F64
// rounds to nearest even, overflowing to ±Inf. Other dtypes are an error.
func (f *File) Float32(name string) ([]float32, []int, error) {
	t, err := f.floatTensor(name, "float32")
	if err != nil {
		return nil, nil, err
	}
	return float32s(t.Dtype, t.Data, numElements(t)), append([]int{}, t.Shape...), nil
}

// Float64 returns the named tensor's elements as float64 values, with its
// shape. F16, BF16, F32 and F64 all convert exactly, NaN payloads included.
// Other dtypes are an error.
func (f *File) Float64(name string) ([]float64, []int, error) {
	t, err := f.floatTensor(name, "float64")
	if err != nil {
		return nil, nil, err
	}
	return float64s(t.Dtype, t.Data, numElements(t)), append([]int{}, t.Shape...), nil
}

func (f *File) floatTensor(name, to string) (Tensor, error) {
	t, ok := f.tensors[name]
	if !ok {
		return Tensor{}, errors.Errorf("%sno tensor %q", prefix(f.source), name)
	}
	if !isFloat(t.Dtype) {
		return Tensor{}, errors.Errorf("%stensor %q: dtype %s cannot be converted to %s", prefix(f.source), name, t.Dtype, to)
	}
	return t, nil
}

// numElements is the element count of a validated tensor.
func numElements(t Tensor) int {
	return len(t.Data) / dtypes[t.Dtype].size
}

// prefix starts every error message: the package and, if known, the file.
func prefix(source string) string {
	if source == "" {
		return "tensorfile: "
	}
	return "tensorfile: " + source + ": "
}

// entry is one tensor as the header describes it.
type entry struct {
	name       string
	dtype      string
	shape      []int
	begin, end int
}

// decode parses data, naming source in errors. If copyData is set, the
// tensors get their own copy of the data buffer instead of aliasing data.
func decode(source string, data []byte, copyData bool) (*File, error) {
	fail := func(format string, args ...any) (*File, error) {
		return nil, errors.Errorf(prefix(source)+format, args...)
	}
	if len(data) < 8 {
		return fail("%d bytes is too short for a safetensors file (need at least 8 for the header length)", len(data))
	}
	n := binary.LittleEndian.Uint64(data)
	if n > MaxHeaderSize {
		return fail("header length %d exceeds the limit of %d bytes", n, MaxHeaderSize)
	}
	if n > uint64(len(data)-8) {
		return fail("header length %d exceeds the %d bytes after the length prefix (truncated file?)", n, len(data)-8)
	}
	header := data[8 : 8+n]
	buf := data[8+n:]
	if !utf8.Valid(header) {
		return fail("header is not valid UTF-8")
	}
	meta, entries, err := parseHeader(header, len(buf))
	if err != nil {
		return nil, errors.Wrap(err, prefix(source)+"invalid header")
	}
	if err := checkCoverage(entries, len(buf)); err != nil {
		return nil, errors.Wrap(err, prefix(source)+"invalid data layout")
	}
	if copyData {
		buf = append([]byte(nil), buf...)
	}
	f := &File{
		source:   source,
		metadata: meta,
		tensors:  make(map[string]Tensor, len(entries)),
		names:    make([]string, 0, len(entries)),
	}
	for _, e := range entries {
		f.tensors[e.name] = Tensor{
			Name:  e.name,
			Dtype: e.dtype,
			Shape: e.shape,
			Data:  buf[e.begin:e.end:e.end],
		}
		f.names = append(f.names, e.name)
	}
	sort.Strings(f.names)
	return f, nil
}

// checkCoverage checks that the tensors' byte ranges tile the data buffer
// exactly: starting at 0, without overlaps or gaps, ending at its end.
func checkCoverage(entries []entry, bufLen int) error {
	sorted := append([]entry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.begin != b.begin {
			return a.begin < b.begin
		}
		if a.end != b.end {
			return a.end < b.end
		}
		return a.name < b.name
	})
	pos := 0
	prev := ""
	for _, e := range sorted {
		switch {
		case e.begin < pos:
			return errors.Errorf("tensor %q (bytes %d to %d) overlaps tensor %q (ending at byte %d)", e.name, e.begin, e.end, prev, pos)
		case e.begin > pos:
			return errors.Errorf("bytes %d to %d of the data buffer belong to no tensor (gap before tensor %q)", pos, e.begin, e.name)
		}
		pos = e.end
		prev = e.name
	}
	if pos != bufLen {
		return errors.Errorf("bytes %d to %d of the data buffer belong to no tensor (after the last tensor)", pos, bufLen)
	}
	return nil
}

// parseHeader parses the JSON header, rejecting duplicate keys, and checks
// each tensor's dtype, shape and offsets against a data buffer of bufLen
// bytes.
func parseHeader(header []byte, bufLen int) (map[string]string, []entry, error) {
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.UseNumber()
	if err := expectDelim(dec, '{', "header"); err != nil {
		return nil, nil, err
	}
	meta := map[string]string{}
	var entries []entry
	seen := map[string]bool{}
	for dec.More() {
		key, err := objectKey(dec)
		if err != nil {
			return nil, nil, err
		}
		if seen[key] {
			if key == metadataKey {
				return nil, nil, errors.Errorf("duplicate %q", metadataKey)
			}
			return nil, nil, errors.Errorf("duplicate tensor name %q", key)
		}
		seen[key] = true
		if key == metadataKey {
			if meta, err = parseMetadata(dec); err != nil {
				return nil, nil, errors.Wrap(err, metadataKey)
			}
			continue
		}
		e, err := parseEntry(dec, key, bufLen)
		if err != nil {
			return nil, nil, errors.Wrapf(err, "tensor %q", key)
		}
		entries = append(entries, e)
	}
	if err := expectDelim(dec, '}', "header"); err != nil {
		return nil, nil, err
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, nil, errors.Wrap(err, "after the header object")
		}
		return nil, nil, errors.Errorf("unexpected %v after the header object", tok)
	}
	return meta, entries, nil
}

// parseMetadata parses the "__metadata__" value: null or an object of
// string values with distinct keys.
func parseMetadata(dec *json.Decoder) (map[string]string, error) {
	meta := map[string]string{}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok == nil { // null
		return meta, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.Errorf("expected an object of strings, found %s", describe(tok))
	}
	for dec.More() {
		key, err := objectKey(dec)
		if err != nil {
			return nil, err
		}
		if _, dup := meta[key]; dup {
			return nil, errors.Errorf("duplicate key %q", key)
		}
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		s, ok := tok.(string)
		if !ok {
			return nil, errors.Errorf("key %q: expected a string value, found %s", key, describe(tok))
		}
		meta[key] = s
	}
	return meta, expectDelim(dec, '}', "metadata")
}

// parseEntry parses one tensor's {"dtype", "shape", "data_offsets"} object
// (unknown fields are skipped, as the reference implementation does) and
// checks it against a data buffer of bufLen bytes.
func parseEntry(dec *json.Decoder, name string, bufLen int) (entry, error) {
	e := entry{name: name}
	if err := expectDelim(dec, '{', "tensor info"); err != nil {
		return e, err
	}
	var offsets []int
	haveDtype, haveShape := false, false
	seen := map[string]bool{}
	for dec.More() {
		key, err := objectKey(dec)
		if err != nil {
			return e, err
		}
		if seen[key] {
			return e, errors.Errorf("duplicate field %q", key)
		}
		seen[key] = true
		switch key {
		case "dtype":
			tok, err := dec.Token()
			if err != nil {
				return e, err
			}
			s, ok := tok.(string)
			if !ok {
				return e, errors.Errorf("dtype: expected a string, found %s", describe(tok))
			}
			if _, known := dtypes[s]; !known {
				return e, errors.Errorf("unknown dtype %q", s)
			}
			e.dtype, haveDtype = s, true
		case "shape":
			if e.shape, err = intArray(dec, "shape", "dimension"); err != nil {
				return e, err
			}
			haveShape = true
		case "data_offsets":
			if offsets, err = intArray(dec, "data_offsets", "offset"); err != nil {
				return e, err
			}
			if len(offsets) != 2 {
				return e, errors.Errorf("data_offsets: expected [begin, end], found %d offsets", len(offsets))
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return e, err
			}
		}
	}
	if err := expectDelim(dec, '}', "tensor info"); err != nil {
		return e, err
	}
	switch {
	case !haveDtype:
		return e, errors.New(`missing "dtype"`)
	case !haveShape:
		return e, errors.New(`missing "shape"`)
	case offsets == nil:
		return e, errors.New(`missing "data_offsets"`)
	}
	e.begin, e.end = offsets[0], offsets[1]
	size, err := byteSize(e.dtype, e.shape)
	if err != nil {
		return e, err
	}
	if e.begin > e.end {
		return e, errors.Errorf("data_offsets [%d, %d]: begin is after end", e.begin, e.end)
	}
	if e.end > bufLen {
		return e, errors.Errorf("data_offsets [%d, %d] are out of range of the %d-byte data buffer", e.begin, e.end, bufLen)
	}
	if e.end-e.begin != size {
		return e, errors.Errorf("data_offsets [%d, %d] span %d bytes, but shape %v of %s needs %d", e.begin, e.end, e.end-e.begin, e.shape, e.dtype, size)
	}
	return e, nil
}

// byteSize returns the data size of a tensor of the given known dtype and
// shape, rejecting negative dimensions and sizes that overflow int.
func byteSize(dtype string, shape []int) (int, error) {
	n := dtypes[dtype].size
	for _, d := range shape {
		if d < 0 {
			return 0, errors.Errorf("shape %v has a negative dimension", shape)
		}
		if d != 0 && n > math.MaxInt/d {
			return 0, errors.Errorf("shape %v of %s: size overflows", shape, dtype)
		}
		n *= d
	}
	return n, nil
}

// intArray parses a JSON array of non-negative integers that fit in an int.
func intArray(dec *json.Decoder, what, elem string) ([]int, error) {
	if err := expectDelim(dec, '[', what); err != nil {
		return nil, err
	}
	out := []int{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, errors.Errorf("%s: expected an integer %s, found %s", what, elem, describe(tok))
		}
		v, err := strconv.ParseInt(string(num), 10, 0)
		switch {
		case err != nil && errors.Is(err, strconv.ErrRange):
			return nil, errors.Errorf("%s: %s %s is too large", what, elem, num)
		case err != nil:
			return nil, errors.Errorf("%s: %s %s is not an integer", what, elem, num)
		case v < 0:
			return nil, errors.Errorf("%s: %s %s is negative", what, elem, num)
		}
		out = append(out, int(v))
	}
	return out, expectDelim(dec, ']', what)
}

// objectKey reads the next key inside a JSON object.
func objectKey(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", err
	}
	key, ok := tok.(string)
	if !ok { // the decoder guarantees keys are strings; be safe anyway
		return "", errors.Errorf("expected an object key, found %s", describe(tok))
	}
	return key, nil
}

// expectDelim reads the next token and checks that it is the delimiter d.
func expectDelim(dec *json.Decoder, d json.Delim, what string) error {
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return errors.Errorf("%s: unexpected end of JSON", what)
		}
		return errors.Wrap(err, what)
	}
	if got, ok := tok.(json.Delim); !ok || got != d {
		want := map[json.Delim]string{'{': "an object", '}': "end of object", '[': "an array", ']': "end of array"}[d]
		return errors.Errorf("%s: expected %s, found %s", what, want, describe(tok))
	}
	return nil
}

// describe names a JSON token for an error message, cut short if long.
func describe(tok json.Token) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case json.Delim:
		return fmt.Sprintf("%q", string(v))
	case string:
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return fmt.Sprintf("string %q", v)
	case json.Number:
		s := string(v)
		if len(s) > 40 {
			s = s[:40] + "..."
		}
		return "number " + s
	default:
		return fmt.Sprintf("%v", v)
	}
}
