package layers

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"gorgonia.org/tensor"
)

// stack lists the sites of n layers with the given targets, named like a
// Hugging Face module tree, from shapes alone.
func stack(n int, prefix string, targets map[string][2]int, order ...string) []Site {
	var sites []Site
	for l := 0; l < n; l++ {
		for _, t := range order {
			io := targets[t]
			path := fmt.Sprintf("%s.%d.%s", prefix, l, t)
			sites = append(sites, Site{Layer: l, Target: t, Path: path, DIn: io[0], DOut: io[1], Weight: path + ".weight"})
		}
	}
	return sites
}

// Every row of LILY.md's parameter table, from shapes alone.
func TestLilyCountTable(t *testing.T) {
	roberta := stack(12, "roberta.encoder.layer", map[string][2]int{"attention.self.query": {768, 768}, "attention.self.value": {768, 768}}, "attention.self.query", "attention.self.value")
	llama8b := stack(32, "model.layers", map[string][2]int{"self_attn.q_proj": {4096, 4096}, "self_attn.k_proj": {4096, 1024}, "self_attn.v_proj": {4096, 1024}}, "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
	mamba := stack(64, "backbone.layers", map[string][2]int{"mixer.in_proj": {4096, 16384}}, "mixer.in_proj")
	llama3b := stack(28, "model.layers", map[string][2]int{"self_attn.q_proj": {3072, 3072}, "self_attn.v_proj": {3072, 1024}}, "self_attn.q_proj", "self_attn.v_proj")
	rows := []struct {
		name  string
		sites []Site
		cfg   LilyConfig
		want  int
	}{
		{"RoBERTa-base q,v r32 2A 2B", roberta, LilyConfig{R: 32, StrideA: 6, NumB: 2, Scaling: 1, TargetModules: []string{"query", "value"}}, 198144},
		{"RoBERTa-base q,v r32 3A 3B", roberta, LilyConfig{R: 32, StrideA: 4, NumB: 3, Scaling: 1, TargetModules: []string{"query", "value"}}, 297216},
		{"LLaMA3-8B q,k,v r16 4A 4B", llama8b, LilyConfig{R: 16, StrideA: 8, NumB: 4, Scaling: 1, TargetModules: []string{"q_proj", "k_proj", "v_proj"}}, 1185792},
		{"Falcon-Mamba-7B in_proj r40 4A 4B", mamba, LilyConfig{R: 40, StrideA: 16, NumB: 4, Scaling: 1, TargetModules: []string{"in_proj"}}, 3287040},
		{"Llama-3.2-3B q,v r896 stride14 2B", llama3b, LilyConfig{R: 896, StrideA: 14, NumB: 2, Scaling: 1, TargetModules: []string{"q_proj", "v_proj"}}, 18450432},
	}
	for _, row := range rows {
		lily, err := NewLily(row.cfg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := CountParams(lily, row.sites)
		if err != nil {
			t.Fatal(err)
		}
		if got != row.want {
			t.Errorf("%s: counted %d trainable parameters, LILY.md says %d", row.name, got, row.want)
		}
	}
}

// LoRA's count is 2·r·(DIn+DOut)... per site: r·(DIn + DOut).
func TestLoRACount(t *testing.T) {
	sites := stack(12, "roberta.encoder.layer", map[string][2]int{"attention.self.query": {768, 768}, "attention.self.value": {768, 768}}, "attention.self.query", "attention.self.value")
	lora, err := NewLoRA(LoRAConfig{R: 8, Alpha: 16, TargetModules: []string{"query", "value"}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := CountParams(lora, sites)
	if err != nil {
		t.Fatal(err)
	}
	if want := 24 * 8 * (768 + 768); got != want {
		t.Errorf("LoRA r=8 on RoBERTa-base q,v: %d, want %d (PEFT reports 294,912)", got, want)
	}
}

func TestSummary(t *testing.T) {
	got := Summary(198144, 124843776)
	want := "trainable params: 198,144 || all params: 124,843,776 || trainable%: 0.1587"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got := Summary(0, 0); got != "trainable params: 0 || all params: 0 || trainable%: 0.0000" {
		t.Errorf("empty summary %q", got)
	}
	if commas(1000) != "1,000" || commas(999) != "999" || commas(-1234567) != "-1,234,567" {
		t.Error("thousands separators are wrong")
	}
}

// Absurd sizes are errors, not wrapped counts or allocation panics.
func TestElementsOverflow(t *testing.T) {
	for _, c := range []struct {
		shape []int
		want  int
		ok    bool
	}{
		{[]int{3, 4, 5}, 60, true},
		{[]int{3, 0, 1 << 62}, 0, true},
		{[]int{1 << 31, 1 << 31}, 1 << 62, true},
		{[]int{1 << 32, 1 << 31}, 0, false},
		{[]int{1 << 40, 1 << 30, 2}, 0, false},
		{[]int{2, -3}, 0, false},
	} {
		got, err := Elements(c.shape)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("Elements(%v) = %d, %v", c.shape, got, err)
		}
	}
	sites := stack(2, "layer", map[string][2]int{"q": {8, 8}}, "q")
	lily, err := NewLily(LilyConfig{R: 1 << 40, StrideA: 1, NumB: 1 << 30, Scaling: 1, TargetModules: []string{"q"}})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := CountParams(lily, sites); err == nil {
		t.Fatalf("an adapter of r 2^40 and 2^30 B's counted %d parameters", n)
	}
	s, err := NewStore(tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.New(ParamSpec{Name: "w", Shape: tensor.Shape{1 << 40, 1 << 40}}, true, nil); err == nil {
		t.Fatal("a 2^80-element parameter was allocated")
	}
}

func TestCheckFinite(t *testing.T) {
	if i := FirstNonFinite([]float32{1, 2, float32(math.Inf(-1)), 3}); i != 2 {
		t.Errorf("-Inf at 2 found at %d", i)
	}
	if i := FirstNonFinite([]float64{1, math.MaxFloat64, -0}); i != -1 {
		t.Errorf("finite values: %d", i)
	}
	ok := tensor.New(tensor.WithShape(2), tensor.WithBacking([]float64{1, 2}))
	if err := CheckFinite("w", ok); err != nil {
		t.Fatal(err)
	}
	bad := tensor.New(tensor.WithShape(3), tensor.WithBacking([]float32{1, float32(math.NaN()), 2}))
	if err := CheckFinite("model.w", bad); err == nil || !strings.Contains(err.Error(), "tensor model.w holds NaN at element 1 of 3") {
		t.Fatalf("%v", err)
	}
}
