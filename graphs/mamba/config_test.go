package mamba

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lilygo/lily/layers"
)

// The config.json of state-spaces/mamba-130m-hf, as Hugging Face writes it.
const hf130m = `{
  "architectures": ["MambaForCausalLM"],
  "bos_token_id": 0, "conv_kernel": 4, "d_inner": 1536, "d_model": 768, "eos_token_id": 0,
  "expand": 2, "fused_add_norm": true, "hidden_act": "silu", "hidden_size": 768,
  "initializer_range": 0.1, "intermediate_size": 1536, "layer_norm_epsilon": 1e-05,
  "model_type": "mamba", "n_layer": 24, "num_hidden_layers": 24, "pad_token_id": 0,
  "pad_vocab_size_multiple": 8, "rescale_prenorm_residual": false, "residual_in_fp32": true,
  "rms_norm": true, "state_size": 16, "time_step_floor": 0.0001, "time_step_init_scheme": "random",
  "time_step_max": 0.1, "time_step_min": 0.001, "time_step_rank": 48, "time_step_scale": 1.0,
  "torch_dtype": "float32", "transformers_version": "4.39.0.dev0", "use_bias": false,
  "use_cache": true, "use_conv_bias": true, "vocab_size": 50280
}`

// The config.json of state-spaces/mamba-130m (mamba_ssm's own format).
const original130m = `{"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {}, "rms_norm": true,
  "residual_in_fp32": true, "fused_add_norm": true, "pad_vocab_size_multiple": 8}`

func parse(t *testing.T, s string) Config {
	t.Helper()
	var c Config
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		t.Fatalf("%+v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("%+v", err)
	}
	return c
}

func TestReadHFAndOriginalConfigs(t *testing.T) {
	hf := parse(t, hf130m)
	orig := parse(t, original130m)
	for name, c := range map[string]Config{"hf": hf, "original": orig} {
		if c.VocabSize != 50280 || c.HiddenSize != 768 || c.NumHiddenLayers != 24 || c.StateSize != 16 ||
			c.DInner() != 1536 || c.ConvKernel != 4 || c.TimeStepRank != 48 || !c.TieWordEmbeddings || c.MixerRMSEps != nil {
			t.Errorf("%s: %+v", name, c)
		}
	}
	if string(hf.Extra["n_layer"]) != "24" || string(hf.Extra["torch_dtype"]) != `"float32"` {
		t.Errorf("unused Hugging Face keys are not kept: %v", hf.Extra)
	}
	// "auto" rank and Falcon-Mamba's default mixer eps.
	c := parse(t, `{"hidden_size": 40, "time_step_rank": "auto", "model_type": "falcon_mamba"}`)
	if c.TimeStepRank != 3 || c.MixerRMSEps == nil || *c.MixerRMSEps != 1e-6 || c.IntermediateSize != 80 {
		t.Errorf("auto rank / falcon defaults: %+v", c)
	}
	c = parse(t, `{"d_model": 64, "n_layer": 3, "vocab_size": 10, "pad_vocab_size_multiple": 16,
	  "ssm_cfg": {"d_state": 8, "d_conv": 2, "expand": 3, "dt_rank": 5, "layer": "Mamba1"}, "tie_embeddings": false}`)
	if c.HiddenSize != 64 || c.NumHiddenLayers != 3 || c.VocabSize != 16 || c.StateSize != 8 || c.ConvKernel != 2 ||
		c.DInner() != 192 || c.TimeStepRank != 5 || c.TieWordEmbeddings {
		t.Errorf("original format: %+v", c)
	}
}

func TestConfigRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []Config{parse(t, hf130m), falconTiny(), FalconMamba7BConfig()} {
		path := filepath.Join(dir, "config.json")
		if err := WriteConfig(path, c); err != nil {
			t.Fatal(err)
		}
		back, err := ReadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, c) {
			t.Errorf("round trip:\n%+v\n%+v", back, c)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`{"hidden_size": 0}`, "hidden_size"},
		{`{"hidden_act": "gelu"}`, "hidden_act"},
		{`{"intermediate_size": 100}`, "intermediate_size"},
		{`{"time_step_min": 0.2}`, "time_step_min"},
		{`{"time_step_init_scheme": "xavier"}`, "time_step_init_scheme"},
		{`{"model_type": "mamba2"}`, "model_type"},
		{`{"mixer_rms_eps": -1}`, "mixer_rms_eps"},
		{`{"layer_norm_epsilon": 0}`, "layer_norm_epsilon"},
		{`{"d_model": 8, "ssm_cfg": {"layer": "Mamba2"}}`, "Mamba1"},
		{`{"d_model": 8, "ssm_cfg": {"ngroups": 2}}`, "ngroups"},
		{`{"d_model": 8, "rms_norm": false}`, "rms_norm"},
		{`{"d_model": 8, "d_intermediate": 32}`, "MLP"},
		{`{"d_model": 8, "pad_vocab_size_multiple": 0}`, "pad_vocab_size_multiple"},
		{`[1]`, "cannot unmarshal"},
	} {
		var c Config
		err := json.Unmarshal([]byte(tc.json), &c)
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.json, err, tc.want)
		}
	}
	dir := t.TempDir()
	if _, err := ReadConfig(filepath.Join(dir, "none.json")); err == nil {
		t.Error("reading a missing file: no error")
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"vocab_size": "many"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadConfig(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("a malformed config: %v", err)
	}
	if err := WriteConfig(filepath.Join(dir, "x.json"), Config{}); err == nil {
		t.Error("writing an invalid config: no error")
	}
}

// Sites and parameter counts from shapes alone: Lily on Falcon-Mamba-7B's
// in_proj is LILY.md's 3,287,040 and LoRA r=2 on in_proj and dt_proj the
// paper's 3.7M.
func TestSitesAndCounts(t *testing.T) {
	c := FalconMamba7BConfig()
	sites := c.Sites()
	if len(sites) != 4*64 {
		t.Fatalf("%d sites", len(sites))
	}
	s := sites[4*3+2]
	if s.Path != "backbone.layers.3.mixer.dt_proj" || s.Target != "dt_proj" || s.DIn != 256 || s.DOut != 8192 ||
		s.Weight != s.Path+".weight" || s.Bias != s.Path+".bias" {
		t.Errorf("dt_proj site %+v", s)
	}
	if in := sites[0]; in.DIn != 4096 || in.DOut != 16384 || in.Bias != "" {
		t.Errorf("in_proj site %+v", in)
	}
	if x := sites[1]; x.DOut != 256+32 || x.Bias != "" {
		t.Errorf("x_proj site %+v", x)
	}
	lily, _ := layers.NewLily(layers.LilyConfig{R: 40, StrideA: 16, NumB: 4, Scaling: 1, TargetModules: []string{"in_proj"}})
	if n, err := layers.CountParams(lily, sites); err != nil || n != 3287040 {
		t.Errorf("Lily in_proj: %d (%v), want 3,287,040", n, err)
	}
	lora, _ := layers.NewLoRA(layers.LoRAConfig{R: 2, Alpha: 2, TargetModules: []string{"in_proj", "dt_proj"}})
	if n, err := layers.CountParams(lora, sites); err != nil || n != 3702784 {
		t.Errorf("LoRA r=2 in_proj+dt_proj: %d (%v), want 3,702,784", n, err)
	}
}
