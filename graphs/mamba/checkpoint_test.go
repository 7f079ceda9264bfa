package mamba

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/tensorfile"
	"gorgonia.org/tensor"
)

// tinyConfigJSON is TinyConfig as a Hugging Face config.json.
const tinyConfigJSON = `{"model_type": "mamba", "vocab_size": 32, "hidden_size": 8, "state_size": 4,
  "num_hidden_layers": 2, "expand": 2, "conv_kernel": 3, "time_step_rank": 2, "use_bias": false,
  "use_conv_bias": true, "layer_norm_epsilon": 1e-5, "tie_word_embeddings": true}`

// torchTensors lists the tensors of a tiny MambaForCausalLM checkpoint by
// their Hugging Face keys and PyTorch shapes, written out by hand.
func torchTensors() map[string][]int {
	const v, d, di, n, k, r = 32, 8, 16, 4, 3, 2
	m := map[string][]int{"backbone.embeddings.weight": {v, d}, "backbone.norm_f.weight": {d}}
	for l := 0; l < 2; l++ {
		p := fmt.Sprintf("backbone.layers.%d.", l)
		m[p+"norm.weight"] = []int{d}
		m[p+"mixer.in_proj.weight"] = []int{2 * di, d}
		m[p+"mixer.conv1d.weight"] = []int{di, 1, k}
		m[p+"mixer.conv1d.bias"] = []int{di}
		m[p+"mixer.x_proj.weight"] = []int{r + 2*n, di}
		m[p+"mixer.dt_proj.weight"] = []int{di, r}
		m[p+"mixer.dt_proj.bias"] = []int{di}
		m[p+"mixer.A_log"] = []int{di, n}
		m[p+"mixer.D"] = []int{di}
		m[p+"mixer.out_proj.weight"] = []int{d, di}
	}
	return m
}

// checkpoint is a tiny checkpoint in memory: values in PyTorch layout.
type checkpoint struct {
	shapes map[string][]int
	vals   map[string][]float64
}

// newCheckpoint draws values that BF16 holds exactly (multiples of 1/64).
func newCheckpoint(seed uint64) *checkpoint {
	rng := rand.New(rand.NewPCG(seed, 3))
	c := &checkpoint{shapes: torchTensors(), vals: map[string][]float64{}}
	var names []string
	for name := range c.shapes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s := c.shapes[name]
		n := 1
		for _, d := range s {
			n *= d
		}
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(rng.IntN(129)-64) / 64
		}
		c.vals[name] = v
	}
	return c
}

// tensor encodes one tensor: the embedding as BF16, the rest as F32.
func (c *checkpoint) tensor(name string) tensorfile.Tensor {
	v := c.vals[name]
	if name == EmbeddingName || name == originalEmbedding {
		b := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(b[2*i:], uint16(math.Float32bits(float32(x))>>16))
		}
		return tensorfile.Tensor{Name: name, Dtype: tensorfile.BF16, Shape: c.shapes[name], Data: b}
	}
	f := make([]float32, len(v))
	for i, x := range v {
		f[i] = float32(x)
	}
	return tensorfile.FromFloat32(name, c.shapes[name], f)
}

// write puts config.json and model.safetensors into a new directory.
func (c *checkpoint) write(t *testing.T, config string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	var ts []tensorfile.Tensor
	for name := range c.shapes {
		ts = append(ts, c.tensor(name))
	}
	if err := tensorfile.Write(filepath.Join(dir, WeightsFile), ts, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkStore verifies the store against the checkpoint: the same elements,
// linear weights transposed.
func (c *checkpoint) checkStore(t *testing.T, s *layers.Store) {
	t.Helper()
	if got := len(s.Params()); got != len(c.shapes) {
		t.Fatalf("store has %d parameters, checkpoint %d", got, len(c.shapes))
	}
	for name, shape := range c.shapes {
		p, ok := s.Get(name)
		if !ok {
			t.Fatalf("store lacks %s", name)
		}
		want := c.vals[name]
		got := layers.Float64s(p.Value)
		if strings.HasSuffix(name, "proj.weight") {
			if ps := p.Value.Shape(); ps[0] != shape[1] || ps[1] != shape[0] {
				t.Fatalf("%s stored %v for PyTorch %v", name, ps, shape)
			}
			out, in := shape[0], shape[1]
			for o := 0; o < out; o++ {
				for i := 0; i < in; i++ {
					if got[i*out+o] != want[o*in+i] {
						t.Fatalf("%s[%d,%d] (PyTorch) = %v, stored %v", name, o, i, want[o*in+i], got[i*out+o])
					}
				}
			}
			continue
		}
		assertClose(t, name, got, want, 0)
	}
}

func TestLoadSaveHF(t *testing.T) {
	ck := newCheckpoint(1)
	dir := ck.write(t, tinyConfigJSON)
	s, _ := layers.NewStore(tensor.Float64)
	cfg, err := LoadHF(dir, s)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	want := TinyConfig()
	want.Extra = nil
	if cfg.HiddenSize != 8 || cfg.ConvKernel != 3 || cfg.TimeStepRank != 2 || cfg.VocabSize != 32 {
		t.Fatalf("config %+v", cfg)
	}
	ck.checkStore(t, s)
	if p, _ := s.Get(mixerPath(0) + ".conv1d.weight"); !slices.Equal(p.Value.Shape(), tensor.Shape{16, 3}) {
		t.Errorf("conv1d weight stored %v", p.Value.Shape())
	}
	// The loaded model builds and runs.
	bt := build(t, s, cfg, nil, 1, 3, false)
	if err := bt.m.SetInputs([]int{1, 2, 3}, []int{2, 3, IgnoreIndex}, nil); err != nil {
		t.Fatal(err)
	}
	if loss := bt.run(t); math.IsNaN(loss) || loss <= 0 {
		t.Errorf("loss %v", loss)
	}
	bt.vm.Close()

	// Save and compare the files tensor by tensor; reload.
	out := filepath.Join(t.TempDir(), "saved")
	if err := SaveHF(out, s, cfg); err != nil {
		t.Fatalf("%+v", err)
	}
	f, err := tensorfile.Open(filepath.Join(out, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	names := f.Names()
	var wantNames []string
	for n := range ck.shapes {
		wantNames = append(wantNames, n)
	}
	sort.Strings(wantNames)
	if strings.Join(names, ",") != strings.Join(wantNames, ",") {
		t.Fatalf("saved keys %v, want %v", names, wantNames)
	}
	if f.Metadata()["format"] != "pt" {
		t.Error("saved file lacks format=pt metadata")
	}
	for _, n := range names {
		v, shape, err := f.Float64(n)
		if err != nil {
			t.Fatal(err)
		}
		if dt, _ := f.Dtype(n); dt != tensorfile.F64 || !slices.Equal(shape, ck.shapes[n]) {
			t.Errorf("%s saved as %s %v", n, dt, shape)
		}
		assertClose(t, "saved "+n, v, ck.vals[n], 0)
	}
	s2, _ := layers.NewStore(tensor.Float32)
	cfg2, err := LoadHF(out, s2)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	ck.checkStore(t, s2)
	if cfg2.TimeStepRank != cfg.TimeStepRank || cfg2.DInner() != cfg.DInner() {
		t.Errorf("saved config %+v", cfg2)
	}
	// A float32 store saves F32.
	out32 := filepath.Join(t.TempDir(), "saved32")
	if err := SaveHF(out32, s2, cfg2); err != nil {
		t.Fatal(err)
	}
	f32, err := tensorfile.Open(filepath.Join(out32, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	if dt, _ := f32.Dtype(NormFName); dt != tensorfile.F32 {
		t.Errorf("float32 store saved %s", dt)
	}
}

// InitStore's tensors are exactly what SaveHF writes and LoadHF reads back.
func TestInitSaveLoadRoundTrip(t *testing.T) {
	for _, cfg := range []Config{TinyConfig(), falconTiny()} {
		s := tinyStore(t, cfg, tensor.Float64, 3)
		dir := filepath.Join(t.TempDir(), "m")
		if err := SaveHF(dir, s, cfg); err != nil {
			t.Fatalf("%+v", err)
		}
		s2, _ := layers.NewStore(tensor.Float64)
		cfg2, err := LoadHF(dir, s2)
		if err != nil {
			t.Fatalf("%+v", err)
		}
		if cfg2.TieWordEmbeddings != cfg.TieWordEmbeddings || (cfg2.MixerRMSEps == nil) != (cfg.MixerRMSEps == nil) {
			t.Errorf("config after round trip %+v", cfg2)
		}
		if len(s2.Params()) != len(s.Params()) {
			t.Fatalf("%d parameters back, %d saved", len(s2.Params()), len(s.Params()))
		}
		for _, p := range s.Params() {
			q, ok := s2.Get(p.Name)
			if !ok {
				t.Fatalf("%s not loaded", p.Name)
			}
			assertClose(t, p.Name, layers.Float64s(q.Value), layers.Float64s(p.Value), 0)
		}
	}
}

// A sharded checkpoint and state-spaces/mamba's original layout load too.
func TestLoadShardedAndOriginal(t *testing.T) {
	ck := newCheckpoint(2)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(tinyConfigJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	shardOf := map[string]string{}
	parts := map[string][]tensorfile.Tensor{}
	for name := range ck.shapes {
		shard := "model-00001-of-00002.safetensors"
		if strings.Contains(name, "layers.1") {
			shard = "model-00002-of-00002.safetensors"
		}
		shardOf[name] = shard
		parts[shard] = append(parts[shard], ck.tensor(name))
	}
	for shard, ts := range parts {
		if err := tensorfile.Write(filepath.Join(dir, shard), ts, nil); err != nil {
			t.Fatal(err)
		}
	}
	idx, _ := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": shardOf})
	if err := os.WriteFile(filepath.Join(dir, IndexFile), idx, 0o644); err != nil {
		t.Fatal(err)
	}
	s, _ := layers.NewStore(tensor.Float64)
	if _, err := LoadHF(dir, s); err != nil {
		t.Fatalf("sharded: %+v", err)
	}
	ck.checkStore(t, s)

	// state-spaces/mamba: d_model/n_layer/ssm_cfg, a padded vocabulary and
	// backbone.embedding.weight.
	orig := newCheckpoint(2)
	orig.shapes[originalEmbedding], orig.vals[originalEmbedding] = orig.shapes[EmbeddingName], orig.vals[EmbeddingName]
	delete(orig.shapes, EmbeddingName)
	odir := orig.write(t, `{"d_model": 8, "n_layer": 2, "vocab_size": 30, "pad_vocab_size_multiple": 16,
	  "ssm_cfg": {"d_state": 4, "d_conv": 3, "dt_rank": 2}, "rms_norm": true, "residual_in_fp32": true}`)
	s2, _ := layers.NewStore(tensor.Float64)
	if _, err := LoadHF(odir, s2); err != nil {
		t.Fatalf("original: %+v", err)
	}
	ck.checkStore(t, s2)
}

// Bad checkpoints are reported by key, and nothing is loaded.
func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name   string
		modify func(c *checkpoint)
		config string
		want   []string
	}{
		{"missing", func(c *checkpoint) { delete(c.shapes, "backbone.layers.1.mixer.D") }, tinyConfigJSON,
			[]string{"missing keys backbone.layers.1.mixer.D"}},
		{"unexpected", func(c *checkpoint) {
			c.shapes["backbone.layers.2.mixer.D"], c.vals["backbone.layers.2.mixer.D"] = []int{16}, make([]float64, 16)
		}, tinyConfigJSON, []string{"unexpected keys backbone.layers.2.mixer.D"}},
		{"shape", func(c *checkpoint) {
			c.shapes["backbone.layers.0.mixer.x_proj.weight"] = []int{16, 10}
		}, tinyConfigJSON, []string{"backbone.layers.0.mixer.x_proj.weight has shape [16 10], the config implies [10 16]"}},
		{"untied head missing", func(*checkpoint) {}, strings.Replace(tinyConfigJSON, `"tie_word_embeddings": true`, `"tie_word_embeddings": false`, 1),
			[]string{"missing keys lm_head.weight"}},
		{"tied head differs", func(c *checkpoint) {
			c.shapes[LMHeadName], c.vals[LMHeadName] = []int{32, 8}, make([]float64, 256)
		}, tinyConfigJSON, []string{"lm_head.weight differs from backbone.embeddings.weight"}},
		{"both embeddings", func(c *checkpoint) {
			c.shapes[originalEmbedding], c.vals[originalEmbedding] = c.shapes[EmbeddingName], c.vals[EmbeddingName]
		}, tinyConfigJSON, []string{"both"}},
		{"bad config", func(*checkpoint) {}, `{"hidden_size": -1}`, []string{"hidden_size"}},
	}
	for _, tc := range cases {
		ck := newCheckpoint(3)
		tc.modify(ck)
		dir := ck.write(t, tc.config)
		s, _ := layers.NewStore(tensor.Float64)
		_, err := LoadHF(dir, s)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", tc.name, err, w)
			}
		}
		if len(s.Params()) != 0 {
			t.Errorf("%s: %d parameters added despite the error", tc.name, len(s.Params()))
		}
	}
	// A tied checkpoint with an lm_head equal to the embedding loads.
	ck := newCheckpoint(4)
	ck.shapes[LMHeadName], ck.vals[LMHeadName] = ck.shapes[EmbeddingName], ck.vals[EmbeddingName]
	s, _ := layers.NewStore(tensor.Float64)
	if _, err := LoadHF(ck.write(t, tinyConfigJSON), s); err != nil {
		t.Errorf("tied lm_head equal to the embedding: %v", err)
	}
	// Only PyTorch pickles, nothing at all, a corrupt file, a bad index.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ConfigFile), []byte(tinyConfigJSON), 0o644)
	if _, err := LoadHF(dir, s); err == nil || !strings.Contains(err.Error(), "neither") {
		t.Errorf("empty directory: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "pytorch_model.bin"), []byte("pickle"), 0o644)
	if _, err := LoadHF(dir, s); err == nil || !strings.Contains(err.Error(), "pytorch_model.bin") {
		t.Errorf("pickles only: %v", err)
	}
	os.WriteFile(filepath.Join(dir, IndexFile), []byte(`{"weight_map": {"a": "../x.safetensors"}}`), 0o644)
	if _, err := LoadHF(dir, s); err == nil || !strings.Contains(err.Error(), "not a file name") {
		t.Errorf("index escaping the directory: %v", err)
	}
	os.WriteFile(filepath.Join(dir, WeightsFile), []byte("garbage"), 0o644)
	if _, err := LoadHF(dir, s); err == nil {
		t.Error("corrupt safetensors: no error")
	}
	if _, err := LoadHF(dir, nil); err == nil {
		t.Error("nil store: no error")
	}
	// SaveHF refuses a store that lacks a parameter or has a wrong shape.
	empty, _ := layers.NewStore(tensor.Float64)
	if err := SaveHF(t.TempDir(), empty, TinyConfig()); err == nil || !strings.Contains(err.Error(), "has no") {
		t.Errorf("saving an empty store: %v", err)
	}
	bad := TinyConfig()
	bad.StateSize = 5
	full := tinyStore(t, TinyConfig(), tensor.Float64, 1)
	if err := SaveHF(t.TempDir(), full, bad); err == nil || !strings.Contains(err.Error(), "x_proj.weight has shape") {
		t.Errorf("saving with a config of other shapes: %v", err)
	}
}
