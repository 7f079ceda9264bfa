package roberta

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lilygo/lily/layers"
)

// robertaBaseJSON is FacebookAI/roberta-base's config.json.
const robertaBaseJSON = `{
  "architectures": ["RobertaForMaskedLM"],
  "attention_probs_dropout_prob": 0.1,
  "bos_token_id": 0,
  "eos_token_id": 2,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "hidden_size": 768,
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "layer_norm_eps": 1e-05,
  "max_position_embeddings": 514,
  "model_type": "roberta",
  "num_attention_heads": 12,
  "num_hidden_layers": 12,
  "pad_token_id": 1,
  "type_vocab_size": 1,
  "vocab_size": 50265
}`

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadConfigRobertaBase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	writeFile(t, path, robertaBaseJSON)
	c, err := ReadConfig(path)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	base := BaseConfig()
	base.Extra = c.Extra
	if !reflect.DeepEqual(c, base) {
		t.Errorf("read %+v\nwant %+v", c, base)
	}
	for _, k := range []string{"architectures", "bos_token_id", "eos_token_id"} {
		if _, ok := c.Extra[k]; !ok {
			t.Errorf("key %q was not kept in Extra", k)
		}
	}
	if len(c.Extra) != 3 {
		t.Errorf("Extra has %d keys, want 3: %v", len(c.Extra), c.Extra)
	}
	if c.HeadDim() != 64 || c.MaxSeqLen() != 512 || c.classifierDropout() != 0.1 {
		t.Errorf("head dim %d, max length %d, classifier dropout %v", c.HeadDim(), c.MaxSeqLen(), c.classifierDropout())
	}
}

// Writing and reading back keeps every key, typed or not, and the values.
func TestConfigRoundTrip(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "in.json")
	writeFile(t, src, strings.Replace(robertaBaseJSON, `"bos_token_id": 0,`, `"bos_token_id": 0, "classifier_dropout": 0.25, "id2label": {"0": "neg", "1": "pos"},`, 1))
	c, err := ReadConfig(src)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if c.ClassifierDropout == nil || *c.ClassifierDropout != 0.25 || c.classifierDropout() != 0.25 {
		t.Fatalf("classifier_dropout not read: %v", c.ClassifierDropout)
	}
	dst := filepath.Join(dir, "out.json")
	if err := WriteConfig(dst, c); err != nil {
		t.Fatalf("%+v", err)
	}
	var in, out map[string]any
	for p, m := range map[string]*map[string]any{src: &in, dst: &out} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, m); err != nil {
			t.Fatal(err)
		}
	}
	// Written configs spell out the typed fields the input left to defaults.
	for k, v := range in {
		if !reflect.DeepEqual(out[k], v) {
			t.Errorf("key %q: wrote %v, read %v", k, out[k], v)
		}
	}
	if out["position_embedding_type"] != "absolute" {
		t.Errorf("position_embedding_type written as %v", out["position_embedding_type"])
	}
	back, err := ReadConfig(dst)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip changed the config:\n%+v\n%+v", back, c)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestConfigDefaultsForMissingKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	writeFile(t, path, `{"hidden_size": 8, "num_attention_heads": 2}`)
	c, err := ReadConfig(path)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	want := DefaultConfig()
	want.HiddenSize, want.NumAttentionHeads = 8, 2
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v, want %+v", c, want)
	}
}

func TestConfigValidation(t *testing.T) {
	bad := []struct {
		key  string
		val  any
		want string
	}{
		{"num_attention_heads", 7, "not divisible"},
		{"hidden_act", "gelu_new", "hidden_act"},
		{"hidden_act", "relu", "hidden_act"},
		{"position_embedding_type", "rotary", "position_embedding_type"},
		{"model_type", "bert", "model_type"},
		{"vocab_size", 0, "vocab_size"},
		{"num_hidden_layers", -1, "num_hidden_layers"},
		{"pad_token_id", 60000, "pad_token_id"},
		{"max_position_embeddings", 2, "max_position_embeddings"},
		{"layer_norm_eps", 0, "layer_norm_eps"},
		{"hidden_dropout_prob", 1, "hidden_dropout_prob"},
		{"attention_probs_dropout_prob", -0.1, "attention_probs_dropout_prob"},
		{"classifier_dropout", 1.5, "classifier_dropout"},
		{"is_decoder", true, "is_decoder"},
		{"add_cross_attention", true, "add_cross_attention"},
		{"initializer_range", -1, "initializer_range"},
	}
	dir := t.TempDir()
	for _, c := range bad {
		var m map[string]any
		if err := json.Unmarshal([]byte(robertaBaseJSON), &m); err != nil {
			t.Fatal(err)
		}
		m[c.key] = c.val
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "config.json")
		writeFile(t, path, string(b))
		_, err = ReadConfig(path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s = %v: error %v, want one mentioning %q", c.key, c.val, err, c.want)
		}
		if err := WriteConfig(filepath.Join(dir, "w.json"), mustParse(t, path)); err == nil {
			t.Errorf("%s = %v: WriteConfig accepted an invalid config", c.key, c.val)
		}
	}
	path := filepath.Join(dir, "broken.json")
	writeFile(t, path, `{"hidden_size": "big"}`)
	if _, err := ReadConfig(path); err == nil {
		t.Error("a string hidden_size was accepted")
	}
	if _, err := ReadConfig(filepath.Join(dir, "absent.json")); err == nil {
		t.Error("a missing file was accepted")
	}
}

// mustParse decodes a config without validating it.
func mustParse(t *testing.T, path string) Config {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSites(t *testing.T) {
	c := BaseConfig()
	sites := c.Sites()
	if len(sites) != 72 {
		t.Fatalf("%d sites, want 72", len(sites))
	}
	want := []layers.Site{
		{Layer: 3, Target: "query", Path: "roberta.encoder.layer.3.attention.self.query", DIn: 768, DOut: 768},
		{Layer: 3, Target: "key", Path: "roberta.encoder.layer.3.attention.self.key", DIn: 768, DOut: 768},
		{Layer: 3, Target: "value", Path: "roberta.encoder.layer.3.attention.self.value", DIn: 768, DOut: 768},
		{Layer: 3, Target: "dense", Path: "roberta.encoder.layer.3.attention.output.dense", DIn: 768, DOut: 768},
		{Layer: 3, Target: "dense", Path: "roberta.encoder.layer.3.intermediate.dense", DIn: 768, DOut: 3072},
		{Layer: 3, Target: "dense", Path: "roberta.encoder.layer.3.output.dense", DIn: 3072, DOut: 768},
	}
	for i, w := range want {
		w.Weight, w.Bias = w.Path+".weight", w.Path+".bias"
		if sites[18+i] != w {
			t.Errorf("site %d = %+v, want %+v", 18+i, sites[18+i], w)
		}
	}
}

// LILY.md's parameter counts for RoBERTa-base with query,value follow from
// the sites alone.
func TestLilyCountsOnRobertaBase(t *testing.T) {
	for _, c := range []struct {
		stride, numB, want int
	}{{6, 2, 198144}, {4, 3, 297216}} {
		lily, err := layers.NewLily(layers.LilyConfig{R: 32, StrideA: c.stride, NumB: c.numB, Scaling: 1, TargetModules: []string{"query", "value"}})
		if err != nil {
			t.Fatal(err)
		}
		n, err := layers.CountParams(lily, BaseConfig().Sites())
		if err != nil {
			t.Fatal(err)
		}
		if n != c.want {
			t.Errorf("stride_A %d, num_B %d: %d parameters, want %d", c.stride, c.numB, n, c.want)
		}
	}
}
