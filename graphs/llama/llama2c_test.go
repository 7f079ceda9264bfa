package llama

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lilygo/lily/layers"
	"gorgonia.org/tensor"
)

// l2cFile is a llama2.c checkpoint written by the test: header values and
// the float32 tensors in llama2.c's order and [out, in] layout.
type l2cFile struct {
	header  [7]int32
	tensors [][]float32 // token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq_real, freq_imag[, wcls]
}

func newL2CFile(c Config, rng *rand.Rand) *l2cFile {
	vocab := int32(c.VocabSize)
	if !c.TiedEmbeddings {
		vocab = -vocab
	}
	f := &l2cFile{header: [7]int32{int32(c.Dim), int32(c.HiddenDim), int32(c.NLayers), int32(c.NHeads), int32(c.NKVHeads), vocab, int32(c.MaxSeqLen)}}
	d, kv, h, L := c.Dim, c.KVDim(), c.HiddenDim, c.NLayers
	sizes := []int{c.VocabSize * d, L * d, L * d * d, L * kv * d, L * kv * d, L * d * d, L * d, L * h * d, L * d * h, L * h * d, d,
		c.MaxSeqLen * c.HeadDim() / 2, c.MaxSeqLen * c.HeadDim() / 2}
	if !c.TiedEmbeddings {
		sizes = append(sizes, c.VocabSize*d)
	}
	for _, n := range sizes {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.Float64()*2 - 1)
		}
		f.tensors = append(f.tensors, v)
	}
	return f
}

func (f *l2cFile) bytes() []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, f.header)
	for _, t := range f.tensors {
		binary.Write(&b, binary.LittleEndian, t)
	}
	return b.Bytes()
}

// at returns element [l][r][c] of tensor i seen as [L][rows][cols].
func (f *l2cFile) at(i, l, rows, cols, r, c int) float64 {
	return float64(f.tensors[i][(l*rows+r)*cols+c])
}

func TestLoadLlama2C(t *testing.T) {
	for _, tied := range []bool{true, false} {
		c := tinyConfig(tied, Interleaved)
		c.NormEps, c.RopeTheta = 1e-5, 10000
		f := newL2CFile(c, rand.New(rand.NewPCG(1, 2)))
		path := filepath.Join(t.TempDir(), "model.bin")
		if err := os.WriteFile(path, f.bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
			got, s, err := LoadLlama2C(path, dt)
			if err != nil {
				t.Fatalf("%+v", err)
			}
			if got != c {
				t.Fatalf("config %+v, want %+v", got, c)
			}
			if s.Dtype() != dt {
				t.Fatalf("store dtype %v", s.Dtype())
			}
			w := refWeights(s)
			d, kv, h := c.Dim, c.KVDim(), c.HiddenDim
			check := func(name string, want func(r, col int) float64, rows, cols int) {
				t.Helper()
				v := w[name]
				if len(v) != rows*cols {
					t.Fatalf("%s has %d values, want %d×%d", name, len(v), rows, cols)
				}
				for r := 0; r < rows; r++ {
					for col := 0; col < cols; col++ {
						if v[r*cols+col] != want(r, col) {
							t.Fatalf("%s[%d,%d] = %v, want %v", name, r, col, v[r*cols+col], want(r, col))
						}
					}
				}
			}
			check(EmbedName, func(r, col int) float64 { return f.at(0, 0, c.VocabSize, d, r, col) }, c.VocabSize, d)
			for l := 0; l < c.NLayers; l++ {
				p := layerPath(l)
				check(inputNormName(l), func(_, col int) float64 { return f.at(1, l, 1, d, 0, col) }, 1, d)
				// The store holds [in, out]; llama2.c [out, in].
				check(p+".self_attn.q_proj.weight", func(r, col int) float64 { return f.at(2, l, d, d, col, r) }, d, d)
				check(p+".self_attn.k_proj.weight", func(r, col int) float64 { return f.at(3, l, kv, d, col, r) }, d, kv)
				check(p+".self_attn.v_proj.weight", func(r, col int) float64 { return f.at(4, l, kv, d, col, r) }, d, kv)
				check(p+".self_attn.o_proj.weight", func(r, col int) float64 { return f.at(5, l, d, d, col, r) }, d, d)
				check(postNormName(l), func(_, col int) float64 { return f.at(6, l, 1, d, 0, col) }, 1, d)
				check(p+".mlp.gate_proj.weight", func(r, col int) float64 { return f.at(7, l, h, d, col, r) }, d, h)
				check(p+".mlp.down_proj.weight", func(r, col int) float64 { return f.at(8, l, d, h, col, r) }, h, d)
				check(p+".mlp.up_proj.weight", func(r, col int) float64 { return f.at(9, l, h, d, col, r) }, d, h)
			}
			check(FinalNormName, func(_, col int) float64 { return f.at(10, 0, 1, d, 0, col) }, 1, d)
			if !tied {
				check(HeadName, func(r, col int) float64 { return f.at(13, 0, c.VocabSize, d, col, r) }, d, c.VocabSize)
			} else if _, ok := s.Get(HeadName); ok {
				t.Error("a tied model must not have lm_head")
			}
			for _, p := range s.Params() {
				if p.Trainable {
					t.Errorf("%s is trainable", p.Name)
				}
			}
		}
	}
}

func TestLoadLlama2CErrors(t *testing.T) {
	c := tinyConfig(false, Interleaved)
	good := newL2CFile(c, rand.New(rand.NewPCG(3, 4))).bytes()
	header := func(mut func(h []int32)) []byte {
		h := make([]int32, 7)
		for i := range h {
			h[i] = int32(binary.LittleEndian.Uint32(good[4*i:]))
		}
		mut(h)
		var b bytes.Buffer
		binary.Write(&b, binary.LittleEndian, h)
		return append(b.Bytes(), good[28:]...)
	}
	cases := map[string][]byte{
		"28-byte header":        good[:20],
		"implies":               good[:len(good)-4],
		"bytes, its header":     append(append([]byte(nil), good...), 0, 0, 0, 0),
		"version ≥ 1":           header(func(h []int32) { h[0] = llama2cMagic }),
		"multiple of n_heads":   header(func(h []int32) { h[3] = 3 }),
		"must be positive":      header(func(h []int32) { h[2] = 0 }),
		"is odd":                header(func(h []int32) { h[0], h[3], h[4] = 6, 2, 2 }),
		"impossibly large":      header(func(h []int32) { h[0], h[1], h[2], h[3], h[4] = 1<<30, math.MaxInt32, math.MaxInt32, 2, 2 }),
		"multiple of n_kv_head": header(func(h []int32) { h[4] = 3 }),
	}
	dir := t.TempDir()
	for want, data := range cases {
		if _, _, err := ParseLlama2C(data, tensor.Float32); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v", want, err)
		}
		path := filepath.Join(dir, "bad.bin")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := LoadLlama2C(path, tensor.Float32); err == nil {
			t.Errorf("%q: LoadLlama2C accepted a bad file", want)
		}
	}
	if _, _, err := LoadLlama2C(filepath.Join(dir, "missing.bin"), tensor.Float32); err == nil {
		t.Error("a missing file must be an error")
	}
	if _, _, err := ParseLlama2C(good, tensor.Int); err == nil {
		t.Error("an int store must be rejected")
	}
}

func TestStories260KConfig(t *testing.T) {
	c, s, err := LoadLlama2C(sharedData(t, "llama2c/stories260K.bin"), tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Dim: 64, HiddenDim: 172, NLayers: 5, NHeads: 8, NKVHeads: 4, VocabSize: 512, MaxSeqLen: 512, NormEps: 1e-5, RopeTheta: 10000, TiedEmbeddings: true, Rope: Interleaved}
	if c != want {
		t.Errorf("config %+v", c)
	}
	if _, total := s.Count(); total != 260032 {
		t.Errorf("%d parameters, want 260,032", total)
	}
}

func FuzzParseLlama2C(f *testing.F) {
	c := Config{Dim: 4, HiddenDim: 3, NLayers: 1, NHeads: 2, NKVHeads: 1, VocabSize: 3, MaxSeqLen: 2, NormEps: 1e-5, RopeTheta: 10000}
	good := newL2CFile(c, rand.New(rand.NewPCG(5, 6))).bytes()
	f.Add(good)
	f.Add(good[:28])
	f.Add(good[:len(good)-1])
	c.TiedEmbeddings = true
	f.Add(newL2CFile(c, rand.New(rand.NewPCG(5, 6))).bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, s, err := ParseLlama2C(data, tensor.Float32)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted an invalid config: %v", err)
		}
		n, _ := llama2cFloats(cfg)
		if _, total := s.Count(); uint64(total) != n-uint64(cfg.MaxSeqLen*cfg.HeadDim()) || 28+4*n != uint64(len(data)) {
			t.Fatalf("accepted %d bytes holding %d parameters for %+v", len(data), total, cfg)
		}
	})
}

// freqStart returns the byte offset of the rotary tables in a llama2.c file
// of config c, and their length in bytes.
func freqStart(c Config) (start, n int) {
	d, kv, h, L := c.Dim, c.KVDim(), c.HiddenDim, c.NLayers
	floats := c.VocabSize*d + L*d + L*d*d + 2*L*kv*d + L*d*d + L*d + 3*L*h*d + d
	return llama2cHeaderSize + 4*floats, 4 * c.MaxSeqLen * c.HeadDim()
}

// writeBack saves the model with SaveLlama2C and checks that the file equals
// orig outside the rotary tables; it returns the file and where the tables
// start and how many bytes they take.
func writeBack(t *testing.T, orig []byte, c Config, s *layers.Store) (got []byte, start, n int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model.bin")
	if err := SaveLlama2C(path, c, s); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	start, n = freqStart(c)
	if len(got) != len(orig) || !bytes.Equal(got[:start], orig[:start]) || !bytes.Equal(got[start+n:], orig[start+n:]) {
		t.Fatalf("the written file differs from the original outside the rotary tables (rope %v, tied %t)", c.Rope, c.TiedEmbeddings)
	}
	return got, start, n
}

// TestSaveLlama2CRoundTrip writes back a loaded checkpoint, also after
// converting it to the Halves layout: every byte but the rotary tables (which
// the writer computes) equals the original, and the tables are cos and sin
// of t·10000^(−2i/head_dim).
func TestSaveLlama2CRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tied := range []bool{true, false} {
		c := Config{Dim: 16, HiddenDim: 24, NLayers: 2, NHeads: 4, NKVHeads: 2, VocabSize: 11, MaxSeqLen: 6, TiedEmbeddings: tied}
		orig := newL2CFile(c, rng).bytes()
		for _, halves := range []bool{false, true} {
			cfg, s, err := ParseLlama2C(orig, tensor.Float32)
			if err != nil {
				t.Fatal(err)
			}
			if halves {
				if cfg, err = ToHFLayout(cfg, s); err != nil {
					t.Fatal(err)
				}
			}
			got, start, n := writeBack(t, orig, cfg, s)
			hd := cfg.HeadDim()
			for pos := 0; pos < cfg.MaxSeqLen; pos++ {
				for i := 0; i < hd/2; i++ {
					a := float64(pos) / math.Pow(10000, float64(2*i)/float64(hd))
					k := pos*hd/2 + i
					re := math.Float32frombits(binary.LittleEndian.Uint32(got[start+4*k:]))
					im := math.Float32frombits(binary.LittleEndian.Uint32(got[start+n/2+4*k:]))
					if math.Abs(float64(re)-math.Cos(a)) > 1e-6 || math.Abs(float64(im)-math.Sin(a)) > 1e-6 {
						t.Fatalf("rotary table at t=%d, i=%d: %v, %v; want cos, sin of %v", pos, i, re, im, a)
					}
				}
			}
		}
	}
	c, s, err := ParseLlama2C(newL2CFile(Config{Dim: 8, HiddenDim: 8, NLayers: 1, NHeads: 2, NKVHeads: 2, VocabSize: 5, MaxSeqLen: 4, TiedEmbeddings: true}, rng).bytes(), tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	c.RopeTheta = 500000
	if err := SaveLlama2C(filepath.Join(t.TempDir(), "x.bin"), c, s); err == nil || !strings.Contains(err.Error(), "rope theta") {
		t.Errorf("rope theta 500000 written as llama2.c: %v", err)
	}
}

// TestSaveLlama2CStories writes stories260K back: the file equals the
// original byte for byte outside the rotary tables, and the tables, which
// llama2.c's PyTorch export computed, agree with ours to float32 rounding.
func TestSaveLlama2CStories(t *testing.T) {
	path := sharedData(t, "llama2c/stories260K.bin")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, s, err := LoadLlama2C(path, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	if c, err = ToHFLayout(c, s); err != nil {
		t.Fatal(err)
	}
	got, start, n := writeBack(t, orig, c, s)
	var worst float64
	for k := 0; k < n/4; k++ {
		a := math.Float32frombits(binary.LittleEndian.Uint32(got[start+4*k:]))
		b := math.Float32frombits(binary.LittleEndian.Uint32(orig[start+4*k:]))
		worst = math.Max(worst, math.Abs(float64(a-b)))
	}
	t.Logf("rotary tables: largest difference from llama2.c's %g", worst)
	if worst > 1e-6 {
		t.Errorf("rotary tables differ from llama2.c's by up to %g", worst)
	}
}
