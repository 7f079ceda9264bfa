package llama

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lilygo/lily/tensorfile"
	"gorgonia.org/tensor"
)

// hfTensors makes random tensors with Hugging Face's names and PyTorch
// shapes ([out, in] for linears) for config c.
func hfTensors(c Config, rng *rand.Rand) map[string]tensorfile.Tensor {
	out := map[string]tensorfile.Tensor{}
	add := func(name string, shape ...int) {
		n := 1
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.Float64() - 0.5)
			if strings.HasSuffix(name, "norm.weight") {
				v[i]++
			}
		}
		out[name] = tensorfile.FromFloat32(name, shape, v)
	}
	add("model.embed_tokens.weight", c.VocabSize, c.Dim)
	for l := 0; l < c.NLayers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", c.Dim)
		add(p+"post_attention_layernorm.weight", c.Dim)
		add(p+"self_attn.q_proj.weight", c.Dim, c.Dim)
		add(p+"self_attn.k_proj.weight", c.KVDim(), c.Dim)
		add(p+"self_attn.v_proj.weight", c.KVDim(), c.Dim)
		add(p+"self_attn.o_proj.weight", c.Dim, c.Dim)
		add(p+"mlp.gate_proj.weight", c.HiddenDim, c.Dim)
		add(p+"mlp.up_proj.weight", c.HiddenDim, c.Dim)
		add(p+"mlp.down_proj.weight", c.Dim, c.HiddenDim)
	}
	add("model.norm.weight", c.Dim)
	if !c.TiedEmbeddings {
		add("lm_head.weight", c.VocabSize, c.Dim)
	}
	return out
}

// writeHF writes config.json and the tensors into dir, split over shards
// when shards > 1 (with an index).
func writeHF(t *testing.T, dir string, cfgJSON string, ts map[string]tensorfile.Tensor, shards int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfgJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	if shards <= 1 {
		var list []tensorfile.Tensor
		for _, x := range ts {
			list = append(list, x)
		}
		if err := tensorfile.Write(filepath.Join(dir, "model.safetensors"), list, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
		return
	}
	parts := make([][]tensorfile.Tensor, shards)
	weightMap := map[string]string{}
	i := 0
	for name, x := range ts {
		parts[i%shards] = append(parts[i%shards], x)
		weightMap[name] = fmt.Sprintf("model-%05d-of-%05d.safetensors", i%shards+1, shards)
		i++
	}
	for k, p := range parts {
		if err := tensorfile.Write(filepath.Join(dir, fmt.Sprintf("model-%05d-of-%05d.safetensors", k+1, shards)), p, nil); err != nil {
			t.Fatal(err)
		}
	}
	idx, _ := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": weightMap})
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), idx, 0o644); err != nil {
		t.Fatal(err)
	}
}

const tinyHFConfig = `{
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
  "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 2, "num_attention_heads": 2,
  "num_key_value_heads": 1, "vocab_size": 11, "max_position_embeddings": 16, "rms_norm_eps": 1e-05,
  "rope_theta": 100.0, "tie_word_embeddings": %t, "rope_scaling": null, "torch_dtype": "float32"
}`

func TestLoadHF(t *testing.T) {
	for _, tied := range []bool{false, true} {
		for _, shards := range []int{1, 3} {
			c := tinyConfig(tied, Halves)
			ts := hfTensors(c, rand.New(rand.NewPCG(1, uint64(shards))))
			ts["model.layers.0.self_attn.rotary_emb.inv_freq"] = tensorfile.FromFloat32("model.layers.0.self_attn.rotary_emb.inv_freq", []int{2}, []float32{1, 0.1})
			dir := t.TempDir()
			writeHF(t, dir, fmt.Sprintf(tinyHFConfig, tied), ts, shards)
			got, s, err := LoadHF(dir, tensor.Float64)
			if err != nil {
				t.Fatalf("%+v", err)
			}
			if got != c {
				t.Fatalf("config %+v, want %+v", got, c)
			}
			w := refWeights(s)
			for _, spec := range paramSpecs(c) {
				x := ts[spec.Name]
				f, err := tensorfile.Decode(mustEncode(t, x))
				if err != nil {
					t.Fatal(err)
				}
				src, shape, err := f.Float64(spec.Name)
				if err != nil {
					t.Fatal(err)
				}
				v := w[spec.Name]
				for i := range src {
					j := i
					if len(shape) == 2 && spec.Name != EmbedName {
						// PyTorch [out, in] element (r, col) is store (col, r).
						r, col := i/shape[1], i%shape[1]
						j = col*shape[0] + r
					}
					if v[j] != src[i] {
						t.Fatalf("%s element %d: %v, want %v", spec.Name, i, v[j], src[i])
					}
				}
			}
			// The loaded model computes the Hugging Face model.
			seq := randomTokens(rand.New(rand.NewPCG(4, 4)), c.VocabSize, 5)
			b := buildModel(t, got, s, nil, 1, 5, false)
			if err := b.m.SetBatch(seq); err != nil {
				t.Fatal(err)
			}
			b.run(t)
			ref := refForward(c, w, seq[0])
			for p := range ref {
				closeTo(t, "HF logits", b.logits(0, p), ref[p], 1e-10)
			}
			b.vm.Close()
		}
	}
}

func mustEncode(t *testing.T, x tensorfile.Tensor) []byte {
	t.Helper()
	b, err := tensorfile.Encode([]tensorfile.Tensor{x}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadHFErrors(t *testing.T) {
	c := tinyConfig(false, Halves)
	base := hfTensors(c, rand.New(rand.NewPCG(2, 2)))
	variant := func(mut func(m map[string]tensorfile.Tensor)) map[string]tensorfile.Tensor {
		m := map[string]tensorfile.Tensor{}
		for k, v := range base {
			m[k] = v
		}
		mut(m)
		return m
	}
	cases := []struct {
		want    string
		cfg     string
		tensors map[string]tensorfile.Tensor
	}{
		{"lacks model.norm.weight", fmt.Sprintf(tinyHFConfig, false), variant(func(m map[string]tensorfile.Tensor) { delete(m, "model.norm.weight") })},
		{"has shape [12 8]", fmt.Sprintf(tinyHFConfig, false), variant(func(m map[string]tensorfile.Tensor) {
			m["model.layers.0.mlp.down_proj.weight"] = tensorfile.FromFloat32("model.layers.0.mlp.down_proj.weight", []int{12, 8}, make([]float32, 96))
		})},
		{"unexpected tensors [model.layers.0.self_attn.q_proj.bias]", fmt.Sprintf(tinyHFConfig, false), variant(func(m map[string]tensorfile.Tensor) {
			m["model.layers.0.self_attn.q_proj.bias"] = tensorfile.FromFloat32("model.layers.0.self_attn.q_proj.bias", []int{8}, make([]float32, 8))
		})},
		{"rope_scaling", strings.Replace(fmt.Sprintf(tinyHFConfig, false), `"rope_scaling": null`, `"rope_scaling": {"type": "llama3"}`, 1), base},
		{"model_type", strings.Replace(fmt.Sprintf(tinyHFConfig, false), `"llama"`, `"mistral"`, 1), base},
		{"lacks vocab_size", strings.Replace(fmt.Sprintf(tinyHFConfig, false), `"vocab_size": 11,`, ``, 1), base},
		{"parsing config.json", `{"hidden_size": "eight"}`, base},
	}
	for _, tc := range cases {
		dir := t.TempDir()
		writeHF(t, dir, tc.cfg, tc.tensors, 1)
		if _, _, err := LoadHF(dir, tensor.Float32); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error with %q, got %v", tc.want, err)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(fmt.Sprintf(tinyHFConfig, false)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadHF(dir, tensor.Float32); err == nil || !strings.Contains(err.Error(), "neither") {
		t.Errorf("no weights: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte(`{"weight_map": {"a": "../x.safetensors"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadHF(dir, tensor.Float32); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("shard outside the directory: %v", err)
	}
}

// hfPermute is Hugging Face's convert_llama_weights_to_hf.py permute on a
// PyTorch [out, in] weight, written as its tensor view:
// w.view(heads, out/heads/2, 2, in).transpose(1, 2).reshape(out, in).
func hfPermute(w []float64, heads, out, in int) []float64 {
	half := out / heads / 2
	res := make([]float64, len(w))
	for h := 0; h < heads; h++ {
		for a := 0; a < 2; a++ { // after the transpose, axis 1 is the pair member
			for j := 0; j < half; j++ {
				src := ((h*half+j)*2 + a) * in // view index [h, j, a, :]
				dst := ((h*2+a)*half + j) * in // result index [h, a, j, :]
				copy(res[dst:dst+in], w[src:src+in])
			}
		}
	}
	return res
}

func TestSaveHFRoundTrip(t *testing.T) {
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		c := tinyConfig(false, Interleaved)
		s := randomStore(t, c, dt, 12)
		dir := filepath.Join(t.TempDir(), "out")
		if err := SaveHF(dir, c, s); err != nil {
			t.Fatalf("%+v", err)
		}
		// The file holds q/k permuted as Hugging Face's script does.
		f, err := tensorfile.Open(filepath.Join(dir, "model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		if f.Metadata()["format"] != "pt" {
			t.Error("transformers needs format=pt metadata")
		}
		w := refWeights(s)
		for _, name := range []string{"model.layers.1.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj.weight"} {
			got, shape, err := f.Float64(name)
			if err != nil {
				t.Fatal(err)
			}
			torch := transpose(w[name], shape[1], shape[0]) // store [in, out] → [out, in]
			want := torch
			if heads := map[bool]int{true: c.NHeads, false: c.NKVHeads}[strings.Contains(name, "q_proj")]; !strings.Contains(name, "v_proj") {
				want = hfPermute(torch, heads, shape[0], shape[1])
			}
			closeTo(t, name, got, want, 0)
		}
		if dtype, _ := f.Dtype(EmbedName); (dt == tensor.Float64) != (dtype == tensorfile.F64) {
			t.Errorf("a %v store was written as %s", dt, dtype)
		}
		// Loading it back gives the same model in the Halves layout.
		hc, hs, err := LoadHF(dir, dt)
		if err != nil {
			t.Fatalf("%+v", err)
		}
		want := c
		want.Rope = Halves
		if hc != want {
			t.Fatalf("config %+v, want %+v", hc, want)
		}
		seq := randomTokens(rand.New(rand.NewPCG(5, 5)), c.VocabSize, 7)
		var logits [2][]float64
		for i, b := range []*built{buildModel(t, c, s, nil, 1, 7, false), buildModel(t, hc, hs, nil, 1, 7, false)} {
			if err := b.m.SetBatch(seq); err != nil {
				t.Fatal(err)
			}
			b.run(t)
			logits[i] = toFloat64s(b.m.Logits.Value())
			b.vm.Close()
		}
		tol := 1e-12
		if dt == tensor.Float32 {
			tol = 1e-5
		}
		closeTo(t, "logits after SaveHF/LoadHF", logits[1], logits[0], tol)
	}
}

// TestStories260KInHFLayout converts the real llama2.c checkpoint to a
// Hugging Face checkpoint (q/k rows permuted) and back, in float64.
func TestStories260KInHFLayout(t *testing.T) {
	c, s, err := LoadLlama2C(sharedData(t, "llama2c/stories260K.bin"), tensor.Float64)
	if err != nil {
		t.Fatal(err)
	}
	seq := [][]int{{1, 403, 407, 261, 378, 412, 298, 315, 266, 300, 279, 277, 283, 291, 263}}
	dir := t.TempDir()
	if err := SaveHF(dir, c, s); err != nil {
		t.Fatal(err)
	}
	hc, hs, err := LoadHF(dir, tensor.Float64)
	if err != nil {
		t.Fatal(err)
	}
	var logits [2][]float64
	for i, b := range []*built{buildModel(t, c, s, nil, 1, len(seq[0]), false), buildModel(t, hc, hs, nil, 1, len(seq[0]), false)} {
		if err := b.m.SetBatch(seq); err != nil {
			t.Fatal(err)
		}
		b.run(t)
		logits[i] = toFloat64s(b.m.Logits.Value())
		b.vm.Close()
	}
	closeTo(t, "stories260K logits, llama2.c vs HF layout", logits[1], logits[0], 1e-10)
}

func TestParseHFConfig(t *testing.T) {
	c, err := ParseHFConfig([]byte(`{"hidden_size": 16, "intermediate_size": 40, "num_hidden_layers": 3, "num_attention_heads": 4, "vocab_size": 100}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Dim: 16, HiddenDim: 40, NLayers: 3, NHeads: 4, NKVHeads: 4, VocabSize: 100, MaxSeqLen: 2048, NormEps: 1e-6, RopeTheta: 10000, Rope: Halves}
	if c != want {
		t.Errorf("defaults: %+v, want %+v", c, want)
	}
	full := Config{Dim: 8, HiddenDim: 12, NLayers: 2, NHeads: 2, NKVHeads: 1, VocabSize: 11, MaxSeqLen: 16, NormEps: 1e-5, RopeTheta: 500000, TiedEmbeddings: true, Rope: Halves}
	js, err := full.HFConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseHFConfig(js)
	if err != nil || back != full {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	for _, bad := range []string{
		`{"hidden_size": 16, "intermediate_size": 40, "num_hidden_layers": 3, "num_attention_heads": 4, "vocab_size": 100, "hidden_act": "gelu"}`,
		`{"hidden_size": 16, "intermediate_size": 40, "num_hidden_layers": 3, "num_attention_heads": 4, "vocab_size": 100, "head_dim": 8}`,
		`{"hidden_size": 16, "intermediate_size": 40, "num_hidden_layers": 3, "num_attention_heads": 4, "vocab_size": 100, "attention_bias": true}`,
		`{"hidden_size": 16, "intermediate_size": 40, "num_hidden_layers": 3, "num_attention_heads": 5, "vocab_size": 100}`,
		`{"hidden_size": 16, "intermediate_size": 40, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 3, "vocab_size": 100}`,
		`{"hidden_size": 16, "intermediate_size": 40, "num_hidden_layers": 3, "num_attention_heads": 4, "vocab_size": 100, "rope_theta": 0}`,
		`[1, 2]`,
	} {
		if _, err := ParseHFConfig([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
	// Config's own JSON keeps the layout.
	for _, l := range []RopeLayout{Interleaved, Halves} {
		c := full
		c.Rope = l
		js, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var back Config
		if err := json.Unmarshal(js, &back); err != nil || back != c {
			t.Errorf("JSON round trip of %v: %+v, %v (%s)", l, back, err, js)
		}
	}
	var bad Config
	if err := json.Unmarshal([]byte(`{"rope_layout": "diagonal"}`), &bad); err == nil {
		t.Error("an unknown layout must be rejected")
	}
	if _, err := LoadHFConfig(filepath.Join(t.TempDir(), "none.json")); err == nil {
		t.Error("a missing config.json must be an error")
	}
}
