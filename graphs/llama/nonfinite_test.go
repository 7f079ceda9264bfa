package llama

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"gorgonia.org/tensor"
)

// A NaN or ±Inf weight in a llama2.c or Hugging Face checkpoint is an error
// naming the tensor, also when a float64 value overflows a float32 store.
func TestNonFiniteWeightsRefused(t *testing.T) {
	c := tinyConfig(true, Interleaved)
	f := newL2CFile(c, rand.New(rand.NewPCG(1, 1)))
	f.tensors[2][5] = float32(math.NaN()) // wq of layer 0
	_, _, err := ParseLlama2C(f.bytes(), tensor.Float32)
	if err == nil || !strings.Contains(err.Error(), "model.layers.0.self_attn.q_proj.weight holds NaN") {
		t.Errorf("llama2.c with a NaN: %v", err)
	}

	h := tinyConfig(false, Halves)
	for _, tc := range []struct {
		value float64
		load  tensor.Dtype
		want  string
	}{
		{math.Inf(1), tensor.Float64, "model.norm.weight holds +Inf"},
		{-1e300, tensor.Float32, "model.norm.weight holds -Inf"},
	} {
		s := randomStore(t, h, tensor.Float64, 1)
		p, _ := s.Get(FinalNormName)
		p.Value.Data().([]float64)[3] = tc.value
		dir := filepath.Join(t.TempDir(), "m")
		if err := SaveHF(dir, h, s); err != nil {
			t.Fatal(err)
		}
		if _, _, err := LoadHF(dir, tc.load); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v loaded as %v: %v, want %q", tc.value, tc.load, err, tc.want)
		}
	}
}

// Generation stops with an error on logits that are not finite, instead of
// drawing a token from them.
func TestGenerateStopsOnNonFiniteLogits(t *testing.T) {
	c := tinyConfig(true, Halves)
	s := randomStore(t, c, tensor.Float32, 1)
	p, _ := s.Get(FinalNormName)
	p.Value.Data().([]float32)[0] = float32(math.Inf(1))
	gen, err := NewGenerator(c, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	for _, temp := range []float64{0, 1} {
		_, err := gen.GenerateTokens([]int{1, 2}, SampleOptions{Steps: 8, Temperature: temp})
		if err == nil || !strings.Contains(err.Error(), "logits at position 1 are not finite") {
			t.Errorf("temperature %v: %v", temp, err)
		}
	}
}
