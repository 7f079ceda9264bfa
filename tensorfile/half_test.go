package tensorfile

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/lilygo/lily/gemm"
)

// A BF16 tensor written and read back, through Open and through
// OpenReader, keeps every bit; wider tensors round to nearest even; the
// Reader converts as File does.
func TestBF16RoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	h := make([]gemm.BF16, 6*7)
	for i := range h {
		h[i] = gemm.BF16(rng.Uint32()) &^ 0x7f80 // any finite pattern
	}
	h[0], h[1] = gemm.ToBF16(float32(math.Inf(1))), 0x7fc1 // and a non-finite pair
	f32 := []float32{1 + 1.0/256, 1 + 3.0/256, -2.75, 1e-40}
	f16 := []byte{0x00, 0x3c, 0x01, 0x00} // 1, the smallest subnormal
	path := filepath.Join(t.TempDir(), "m.safetensors")
	err := Write(path, []Tensor{
		FromBF16("h", []int{6, 7}, h),
		FromFloat32("f", []int{4}, f32),
		FromFloat64("d", []int{2}, []float64{math.Pi, -1e300}),
		{Name: "s", Dtype: F16, Shape: []int{2}, Data: f16},
		{Name: "i", Dtype: "I8", Shape: []int{1}, Data: []byte{3}},
		{Name: "z", Dtype: BF16, Shape: []int{0}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	file, r := openBoth(t, path)
	if !reflect.DeepEqual(r.Names(), file.Names()) || len(r.Metadata()) != 0 {
		t.Fatalf("names %v, %v", r.Names(), file.Names())
	}
	want := map[string][]gemm.BF16{
		"h": h,
		"f": {gemm.ToBF16(1), gemm.ToBF16(1 + 4.0/256), gemm.ToBF16(-2.75), gemm.ToBF16(1e-40)},
		"d": {gemm.ToBF16(math.Pi), gemm.ToBF16(float32(math.Inf(-1)))},
		"s": {gemm.ToBF16(1), gemm.ToBF16(float32(math.Ldexp(1, -24)))},
		"z": {},
	}
	for name, w := range want {
		for _, read := range []func(string) ([]gemm.BF16, []int, error){file.BF16, r.BF16} {
			got, shape, err := read(name)
			if err != nil {
				t.Fatal(err)
			}
			if s, _ := file.Shape(name); !reflect.DeepEqual(shape, s) {
				t.Fatalf("%s: shape %v, want %v", name, shape, s)
			}
			if !reflect.DeepEqual(append([]gemm.BF16{}, got...), w) {
				t.Fatalf("%s: %#x, want %#x", name, got, w)
			}
		}
		a, _, err1 := file.Float64(name)
		b, _, err2 := r.Float64(name)
		c, _, err3 := file.Float32(name)
		d, _, err4 := r.Float32(name)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil || !sameBits64(a, b) || !sameBits32(c, d) {
			t.Fatalf("%s: Reader and File convert differently", name)
		}
	}
	part := make([]gemm.BF16, 5)
	if err := r.BF16At("h", 20, part); err != nil || !reflect.DeepEqual(part, h[20:25]) {
		t.Fatalf("BF16At: %v %#x", err, part)
	}
	if err := r.BF16At("h", 40, part); err == nil {
		t.Fatal("BF16At past the end accepted")
	}
	if err := r.BF16At("f", 0, part[:1]); err == nil {
		t.Fatal("BF16At of an F32 tensor accepted")
	}
	if raw, err := r.Tensor("i"); err != nil || raw.Data[0] != 3 {
		t.Fatalf("Reader.Tensor: %v", err)
	}
	if dt, ok := r.Dtype("h"); !ok || dt != BF16 {
		t.Fatal(dt)
	}
	for _, read := range []func(string) ([]gemm.BF16, []int, error){file.BF16, r.BF16} {
		if _, _, err := read("i"); err == nil || !strings.Contains(err.Error(), `"i"`) {
			t.Fatalf("I8 as bfloat16: %v", err)
		}
		if _, _, err := read("nope"); err == nil {
			t.Fatal("missing tensor read")
		}
	}
}

func sameBits64(a, b []float64) bool {
	for i := range a {
		if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
			return false
		}
	}
	return len(a) == len(b)
}

func sameBits32(a, b []float32) bool {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return len(a) == len(b)
}

// Reading a BF16 tensor through a Reader allocates the result and nothing
// of its size besides: no float32 detour, no copy of the file.
func TestReaderBF16AllocatesOnlyTheResult(t *testing.T) {
	const n = 1 << 20
	h := make([]gemm.BF16, n)
	for i := range h {
		h[i] = gemm.BF16(i)
	}
	path := filepath.Join(t.TempDir(), "big.safetensors")
	if err := Write(path, []Tensor{FromBF16("w", []int{1024, 1024}, h)}, nil); err != nil {
		t.Fatal(err)
	}
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	got, _, err := r.BF16("w")
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if extra := after.TotalAlloc - before.TotalAlloc; extra > 2*n+64<<10 {
		t.Fatalf("reading %d bytes allocated %d", 2*n, extra)
	}
	if got[12345] != 12345 || got[n-1] != gemm.BF16((n-1)&0xffff) {
		t.Fatal("wrong values")
	}
}

// An F16 tensor written and read back, through Open and through
// OpenReader, keeps every bit; BF16, F32 and F64 tensors round to the
// nearest float16 (overflowing to infinity); File and Reader agree; F16At
// reads a range.
func TestF16RoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	h := make([]gemm.F16, 5*3)
	for i := range h {
		h[i] = gemm.F16(rng.Uint32()) &^ 0x4000 // any finite pattern
	}
	h[0], h[1], h[2] = 0x7c00, 0xfe01, 0x0001 // inf, a NaN with payload, the smallest subnormal
	path := filepath.Join(t.TempDir(), "m.safetensors")
	err := Write(path, []Tensor{
		FromF16("h", []int{5, 3}, h),
		FromFloat32("f", []int{3}, []float32{1 + 1.0/2048, 1 + 3.0/2048, 70000}),
		FromFloat64("d", []int{2}, []float64{math.Pi, -1e300}),
		FromBF16("b", []int{1}, []gemm.BF16{gemm.ToBF16(1.5)}),
		{Name: "i", Dtype: "I8", Shape: []int{1}, Data: []byte{3}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	file, r := openBoth(t, path)
	want := map[string][]gemm.F16{
		"h": h,
		"f": {gemm.ToF16(1), gemm.ToF16(1 + 4.0/2048), 0x7c00},
		"d": {gemm.ToF16(math.Pi), 0xfc00},
		"b": {0x3e00},
	}
	for name, w := range want {
		for _, read := range []func(string) ([]gemm.F16, []int, error){file.F16, r.F16} {
			got, shape, err := read(name)
			if err != nil {
				t.Fatal(err)
			}
			if s, _ := file.Shape(name); !reflect.DeepEqual(shape, s) {
				t.Fatalf("%s: shape %v, want %v", name, shape, s)
			}
			if !reflect.DeepEqual(got, w) {
				t.Fatalf("%s: %#x, want %#x", name, got, w)
			}
		}
	}
	// The float32 view of an F16 tensor is the exact widening.
	f32, _, err := r.Float32("h")
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range f32 {
		if math.Float32bits(v) != math.Float32bits(h[i].Float32()) && !math.IsNaN(float64(v)) {
			t.Fatalf("h[%d]: %v, want %v", i, v, h[i].Float32())
		}
	}
	part := make([]gemm.F16, 4)
	if err := r.F16At("h", 10, part); err != nil || !reflect.DeepEqual(part, h[10:14]) {
		t.Fatalf("F16At: %v %#x", err, part)
	}
	if err := r.F16At("h", 12, part); err == nil {
		t.Fatal("F16At past the end accepted")
	}
	if err := r.F16At("b", 0, part[:1]); err == nil {
		t.Fatal("F16At of a BF16 tensor accepted")
	}
	for _, read := range []func(string) ([]gemm.F16, []int, error){file.F16, r.F16} {
		if _, _, err := read("i"); err == nil || !strings.Contains(err.Error(), `"i"`) {
			t.Fatalf("I8 as float16: %v", err)
		}
		if _, _, err := read("nope"); err == nil {
			t.Fatal("missing tensor read")
		}
	}
}

// openBoth opens path as a File and as a Reader, which is closed when the
// test ends.
func openBoth(t *testing.T, path string) (*File, *Reader) {
	t.Helper()
	file, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return file, r
}
