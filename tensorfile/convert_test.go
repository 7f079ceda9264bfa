package tensorfile

import (
	"encoding/binary"
	"math"
	"testing"
)

// Hand-computed binary16 → binary32 bit patterns.
var f16Cases = []struct {
	h    uint16
	f32  uint32
	what string
}{
	{0x0000, 0x00000000, "+0"},
	{0x8000, 0x80000000, "-0"},
	{0x3c00, 0x3f800000, "1"},
	{0xc000, 0xc0000000, "-2"},
	{0x3555, 0x3eaaa000, "0.333251953125"},
	{0x7bff, 0x477fe000, "65504, largest finite"},
	{0x0400, 0x38800000, "2^-14, smallest normal"},
	{0x0001, 0x33800000, "2^-24, smallest subnormal"},
	{0x8001, 0xb3800000, "-2^-24"},
	{0x0200, 0x38000000, "2^-15, subnormal"},
	{0x03ff, 0x387fc000, "1023×2^-24, largest subnormal"},
	{0x0155, 0x37aa8000, "341×2^-24, subnormal"},
	{0x7c00, 0x7f800000, "+inf"},
	{0xfc00, 0xff800000, "-inf"},
	{0x7e00, 0x7fc00000, "quiet NaN"},
	{0x7c01, 0x7f802000, "signaling NaN, payload kept"},
	{0xfe3f, 0xffc7e000, "negative NaN with payload"},
}

// Hand-computed bfloat16 → binary32 bit patterns.
var bf16Cases = []struct {
	b    uint16
	f32  uint32
	what string
}{
	{0x0000, 0x00000000, "+0"},
	{0x8000, 0x80000000, "-0"},
	{0x3f80, 0x3f800000, "1"},
	{0xc0c0, 0xc0c00000, "-6"},
	{0x7f7f, 0x7f7f0000, "largest finite"},
	{0x0080, 0x00800000, "smallest normal 2^-126"},
	{0x0001, 0x00010000, "smallest subnormal 2^-133"},
	{0x807f, 0x807f0000, "negative subnormal"},
	{0x7f80, 0x7f800000, "+inf"},
	{0xff80, 0xff800000, "-inf"},
	{0x7fc0, 0x7fc00000, "quiet NaN"},
	{0xff81, 0xff810000, "negative signaling NaN, payload kept"},
}

// Hand-computed binary32 → binary64 bit patterns.
var f32to64Cases = []struct {
	f32  uint32
	f64  uint64
	what string
}{
	{0x3f800000, 0x3ff0000000000000, "1"},
	{0x80000000, 0x8000000000000000, "-0"},
	{0x33800000, 0x3e70000000000000, "2^-24"},
	{0x00000001, 0x36a0000000000000, "2^-149, smallest subnormal"},
	{0x00010000, 0x37a0000000000000, "2^-133"},
	{0x007fffff, 0x380fffffc0000000, "largest subnormal"},
	{0x7f7fffff, 0x47efffffe0000000, "largest finite"},
	{0xff800000, 0xfff0000000000000, "-inf"},
	{0x7fc00000, 0x7ff8000000000000, "quiet NaN"},
	{0x7f802000, 0x7ff0040000000000, "signaling NaN, payload kept"},
	{0xff810000, 0xfff0200000000000, "negative NaN with payload"},
}

func TestF16ToF32Bits(t *testing.T) {
	for _, c := range f16Cases {
		if got := f16ToF32Bits(c.h); got != c.f32 {
			t.Errorf("f16 %#04x (%s): got %#08x, want %#08x", c.h, c.what, got, c.f32)
		}
	}
}

func TestF32ToF64Bits(t *testing.T) {
	for _, c := range f32to64Cases {
		if got := f32ToF64Bits(c.f32); got != c.f64 {
			t.Errorf("f32 %#08x (%s): got %#016x, want %#016x", c.f32, c.what, got, c.f64)
		}
	}
}

// TestF16Exhaustive checks all 65536 binary16 values against the defining
// formula, computed independently with math.Ldexp.
func TestF16Exhaustive(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		sign, exp, mant := h>>15, int(h>>10&0x1f), float64(h&0x3ff)
		var want float64
		switch {
		case exp == 0x1f && mant == 0:
			want = math.Inf(1)
		case exp == 0x1f:
			want = math.NaN()
		case exp == 0:
			want = math.Ldexp(mant, -24)
		default:
			want = math.Ldexp(1024+mant, exp-25)
		}
		if sign == 1 {
			want = -want
		}
		got32 := math.Float32frombits(f16ToF32Bits(h))
		got64 := math.Float64frombits(f32ToF64Bits(f16ToF32Bits(h)))
		if math.IsNaN(want) {
			if !math.IsNaN(float64(got32)) || !math.IsNaN(got64) || math.Signbit(got64) != (sign == 1) {
				t.Fatalf("f16 %#04x: got %v, %v, want NaN", h, got32, got64)
			}
			continue
		}
		if float64(got32) != want || got64 != want || math.Signbit(got64) != math.Signbit(want) {
			t.Fatalf("f16 %#04x: got %v, %v, want %v", h, got32, got64, want)
		}
	}
}

// TestF32ToF64AgainstFPU checks the bit-level widening against the FPU's for
// every binary32 exponent and a spread of mantissas (the FPU is only trusted
// for non-NaN values; NaNs are checked by hand above).
func TestF32ToF64AgainstFPU(t *testing.T) {
	for exp := uint32(0); exp < 0xff; exp++ {
		for _, mant := range []uint32{0, 1, 2, 3, 0x155555, 0x400000, 0x7ffffe, 0x7fffff} {
			for _, sign := range []uint32{0, 1} {
				b := sign<<31 | exp<<23 | mant
				want := math.Float64bits(float64(math.Float32frombits(b)))
				if got := f32ToF64Bits(b); got != want {
					t.Fatalf("f32 %#08x: got %#016x, want %#016x", b, got, want)
				}
			}
		}
	}
}

// TestHalfFloatsThroughFile reads the hand-computed cases from a file, as
// F16 and BF16 tensors, through both Float32 and Float64.
func TestHalfFloatsThroughFile(t *testing.T) {
	var f16data, bf16data []byte
	for _, c := range f16Cases {
		f16data = binary.LittleEndian.AppendUint16(f16data, c.h)
	}
	for _, c := range bf16Cases {
		bf16data = binary.LittleEndian.AppendUint16(bf16data, c.b)
	}
	out, err := Encode([]Tensor{
		{Name: "h", Dtype: F16, Shape: []int{len(f16Cases)}, Data: f16data},
		{Name: "b", Dtype: BF16, Shape: []int{len(bf16Cases)}, Data: bf16data},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := mustDecode(t, out)
	h32, _, err := f.Float32("h")
	if err != nil {
		t.Fatal(err)
	}
	h64, _, err := f.Float64("h")
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range f16Cases {
		if got := math.Float32bits(h32[i]); got != c.f32 {
			t.Errorf("F16 %#04x (%s) as float32: %#08x, want %#08x", c.h, c.what, got, c.f32)
		}
		if got, want := math.Float64bits(h64[i]), f32ToF64Bits(c.f32); got != want {
			t.Errorf("F16 %#04x (%s) as float64: %#016x, want %#016x", c.h, c.what, got, want)
		}
	}
	b32, _, err := f.Float32("b")
	if err != nil {
		t.Fatal(err)
	}
	b64, _, err := f.Float64("b")
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range bf16Cases {
		if got := math.Float32bits(b32[i]); got != c.f32 {
			t.Errorf("BF16 %#04x (%s) as float32: %#08x, want %#08x", c.b, c.what, got, c.f32)
		}
		if got, want := math.Float64bits(b64[i]), f32ToF64Bits(c.f32); got != want {
			t.Errorf("BF16 %#04x (%s) as float64: %#016x, want %#016x", c.b, c.what, got, want)
		}
	}
}
