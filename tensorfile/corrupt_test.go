package tensorfile

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCorruptFiles(t *testing.T) {
	data8 := make([]byte, 8)
	ab := func(a, b string) string { // two F32 tensors with given offsets
		return `{"a":{"dtype":"F32","shape":[1],"data_offsets":` + a + `},"b":{"dtype":"F32","shape":[1],"data_offsets":` + b + `}}`
	}
	lenPrefix := func(n uint64) []byte { return binary.LittleEndian.AppendUint64(nil, n) }
	cases := []struct {
		name string
		file []byte
		want []string // substrings of the error
	}{
		{"empty", nil, []string{"too short"}},
		{"7 bytes", make([]byte, 7), []string{"too short"}},
		{"header longer than file", append(lenPrefix(100), `{}`...), []string{"header length 100", "truncated"}},
		{"absurd header length", append(lenPrefix(1<<62), `{}`...), []string{"exceeds the limit"}},
		{"max uint64 header length", append(lenPrefix(^uint64(0)), `{}`...), []string{"exceeds the limit"}},
		{"empty header", lenPrefix(0), []string{"invalid header"}},
		{"invalid JSON", fileBytes(`{"a":`, nil), []string{"invalid header"}},
		{"JSON syntax error", fileBytes(`{"a" 1}`, nil), []string{"invalid header"}},
		{"trailing comma", fileBytes(`{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},}`, make([]byte, 4)), []string{"invalid header"}},
		{"header is an array", fileBytes(`[]`, nil), []string{"expected an object"}},
		{"trailing JSON", fileBytes(`{} {}`, nil), []string{"after the header object"}},
		{"trailing garbage", fileBytes(`{}x`, nil), []string{"after the header object"}},
		{"non-UTF-8 header", fileBytes("{\"\xff\":1}", nil), []string{"UTF-8"}},
		{"tensor is not an object", fileBytes(`{"a":[1]}`, nil), []string{`tensor "a"`, "expected an object"}},
		{"tensor is null", fileBytes(`{"a":null}`, nil), []string{`tensor "a"`}},
		{"unknown dtype", fileBytes(`{"a":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), []string{`tensor "a"`, `unknown dtype "F31"`}},
		{"dtype not a string", fileBytes(`{"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), []string{`tensor "a"`, "dtype"}},
		{"missing dtype", fileBytes(`{"a":{"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), []string{`tensor "a"`, `missing "dtype"`}},
		{"missing shape", fileBytes(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, make([]byte, 4)), []string{`tensor "a"`, `missing "shape"`}},
		{"missing offsets", fileBytes(`{"a":{"dtype":"F32","shape":[1]}}`, make([]byte, 4)), []string{`tensor "a"`, `missing "data_offsets"`}},
		{"duplicate field", fileBytes(`{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), []string{`tensor "a"`, `duplicate field "dtype"`}},
		{"negative dimension", fileBytes(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, make([]byte, 4)), []string{`tensor "a"`, "negative"}},
		{"fractional dimension", fileBytes(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, make([]byte, 4)), []string{`tensor "a"`, "not an integer"}},
		{"exponent dimension", fileBytes(`{"a":{"dtype":"F32","shape":[1e0],"data_offsets":[0,4]}}`, make([]byte, 4)), []string{`tensor "a"`, "not an integer"}},
		{"string dimension", fileBytes(`{"a":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}}`, make([]byte, 4)), []string{`tensor "a"`, "expected an integer"}},
		{"huge dimension", fileBytes(`{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]}}`, make([]byte, 4)), []string{`tensor "a"`, "too large"}},
		{"overflowing shape", fileBytes(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, make([]byte, 4)), []string{`tensor "a"`, "overflows"}},
		{"overflowing bytes", fileBytes(`{"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]}}`, make([]byte, 4)), []string{`tensor "a"`, "overflows"}},
		{"negative offset", fileBytes(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, nil), []string{`tensor "a"`, "negative"}},
		{"one offset", fileBytes(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4]}}`, make([]byte, 4)), []string{`tensor "a"`, "[begin, end]"}},
		{"three offsets", fileBytes(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, make([]byte, 4)), []string{`tensor "a"`, "[begin, end]"}},
		{"offsets reversed", fileBytes(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}`, make([]byte, 4)), []string{`tensor "a"`, "begin is after end"}},
		{"size mismatch", fileBytes(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, data8), []string{`tensor "a"`, "span 8 bytes", "needs 12"}},
		{"dtype size mismatch", fileBytes(`{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}}`, data8), []string{`tensor "a"`, "needs 16"}},
		{"out of range", fileBytes(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 4)), []string{`tensor "a"`, "out of range"}},
		{"overlap", fileBytes(ab("[0,4]", "[2,6]"), data8), []string{`tensor "b"`, `overlaps tensor "a"`}},
		{"same range", fileBytes(ab("[0,4]", "[0,4]"), make([]byte, 4)), []string{"overlaps"}},
		{"gap at start", fileBytes(ab("[4,8]", "[8,12]"), make([]byte, 12)), []string{"gap before tensor \"a\""}},
		{"gap between", fileBytes(ab("[0,4]", "[6,10]"), make([]byte, 10)), []string{"gap before tensor \"b\""}},
		{"trailing data", fileBytes(ab("[0,4]", "[4,8]"), make([]byte, 9)), []string{"after the last tensor"}},
		{"data but no tensors", fileBytes(`{}`, make([]byte, 1)), []string{"after the last tensor"}},
		{"duplicate name", fileBytes(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, data8), []string{`duplicate tensor name "a"`}},
		{"duplicate metadata", fileBytes(`{"__metadata__":{},"__metadata__":{}}`, nil), []string{"duplicate", "__metadata__"}},
		{"metadata not an object", fileBytes(`{"__metadata__":[]}`, nil), []string{"__metadata__", "expected an object"}},
		{"metadata value not a string", fileBytes(`{"__metadata__":{"k":1}}`, nil), []string{"__metadata__", `key "k"`}},
		{"metadata duplicate key", fileBytes(`{"__metadata__":{"k":"a","k":"b"}}`, nil), []string{"__metadata__", `duplicate key "k"`}},
		{"deep nesting", fileBytes(`{"a":{"x":`+strings.Repeat("[", 20000)+strings.Repeat("]", 20000)+`}}`, nil), []string{`tensor "a"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := Decode(c.file)
			if err == nil {
				t.Fatalf("Decode succeeded: %v", f.Names())
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "tensorfile: ") {
				t.Errorf("error %q lacks the package prefix", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			// OpenReader, which reads only the header, refuses it alike.
			path := filepath.Join(t.TempDir(), "x.safetensors")
			if err := os.WriteFile(path, c.file, 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := OpenReader(path)
			if err == nil {
				r.Close()
				t.Fatalf("OpenReader succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("OpenReader error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestZeroSizedTensorsMayShareOffsets(t *testing.T) {
	h := `{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"c":{"dtype":"F64","shape":[2,0],"data_offsets":[4,4]}}`
	f := mustDecode(t, fileBytes(h, make([]byte, 4)))
	if len(f.Names()) != 3 {
		t.Fatal(f.Names())
	}
	// A zero-sized tensor inside another one's bytes is still an overlap.
	h = `{"a":{"dtype":"F32","shape":[0],"data_offsets":[2,2]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`
	if _, err := Decode(fileBytes(h, make([]byte, 4))); err == nil {
		t.Fatal("zero-sized tensor inside another accepted")
	}
}

// TestTruncated cuts a valid file at every length: each prefix must fail
// with an error, never panic.
func TestTruncated(t *testing.T) {
	full, err := Encode([]Tensor{
		FromFloat32("a", []int{2, 2}, []float32{1, 2, 3, 4}),
		FromFloat64("b", []int{3}, []float64{5, 6, 7}),
		{Name: "c", Dtype: BF16, Shape: []int{1}, Data: []byte{0x80, 0x3f}},
	}, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	mustDecode(t, full)
	for n := 0; n < len(full); n++ {
		if _, err := Decode(full[:n]); err == nil {
			t.Errorf("Decode of the first %d of %d bytes succeeded", n, len(full))
		}
	}
}
