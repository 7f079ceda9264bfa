package llama

import (
	"math"
	"strings"
	"testing"

	"gorgonia.org/tensor"
)

// TestLlama3RopeScaling: the three bands of transformers'
// _compute_llama3_parameters, and config.json's rope_scaling read and
// written back.
func TestLlama3RopeScaling(t *testing.T) {
	s := RopeScaling{Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPos: 8192}
	if got := s.Apply(1); got != 1 {
		t.Errorf("high frequency changed: %v", got)
	}
	low := 1 / math.Pow(500000, 62.0/64)
	if got := s.Apply(low); math.Abs(got-low/32) > 1e-18 {
		t.Errorf("low frequency %v → %v, want %v", low, got, low/32)
	}
	mid := 2 * math.Pi / 4096 // wavelength 4096: a third of the way from scaled to kept
	if got, want := s.Apply(mid), 2.0/3*mid/32+mid/3; math.Abs(got-want) > 1e-15 {
		t.Errorf("medium frequency %v → %v, want %v", mid, got, want)
	}
	if (RopeScaling{}).Apply(mid) != mid {
		t.Error("the zero value scales")
	}
	cfg := `{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
	  "num_key_value_heads": 1, "vocab_size": 300, "rope_theta": 500000.0, "head_dim": 32,
	  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}}`
	c, err := ParseHFConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if c.RopeScaling != s {
		t.Fatalf("parsed %+v", c.RopeScaling)
	}
	out, err := c.HFConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseHFConfig(out)
	if err != nil || back != c {
		t.Fatalf("written and read back: %+v, %v", back, err)
	}
	for _, bad := range []string{`{"rope_type": "yarn", "factor": 4.0}`, `{"rope_type": "llama3", "factor": 8.0}`,
		`{"rope_type": "llama3", "factor": 0.5, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192}`} {
		_, err := ParseHFConfig([]byte(strings.Replace(cfg, cfg[strings.Index(cfg, `{"factor"`):strings.LastIndex(cfg, "}")], bad, 1)))
		if err == nil || !strings.Contains(err.Error(), "rope_scaling") {
			t.Errorf("%s: %v", bad, err)
		}
	}
	st, err := NewStore(c, tensor.Float32, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := SaveLlama2C(t.TempDir()+"/m.bin", c, st); err == nil || !strings.Contains(err.Error(), "rope_scaling") {
		t.Errorf("SaveLlama2C of a scaled model: %v", err)
	}
}
