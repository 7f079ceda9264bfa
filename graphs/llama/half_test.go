package llama

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/tensorfile"
	"gorgonia.org/tensor"
)

// halfCase is one half-precision dtype that frozen weights are kept in.
type halfCase struct {
	name     string       // as PyTorch's config.json spells it
	dt       tensor.Dtype // lilyop's
	file     string       // tensorfile's
	overflow float64      // a float32 value past its range
	// encode turns a tensor of file f into one of this dtype.
	encode func(f *tensorfile.File, name string) (tensorfile.Tensor, error)
}

// halfCases are the dtypes the half-precision tests run over.
var halfCases = []halfCase{
	{"bfloat16", lilyop.BFloat16, tensorfile.BF16, 3.4e38, func(f *tensorfile.File, name string) (tensorfile.Tensor, error) {
		h, shape, err := f.BF16(name)
		return tensorfile.FromBF16(name, shape, h), err
	}},
	{"float16", lilyop.Float16, tensorfile.F16, 7e4, func(f *tensorfile.File, name string) (tensorfile.Tensor, error) {
		h, shape, err := f.F16(name)
		return tensorfile.FromF16(name, shape, h), err
	}},
}

// forHalves runs f as a subtest for each of halfCases.
func forHalves(t *testing.T, f func(t *testing.T, hc halfCase)) {
	for _, hc := range halfCases {
		t.Run(hc.name, func(t *testing.T) { f(t, hc) })
	}
}

// halfPair returns two copies of a random model: one whose matrices are
// kept in the half hdt, and one whose matrices hold the same rounded
// values in the store's dtype.
func halfPair(t testing.TB, c Config, dt, hdt tensor.Dtype, seed uint64) (half, rounded *layers.Store) {
	t.Helper()
	half, rounded = randomStore(t, c, dt, seed), randomStore(t, c, dt, seed)
	for _, s := range []*layers.Store{half, rounded} {
		if n, err := s.ConvertFrozen(hdt, layers.Matrices); err != nil || n != 1+7*c.NLayers+map[bool]int{true: 0, false: 1}[c.TiedEmbeddings] {
			t.Fatalf("converted %d: %v", n, err)
		}
	}
	if _, err := rounded.ConvertFrozen(dt, nil); err != nil {
		t.Fatal(err)
	}
	return half, rounded
}

// The logits and loss of a model with half-precision (bfloat16, float16) weights equal those of the
// float32 model on the rounded weights, to float32 summation
// order (bit for bit where both run on package gemm).
func TestHalfForwardMatchesRoundedFloat32(t *testing.T) {
	forHalves(t, func(t *testing.T, hc halfCase) {
		for _, c := range []Config{tinyConfig(true, Interleaved), tinyConfig(false, Halves)} {
			half, rounded := halfPair(t, c, tensor.Float32, hc.dt, 21)
			seqs := randomTokens(rand.New(rand.NewPCG(21, 1)), c.VocabSize, 6, 4)
			var logits [2][]float64
			var losses [2]float64
			for i, s := range []*layers.Store{half, rounded} {
				b := buildModel(t, c, s, nil, 2, 6, false)
				if err := b.m.SetBatch(seqs); err != nil {
					t.Fatal(err)
				}
				losses[i] = b.run(t)
				logits[i] = toFloat64s(b.m.Logits.Value())
				b.vm.Close()
			}
			closeTo(t, "logits", logits[0], logits[1], 1e-5)
			closeTo(t, "loss", losses[:1], losses[1:], 1e-5)
		}
	})
}

// Adapter gradients of a float64 model whose base weights are kept in
// bfloat16 or float16 pass the central-difference check.
func TestHalfGradientLoRA(t *testing.T) {
	forHalves(t, func(t *testing.T, hc halfCase) {
		c := tinyConfig(false, Halves)
		s, _ := halfPair(t, c, tensor.Float64, hc.dt, 22)
		lora, err := layers.NewLoRA(layers.LoRAConfig{R: 2, Alpha: 4, TargetModules: []string{"q_proj", "v_proj", "down_proj"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := layers.Attach(s, lora, c.Sites(), rand.New(rand.NewPCG(22, 22))); err != nil {
			t.Fatal(err)
		}
		for _, p := range s.Trainable() {
			for i, v := range p.Value.Data().([]float64) {
				p.Value.Data().([]float64)[i] = v + 0.3*math.Sin(float64(i)) // non-zero B
			}
		}
		gradCheck(t, c, s, lora)
	})
}

// Generation with bfloat16 or float16 weights equals generation with the same weights
// in float32, greedy and sampled.
func TestHalfGenerationMatchesFloat32(t *testing.T) {
	forHalves(t, func(t *testing.T, hc halfCase) {
		c := tinyConfig(true, Halves)
		half, rounded := halfPair(t, c, tensor.Float32, hc.dt, 23)
		for _, opt := range []SampleOptions{{Steps: 16}, {Steps: 16, Temperature: 1, Seed: 3}} {
			var toks [2][]int
			for i, s := range []*layers.Store{half, rounded} {
				gen, err := NewGenerator(c, s, nil)
				if err != nil {
					t.Fatal(err)
				}
				g, err := gen.GenerateTokens([]int{1, 5, 2}, opt)
				gen.Close()
				if err != nil {
					t.Fatalf("%+v", err)
				}
				toks[i] = g.Tokens
			}
			if !reflect.DeepEqual(toks[0], toks[1]) || len(toks[0]) != 17 {
				t.Fatalf("temperature %v: %s %v, float32 %v", opt.Temperature, hc.name, toks[0], toks[1])
			}
		}
	})
}

// stories260K with bfloat16 or float16 weights writes what it writes with the
// rounded weights in float32.
func TestHalfStories260K(t *testing.T) {
	forHalves(t, func(t *testing.T, hc halfCase) {
		c, half, tok := loadStories(t, tensor.Float32)
		_, rounded, _ := loadStories(t, tensor.Float32)
		if _, err := half.ConvertFrozen(hc.dt, layers.Matrices); err != nil {
			t.Fatal(err)
		}
		if _, err := rounded.ConvertFrozen(hc.dt, layers.Matrices); err != nil {
			t.Fatal(err)
		}
		if _, err := rounded.ConvertFrozen(tensor.Float32, nil); err != nil {
			t.Fatal(err)
		}
		var texts [2]string
		for i, s := range []*layers.Store{half, rounded} {
			res, err := Generate(c, s, nil, tok, "Once upon a time", SampleOptions{Steps: 64})
			if err != nil {
				t.Fatalf("%+v", err)
			}
			texts[i] = res.Text
		}
		if texts[0] != texts[1] {
			t.Fatalf("%s:\n%q\nfloat32:\n%q", hc.name, texts[0], texts[1])
		}
	})
}

// LoadHFWith keeps a BF16 (F16) checkpoint's matrices in bfloat16 (float16;
// norms in the store's dtype), converts on request, and SaveHF writes
// them back as BF16 (F16), bit for bit.
func TestLoadHFWithHalf(t *testing.T) {
	forHalves(t, func(t *testing.T, hc halfCase) {
		for _, tied := range []bool{true, false} {
			c := tinyConfig(tied, Halves)
			ts := hfTensors(c, rand.New(rand.NewPCG(24, 24)))
			bf := map[string]tensorfile.Tensor{}
			for name, x := range ts {
				file, err := tensorfile.Decode(mustEncode(t, x))
				if err != nil {
					t.Fatal(err)
				}
				if bf[name], err = hc.encode(file, name); err != nil {
					t.Fatal(err)
				}
			}
			dir := t.TempDir()
			cfg := strings.Replace(strings.Replace(tinyHFConfig, "%t", map[bool]string{true: "true", false: "false"}[tied], 1), `"float32"`, `"`+hc.name+`"`, 1)
			writeHF(t, dir, cfg, bf, 2)

			_, keep, err := LoadHFWith(dir, HFOptions{})
			if err != nil {
				t.Fatalf("%+v", err)
			}
			_, conv, err := LoadHF(dir, tensor.Float32)
			if err != nil {
				t.Fatal(err)
			}
			f32file := t.TempDir()
			writeHF(t, f32file, cfg, ts, 1)
			_, rounded, err := LoadHFWith(f32file, HFOptions{Weights: hc.dt})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range keep.Params() {
				want := hc.dt
				if p.Value.Dims() == 1 {
					want = tensor.Float32
				}
				if p.Value.Dtype() != want {
					t.Fatalf("%s kept as %v, want %v", p.Name, p.Value.Dtype(), want)
				}
				q, _ := conv.Get(p.Name)
				r, _ := rounded.Get(p.Name)
				if q.Value.Dtype() != tensor.Float32 || r.Value.Dtype() != want {
					t.Fatalf("%s converted to %v and %v", p.Name, q.Value.Dtype(), r.Value.Dtype())
				}
				if a, b, d := layers.Float64s(p.Value), layers.Float64s(q.Value), layers.Float64s(r.Value); !reflect.DeepEqual(a, b) || (want == hc.dt && !reflect.DeepEqual(a, d)) {
					t.Fatalf("%s: values differ between the %s and converted loads", p.Name, hc.name)
				}
			}
			_, kb := keep.Bytes()
			_, cb := conv.Bytes()
			if kb >= cb*6/10 {
				t.Fatalf("%s store takes %d bytes, the float32 one %d", hc.name, kb, cb)
			}
			// Save and load again: the same bits, still bfloat16.
			out := filepath.Join(t.TempDir(), "saved")
			if err := SaveHF(out, c, keep); err != nil {
				t.Fatal(err)
			}
			f, err := tensorfile.Open(filepath.Join(out, "model.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			if dt, _ := f.Dtype(EmbedName); dt != hc.file {
				t.Fatalf("saved embedding as %s", dt)
			}
			_, again, err := LoadHFWith(out, HFOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range keep.Params() {
				q, _ := again.Get(p.Name)
				if !reflect.DeepEqual(p.Value.Data(), q.Value.Data()) {
					t.Fatalf("%s changed in SaveHF/LoadHFWith", p.Name)
				}
			}
		}
		if _, _, err := LoadHFWith(t.TempDir(), HFOptions{Weights: tensor.Float64}); err == nil || !strings.Contains(err.Error(), "neither") {
			t.Fatalf("float64 weights in a float32 store: %v", err)
		}
		if _, _, err := LoadHFWith(t.TempDir(), HFOptions{Dtype: hc.dt}); err == nil {
			t.Fatal("a bfloat16 store accepted")
		}
	})
}

// A NaN or ±Inf in a BF16 (F16) checkpoint is refused naming the tensor,
// in half precision as in float32 storage; a float32 value beyond the
// half's range too.
func TestHalfNonFiniteWeightsRefused(t *testing.T) {
	forHalves(t, func(t *testing.T, hc halfCase) {
		c := tinyConfig(false, Halves)
		for _, tc := range []struct {
			value float64
			half  bool
			want  string
		}{
			{math.NaN(), true, "model.layers.1.mlp.up_proj.weight holds NaN"},
			{math.Inf(-1), true, "model.layers.1.mlp.up_proj.weight holds -Inf"},
			{hc.overflow, false, "model.layers.1.mlp.up_proj.weight holds +Inf"},
		} {
			s := randomStore(t, c, tensor.Float32, 25)
			p, _ := s.Get("model.layers.1.mlp.up_proj.weight")
			p.Value.Data().([]float32)[7] = float32(tc.value)
			if tc.half {
				if _, err := s.ConvertFrozen(hc.dt, layers.Matrices); err != nil {
					t.Fatal(err)
				}
			}
			dir := filepath.Join(t.TempDir(), "m")
			if err := SaveHF(dir, c, s); err != nil {
				t.Fatal(err)
			}
			for name, o := range map[string]HFOptions{"as in the file": {}, hc.name: {Weights: hc.dt}, "float32": {Weights: tensor.Float32}} {
				if !tc.half && name != hc.name {
					continue // the overflow is finite in float32
				}
				if _, _, err := LoadHFWith(dir, o); err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%v loaded with weights %s: %v, want %q", tc.value, name, err, tc.want)
				}
			}
		}
	})
}
