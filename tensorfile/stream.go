package tensorfile

import (
	"encoding/binary"
	"io"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/pkg/errors"
)

// Spec is a tensor to be written by [WriteStream]: its name, dtype and
// shape, without its data.
type Spec struct {
	Name  string
	Dtype string
	Shape []int
}

// StreamOrder returns the indices of specs in the order [WriteStream] lays
// their data out (and asks for it): by decreasing dtype alignment, then by
// name, as [Encode] and the reference implementation do. It fails as
// [Encode] does on an unknown dtype, a bad shape, a repeated or reserved
// name.
func StreamOrder(specs []Spec) ([]int, error) {
	seen := make(map[string]bool, len(specs))
	for _, s := range specs {
		switch {
		case s.Name == metadataKey:
			return nil, errors.Errorf("tensorfile: tensor name %q is reserved", metadataKey)
		case !utf8.ValidString(s.Name):
			return nil, errors.Errorf("tensorfile: tensor name %q is not valid UTF-8", s.Name)
		case seen[s.Name]:
			return nil, errors.Errorf("tensorfile: duplicate tensor name %q", s.Name)
		}
		seen[s.Name] = true
		if _, ok := dtypes[s.Dtype]; !ok {
			return nil, errors.Errorf("tensorfile: tensor %q: unknown dtype %q", s.Name, s.Dtype)
		}
		if _, err := byteSize(s.Dtype, s.Shape); err != nil {
			return nil, errors.Wrapf(err, "tensorfile: tensor %q", s.Name)
		}
	}
	order := make([]int, len(specs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(i, j int) bool {
		a, b := specs[order[i]], specs[order[j]]
		if ra, rb := dtypes[a.Dtype].rank, dtypes[b.Dtype].rank; ra != rb {
			return ra > rb
		}
		return a.Name < b.Name
	})
	return order, nil
}

// WriteStream atomically writes a safetensors file at path whose tensors
// are produced one at a time, so that a file larger than memory can be
// written: the header (the same bytes [Encode] would write for these
// tensors and metadata) goes first, then fill is called once per tensor in
// [StreamOrder] and must write exactly that tensor's bytes (little-endian,
// row-major) to w. A fill that writes more or fewer bytes, or fails, leaves
// an existing file at path untouched.
func WriteStream(path string, specs []Spec, metadata map[string]string, fill func(s Spec, w io.Writer) error) error {
	order, err := StreamOrder(specs)
	if err != nil {
		return errors.Wrapf(err, "writing %s", path)
	}
	sizes := make([]int, len(specs))
	for i, s := range specs {
		if sizes[i], err = byteSize(s.Dtype, s.Shape); err != nil {
			return errors.Wrapf(err, "tensorfile: writing %s: tensor %q", path, s.Name)
		}
	}
	h, err := streamHeader(specs, sizes, order, metadata)
	if err != nil {
		return errors.Wrapf(err, "tensorfile: writing %s", path)
	}
	err = atomicfile.Write(path, func(w io.Writer) error {
		if _, err := w.Write(h); err != nil {
			return err
		}
		for _, i := range order {
			cw := &countingWriter{w: w}
			if err := fill(specs[i], cw); err != nil {
				return errors.Wrapf(err, "tensor %s", specs[i].Name)
			}
			if cw.n != int64(sizes[i]) {
				return errors.Errorf("tensor %s: %v of %s needs %d bytes, %d were written", specs[i].Name, specs[i].Shape, specs[i].Dtype, sizes[i], cw.n)
			}
		}
		return nil
	})
	return errors.Wrap(err, "tensorfile")
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// streamHeader returns the 8-byte length and the JSON header of a file of
// specs whose data take sizes bytes, laid out in order: "__metadata__" first
// (keys sorted), then the tensors in data order, each with its fields in the
// order dtype, shape, data_offsets, padded with spaces to a multiple of 8,
// as the reference implementation writes it. Encode and WriteStream share
// it.
func streamHeader(specs []Spec, sizes, order []int, metadata map[string]string) ([]byte, error) {
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, errors.Errorf("metadata key %q: key and value must be valid UTF-8", k)
		}
	}
	h := []byte{'{'}
	if len(metadata) > 0 {
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		h = appendJSONString(h, metadataKey)
		h = append(h, ":{"...)
		for i, k := range keys {
			if i > 0 {
				h = append(h, ',')
			}
			h = appendJSONString(h, k)
			h = append(h, ':')
			h = appendJSONString(h, metadata[k])
		}
		h = append(h, '}')
	}
	offset := 0
	for i, idx := range order {
		t := specs[idx]
		if i > 0 || len(metadata) > 0 {
			h = append(h, ',')
		}
		h = appendJSONString(h, t.Name)
		h = append(h, `:{"dtype":`...)
		h = appendJSONString(h, t.Dtype)
		h = append(h, `,"shape":[`...)
		for j, d := range t.Shape {
			if j > 0 {
				h = append(h, ',')
			}
			h = strconv.AppendInt(h, int64(d), 10)
		}
		h = append(h, `],"data_offsets":[`...)
		h = strconv.AppendInt(h, int64(offset), 10)
		h = append(h, ',')
		offset += sizes[idx]
		h = strconv.AppendInt(h, int64(offset), 10)
		h = append(h, "]}"...)
	}
	h = append(h, '}')
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	if len(h) > MaxHeaderSize {
		return nil, errors.Errorf("header of %d bytes exceeds the limit of %d", len(h), MaxHeaderSize)
	}
	return append(binary.LittleEndian.AppendUint64(nil, uint64(len(h))), h...), nil
}
