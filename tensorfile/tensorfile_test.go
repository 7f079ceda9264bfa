package tensorfile

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// pythonFile is the exact file the Python safetensors package writes for
// save_file({"a": torch.tensor([1.0, -2.5])}): header length 56, the compact
// JSON header (54 bytes) padded with two spaces to a multiple of 8, then the
// two float32 values little-endian.
var pythonFile = []byte(
	"\x38\x00\x00\x00\x00\x00\x00\x00" +
		`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}` + "  " +
		"\x00\x00\x80\x3f" + // 1.0
		"\x00\x00\x20\xc0") // -2.5

// fileBytes builds a safetensors file from a header and a data buffer.
func fileBytes(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func mustDecode(t *testing.T, data []byte) *File {
	t.Helper()
	f, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestReadPythonLayout(t *testing.T) {
	f := mustDecode(t, pythonFile)
	if got := f.Names(); !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("Names() = %v", got)
	}
	if dt, ok := f.Dtype("a"); !ok || dt != F32 {
		t.Fatalf("Dtype = %q, %v", dt, ok)
	}
	if s, ok := f.Shape("a"); !ok || !reflect.DeepEqual(s, []int{2}) {
		t.Fatalf("Shape = %v, %v", s, ok)
	}
	v, shape, err := f.Float32("a")
	if err != nil || !reflect.DeepEqual(v, []float32{1, -2.5}) || !reflect.DeepEqual(shape, []int{2}) {
		t.Fatalf("Float32 = %v, %v, %v", v, shape, err)
	}
	w, _, err := f.Float64("a")
	if err != nil || !reflect.DeepEqual(w, []float64{1, -2.5}) {
		t.Fatalf("Float64 = %v, %v", w, err)
	}
	if m := f.Metadata(); m == nil || len(m) != 0 {
		t.Fatalf("Metadata() = %#v, want empty map", m)
	}
	// Our writer produces the reference implementation's bytes exactly.
	out, err := Encode([]Tensor{FromFloat32("a", []int{2}, []float32{1, -2.5})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, pythonFile) {
		t.Fatalf("Encode:\n got %q\nwant %q", out, pythonFile)
	}
}

func TestReadPEFTStyleMetadata(t *testing.T) {
	h := `{"__metadata__":{"format":"pt"},"base_model.model.lora_A.weight":{"dtype":"BF16","shape":[1,2],"data_offsets":[0,4]}}`
	f := mustDecode(t, fileBytes(h, []byte{0x80, 0x3f, 0xc0, 0x40})) // bf16 1.0, 6.0
	if m := f.Metadata(); !reflect.DeepEqual(m, map[string]string{"format": "pt"}) {
		t.Fatalf("Metadata() = %v", m)
	}
	v, shape, err := f.Float32("base_model.model.lora_A.weight")
	if err != nil || !reflect.DeepEqual(v, []float32{1, 6}) || !reflect.DeepEqual(shape, []int{1, 2}) {
		t.Fatalf("Float32 = %v, %v, %v", v, shape, err)
	}
	// Metadata "null" is accepted as none; extra tensor fields are skipped.
	h = `{"__metadata__":null,"x":{"dtype":"F16","shape":[],"data_offsets":[0,2],"extra":[{"a":1}]}}`
	f = mustDecode(t, fileBytes(h, []byte{0x00, 0x3c}))
	if v, shape, err := f.Float64("x"); err != nil || !reflect.DeepEqual(v, []float64{1}) || len(shape) != 0 || shape == nil {
		t.Fatalf("Float64 = %v, %#v, %v", v, shape, err)
	}
}

// specials are float values whose bits must survive a round trip.
var specials32 = []float32{
	0, float32(math.Copysign(0, -1)), 1, -2.5, math.MaxFloat32, math.SmallestNonzeroFloat32,
	float32(math.Inf(1)), float32(math.Inf(-1)),
	math.Float32frombits(0x7fc00000), // quiet NaN
	math.Float32frombits(0x7f800001), // signaling NaN, payload 1
	math.Float32frombits(0xffc12345), // negative NaN with payload
	math.Float32frombits(0x00000001), // smallest subnormal
}

var specials64 = []float64{
	0, math.Copysign(0, -1), 1, -2.5, math.MaxFloat64, math.SmallestNonzeroFloat64,
	math.Inf(1), math.Inf(-1),
	math.Float64frombits(0x7ff8000000000000),
	math.Float64frombits(0x7ff0000000000001),
	math.Float64frombits(0xfff8123456789abc),
	math.Float64frombits(0x000fffffffffffff),
}

func bits32(v []float32) []uint32 {
	out := make([]uint32, len(v))
	for i, x := range v {
		out[i] = math.Float32bits(x)
	}
	return out
}

func bits64(v []float64) []uint64 {
	out := make([]uint64, len(v))
	for i, x := range v {
		out[i] = math.Float64bits(x)
	}
	return out
}

func TestRoundTripBitExact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ckpt.safetensors")
	meta := map[string]string{"format": "pt", "step": "12", "note": "quote \" backslash \\ newline \n <&> é"}
	tensors := []Tensor{
		FromFloat32("w32", []int{3, 4}, specials32),
		FromFloat64("w64", []int{2, 2, 3}, specials64),
		FromFloat32("scalar", nil, []float32{42}),
		FromFloat64("empty", []int{0, 5}, nil),
		{Name: "h", Dtype: BF16, Shape: []int{2}, Data: []byte{0x80, 0x3f, 0x01, 0xff}},
		{Name: "ids", Dtype: "I64", Shape: []int{1}, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		FromFloat32("weird \"name\"\t\x01/ü", []int{1}, []float32{7}),
	}
	if err := Write(path, tensors, meta); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"empty", "h", "ids", "scalar", "w32", "w64", "weird \"name\"\t\x01/ü"}
	if got := f.Names(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Names() = %q, want %q", got, want)
	}
	if got := f.Metadata(); !reflect.DeepEqual(got, meta) {
		t.Fatalf("Metadata() = %q", got)
	}
	v32, shape, err := f.Float32("w32")
	if err != nil || !reflect.DeepEqual(bits32(v32), bits32(specials32)) || !reflect.DeepEqual(shape, []int{3, 4}) {
		t.Fatalf("w32: %x, %v, %v", bits32(v32), shape, err)
	}
	v64, shape, err := f.Float64("w64")
	if err != nil || !reflect.DeepEqual(bits64(v64), bits64(specials64)) || !reflect.DeepEqual(shape, []int{2, 2, 3}) {
		t.Fatalf("w64: %x, %v, %v", bits64(v64), shape, err)
	}
	// F32 widened to float64 keeps every bit, NaN payloads included.
	w, _, err := f.Float64("w32")
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range specials32 {
		b := math.Float32bits(x)
		if x == x && math.Float64bits(w[i]) != math.Float64bits(float64(x)) {
			t.Errorf("w32[%d] as float64 = %v, want %v", i, w[i], x)
		}
		if x != x {
			got := math.Float64bits(w[i])
			want := uint64(b>>31)<<63 | 0x7ff<<52 | uint64(b&0x7fffff)<<29
			if got != want {
				t.Errorf("NaN w32[%d]: float64 bits %#x, want %#x", i, got, want)
			}
		}
	}
	if v, shape, err := f.Float32("scalar"); err != nil || !reflect.DeepEqual(v, []float32{42}) || shape == nil || len(shape) != 0 {
		t.Fatalf("scalar: %v, %#v, %v", v, shape, err)
	}
	if v, shape, err := f.Float64("empty"); err != nil || len(v) != 0 || !reflect.DeepEqual(shape, []int{0, 5}) {
		t.Fatalf("empty: %v, %v, %v", v, shape, err)
	}
	for _, tt := range tensors {
		got, ok := f.Tensor(tt.Name)
		if !ok || got.Dtype != tt.Dtype || !bytes.Equal(got.Data, tt.Data) || len(got.Shape) != len(tt.Shape) {
			t.Errorf("Tensor(%q) = %+v, %v; want %+v", tt.Name, got, ok, tt)
		}
	}
	// Returned values are copies.
	got, _ := f.Tensor("ids")
	got.Data[0], got.Shape[0] = 99, 99
	again, _ := f.Tensor("ids")
	if again.Data[0] != 1 || again.Shape[0] != 1 {
		t.Fatal("Tensor() returned shared memory")
	}
}

func TestLayoutFollowsReference(t *testing.T) {
	// Decreasing dtype alignment, then name; header lists tensors in data
	// order with __metadata__ first.
	out, err := Encode([]Tensor{
		FromFloat32("b", []int{1}, []float32{1}),
		{Name: "c", Dtype: "U8", Shape: []int{1}, Data: []byte{9}},
		FromFloat64("z", []int{1}, []float64{2}),
		FromFloat32("a", []int{1}, []float32{3}),
	}, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	header := `{"__metadata__":{"k":"v"},` +
		`"z":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},` +
		`"a":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},` +
		`"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]},` +
		`"c":{"dtype":"U8","shape":[1],"data_offsets":[16,17]}}`
	for len(header)%8 != 0 {
		header += " "
	}
	n := binary.LittleEndian.Uint64(out)
	if n%8 != 0 || string(out[8:8+n]) != header {
		t.Fatalf("header %q, want %q", out[8:8+n], header)
	}
	if len(out) != 8+int(n)+17 {
		t.Fatalf("file length %d", len(out))
	}
	// No tensors at all is a valid file.
	empty, err := Encode(nil, nil)
	if err != nil || string(empty) != "\x08\x00\x00\x00\x00\x00\x00\x00{}      " {
		t.Fatalf("Encode(nil) = %q, %v", empty, err)
	}
	if f := mustDecode(t, empty); len(f.Names()) != 0 {
		t.Fatal("names in empty file")
	}
}

func TestDeterminism(t *testing.T) {
	mk := func(rev bool) ([]Tensor, map[string]string) {
		ts := []Tensor{
			FromFloat32("layer.0.w", []int{2}, []float32{1, 2}),
			FromFloat64("layer.0.b", []int{1}, []float64{3}),
			FromFloat32("layer.1.w", []int{2}, []float32{4, 5}),
			{Name: "h", Dtype: F16, Shape: []int{1}, Data: []byte{0, 0x3c}},
		}
		m := map[string]string{}
		for i := 0; i < 20; i++ {
			m[string(rune('a'+i))] = strings.Repeat("x", i)
		}
		if rev {
			for i, j := 0, len(ts)-1; i < j; i, j = i+1, j-1 {
				ts[i], ts[j] = ts[j], ts[i]
			}
		}
		return ts, m
	}
	dir := t.TempDir()
	var files [][]byte
	for i := 0; i < 4; i++ {
		ts, m := mk(i%2 == 1)
		path := filepath.Join(dir, "f"+string(rune('0'+i)))
		if err := Write(path, ts, m); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := Encode(ts, m)
		if err != nil || !bytes.Equal(enc, b) {
			t.Fatalf("Encode differs from Write: %v", err)
		}
		files = append(files, b)
	}
	for i := 1; i < len(files); i++ {
		if !bytes.Equal(files[0], files[i]) {
			t.Fatalf("file %d differs from file 0", i)
		}
	}
	// Re-encoding what was read gives the same bytes again.
	f := mustDecode(t, files[0])
	var ts []Tensor
	for _, name := range f.Names() {
		tt, _ := f.Tensor(name)
		ts = append(ts, tt)
	}
	again, err := Encode(ts, f.Metadata())
	if err != nil || !bytes.Equal(again, files[0]) {
		t.Fatalf("re-encode differs: %v", err)
	}
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "adapter.safetensors")
	good := []Tensor{FromFloat32("w", []int{2}, []float32{1, 2})}
	if err := Write(path, good, nil); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}

	bad := [][]Tensor{
		{FromFloat32("w", []int{3}, []float32{1, 2})},                       // shape/data mismatch
		{FromFloat32("w", []int{-1}, nil)},                                  // negative dimension
		{{Name: "w", Dtype: "F31", Shape: []int{1}, Data: make([]byte, 4)}}, // unknown dtype
		{FromFloat32("w", []int{1}, []float32{1}), FromFloat32("w", []int{1}, []float32{1})},
		{FromFloat32(metadataKey, []int{1}, []float32{1})},
		{FromFloat32("bad\xffutf8", []int{1}, []float32{1})},
		{FromFloat32("w", []int{math.MaxInt / 2, 3}, nil)}, // size overflow
	}
	for i, ts := range bad {
		err := Write(path, ts, nil)
		if err == nil {
			t.Fatalf("case %d: Write succeeded", i)
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("case %d: error %q does not name the file", i, err)
		}
		if _, err := Encode(ts, nil); err == nil {
			t.Errorf("case %d: Encode succeeded", i)
		}
	}
	if err := Write(path, good, map[string]string{"k": "\xff"}); err == nil {
		t.Fatal("invalid UTF-8 metadata accepted")
	}

	// A failure after the temporary file exists: renaming onto a directory.
	sub := filepath.Join(dir, "sub")
	if err := os.MkdirAll(filepath.Join(sub, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Write(sub, good, nil); err == nil {
		t.Fatal("Write over a directory succeeded")
	}
	// Writing into a missing directory fails cleanly.
	if err := Write(filepath.Join(dir, "missing", "f"), good, nil); err == nil {
		t.Fatal("Write into a missing directory succeeded")
	}

	after, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("existing file changed: %v", err)
	}
	if got := dirEntries(t, dir); !reflect.DeepEqual(got, []string{"adapter.safetensors", "sub"}) {
		t.Fatalf("directory holds %q; temporary file left behind?", got)
	}

	// A successful Write replaces the file.
	if err := Write(path, []Tensor{FromFloat64("v", []int{1}, []float64{5})}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil || !reflect.DeepEqual(f.Names(), []string{"v"}) {
		t.Fatalf("after replace: %v", err)
	}
	if got := dirEntries(t, dir); !reflect.DeepEqual(got, []string{"adapter.safetensors", "sub"}) {
		t.Fatalf("directory holds %q", got)
	}
}

func TestFloatAccessErrors(t *testing.T) {
	h := `{"i":{"dtype":"I32","shape":[1],"data_offsets":[0,4]},"d":{"dtype":"F64","shape":[3],"data_offsets":[4,28]}}`
	data := make([]byte, 28)
	binary.LittleEndian.PutUint64(data[4:], math.Float64bits(0.1))
	binary.LittleEndian.PutUint64(data[12:], math.Float64bits(1e300))
	binary.LittleEndian.PutUint64(data[20:], math.Float64bits(-1e-300))
	f := mustDecode(t, fileBytes(h, data))
	if _, _, err := f.Float32("i"); err == nil || !strings.Contains(err.Error(), `tensor "i"`) || !strings.Contains(err.Error(), "I32") {
		t.Errorf("Float32(I32) error = %v", err)
	}
	if _, _, err := f.Float64("nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Float64(missing) error = %v", err)
	}
	if _, ok := f.Shape("nope"); ok {
		t.Error("Shape(missing) ok")
	}
	if _, ok := f.Dtype("nope"); ok {
		t.Error("Dtype(missing) ok")
	}
	if _, ok := f.Tensor("nope"); ok {
		t.Error("Tensor(missing) ok")
	}
	// F64 narrows to float32 with round-to-nearest-even and overflow to Inf.
	v, _, err := f.Float32("d")
	if err != nil {
		t.Fatal(err)
	}
	if math.Float32bits(v[0]) != 0x3dcccccd || !math.IsInf(float64(v[1]), 1) || math.Float32bits(v[2]) != 0x80000000 {
		t.Errorf("F64 narrowed = %x", bits32(v))
	}

	// Errors from Open name the file.
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := os.WriteFile(path, fileBytes(h, data[:27]), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Open(corrupt) error = %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Open(missing) error = %v", err)
	}
}

func TestDecodeCopiesInput(t *testing.T) {
	in := append([]byte(nil), pythonFile...)
	f := mustDecode(t, in)
	for i := range in {
		in[i] = 0
	}
	if v, _, _ := f.Float32("a"); !reflect.DeepEqual(v, []float32{1, -2.5}) {
		t.Fatalf("File aliases Decode's input: %v", v)
	}
}
