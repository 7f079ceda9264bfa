package roberta

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/tensorfile"
	"gorgonia.org/tensor"
)

// tinyConfig is a two-layer RoBERTa small enough for gradient checks.
func tinyConfig() Config {
	c := BaseConfig()
	c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads = 11, 8, 2, 2
	c.IntermediateSize, c.MaxPositionEmbeddings, c.TypeVocabSize = 12, 9, 2
	return c
}

// hfKeys lists, by hand, the tensors of a Hugging Face RobertaModel
// checkpoint for c (without the "roberta." prefix) with their PyTorch
// shapes, in the order transformers declares them.
func hfKeys(c Config) ([]string, [][]int) {
	h, in := c.HiddenSize, c.IntermediateSize
	keys := []string{"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
		"embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"}
	shapes := [][]int{{c.VocabSize, h}, {c.MaxPositionEmbeddings, h}, {c.TypeVocabSize, h}, {h}, {h}}
	for l := 0; l < c.NumHiddenLayers; l++ {
		p := fmt.Sprintf("encoder.layer.%d.", l)
		for _, m := range []struct {
			name    string
			out, in int
		}{{"attention.self.query", h, h}, {"attention.self.key", h, h}, {"attention.self.value", h, h},
			{"attention.output.dense", h, h}, {"attention.output.LayerNorm", h, 0},
			{"intermediate.dense", in, h}, {"output.dense", h, in}, {"output.LayerNorm", h, 0}} {
			w := []int{m.out, m.in}
			if m.in == 0 {
				w = []int{m.out}
			}
			keys = append(keys, p+m.name+".weight", p+m.name+".bias")
			shapes = append(shapes, w, []int{m.out})
		}
	}
	return keys, shapes
}

// lmHeadKeys lists RobertaLMHead's tensors (without the tied decoder).
func lmHeadKeys(c Config) ([]string, [][]int) {
	h := c.HiddenSize
	return []string{"lm_head.dense.weight", "lm_head.dense.bias", "lm_head.layer_norm.weight", "lm_head.layer_norm.bias", "lm_head.bias"},
		[][]int{{h, h}, {h}, {h}, {h}, {c.VocabSize}}
}

// bf16Tensor encodes values (which must be exact in bfloat16) as BF16.
func bf16Tensor(name string, shape []int, vals []float32) tensorfile.Tensor {
	b := make([]byte, 2*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(math.Float32bits(v)>>16))
	}
	return tensorfile.Tensor{Name: name, Dtype: tensorfile.BF16, Shape: shape, Data: b}
}

// hfCheckpoint is a random checkpoint written in Hugging Face's layout,
// with the values it holds by (file) key.
type hfCheckpoint struct {
	dir    string
	values map[string][]float32
	shapes map[string][]int
}

// writeHF writes config.json and model.safetensors for c: the encoder keys
// (with the "roberta." prefix when prefixed), the LM head, the tied decoder,
// the pooler and the position_ids buffer, one tensor in BF16; mutate may
// edit the tensor list before writing.
func writeHF(t *testing.T, c Config, prefixed bool, mutate func([]tensorfile.Tensor) []tensorfile.Tensor) *hfCheckpoint {
	t.Helper()
	dir := t.TempDir()
	ck := &hfCheckpoint{dir: dir, values: map[string][]float32{}, shapes: map[string][]int{}}
	rng := rand.New(rand.NewPCG(3, 4))
	keys, shapes := hfKeys(c)
	pre := ""
	if prefixed {
		pre = "roberta."
	}
	for i := range keys {
		keys[i] = pre + keys[i]
	}
	keys = append(keys, pre+"pooler.dense.weight", pre+"pooler.dense.bias")
	shapes = append(shapes, []int{c.HiddenSize, c.HiddenSize}, []int{c.HiddenSize})
	lk, ls := lmHeadKeys(c)
	keys, shapes = append(keys, lk...), append(shapes, ls...)
	keys = append(keys, "lm_head.decoder.weight")
	shapes = append(shapes, []int{c.VocabSize, c.HiddenSize})
	var tensors []tensorfile.Tensor
	for i, k := range keys {
		n := 1
		for _, d := range shapes[i] {
			n *= d
		}
		vals := make([]float32, n)
		for j := range vals {
			// Round to bfloat16 so the BF16 tensor holds the same values.
			vals[j] = math.Float32frombits(math.Float32bits(float32(rng.NormFloat64())) &^ 0xffff)
		}
		ck.values[k], ck.shapes[k] = vals, shapes[i]
		if strings.HasSuffix(k, "layer.1.intermediate.dense.weight") {
			tensors = append(tensors, bf16Tensor(k, shapes[i], vals))
		} else {
			tensors = append(tensors, tensorfile.FromFloat32(k, shapes[i], vals))
		}
	}
	ids := make([]byte, 8*c.MaxPositionEmbeddings)
	tensors = append(tensors, tensorfile.Tensor{Name: pre + "embeddings.position_ids", Dtype: "I64", Shape: []int{1, c.MaxPositionEmbeddings}, Data: ids})
	if mutate != nil {
		tensors = mutate(tensors)
	}
	if err := tensorfile.Write(filepath.Join(dir, WeightsFile), tensors, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	if err := WriteConfig(filepath.Join(dir, ConfigFile), c); err != nil {
		t.Fatal(err)
	}
	return ck
}

// checkLoaded compares every loaded parameter with the file's tensor: same
// values, transposed for linear weights.
func checkLoaded(t *testing.T, ck *hfCheckpoint, s *layers.Store, prefixed bool) {
	t.Helper()
	pre := ""
	if !prefixed {
		pre = "roberta."
	}
	n := 0
	for key, vals := range ck.values {
		name := key
		if strings.HasPrefix(key, "embeddings.") || strings.HasPrefix(key, "encoder.") {
			name = pre + key
		}
		p, ok := s.Get(name)
		if !ok {
			continue
		}
		n++
		got := layers.Float64s(p.Value)
		shape := ck.shapes[key]
		transposed := len(shape) == 2 && !strings.Contains(key, "embeddings")
		if transposed != (p.Torch == layers.Transposed) {
			t.Errorf("%s: Torch layout %v", name, p.Torch)
		}
		for i, v := range vals {
			j := i
			if transposed {
				j = (i%shape[1])*shape[0] + i/shape[1]
			}
			if got[j] != float64(v) {
				t.Fatalf("%s[%d] = %v, file has %v", name, i, got[j], v)
			}
		}
		if !p.Trainable {
			t.Errorf("%s is not trainable", name)
		}
	}
	if want := len(s.Params()); n != want {
		t.Errorf("compared %d of %d parameters", n, want)
	}
}

func TestLoadHuggingFaceLayout(t *testing.T) {
	c := tinyConfig()
	for _, prefixed := range []bool{true, false} {
		for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
			ck := writeHF(t, c, prefixed, nil)
			got, err := Load(ck.dir, LoadOptions{Dtype: dt, LMHead: true})
			if err != nil {
				t.Fatalf("%+v", err)
			}
			if got.Store.Dtype() != dt || got.NumLabels != 0 || len(got.Unexpected) != 0 {
				t.Errorf("dtype %v, %d labels, unexpected %v", got.Store.Dtype(), got.NumLabels, got.Unexpected)
			}
			if got.Config.HiddenSize != 8 {
				t.Errorf("config not read: %+v", got.Config)
			}
			pre := ""
			if prefixed {
				pre = "roberta."
			}
			wantSkipped := []string{"lm_head.decoder.weight", pre + "embeddings.position_ids", pre + "pooler.dense.bias", pre + "pooler.dense.weight"}
			slices.Sort(wantSkipped)
			if !reflect.DeepEqual(got.Skipped, wantSkipped) {
				t.Errorf("skipped %v, want %v", got.Skipped, wantSkipped)
			}
			checkLoaded(t, ck, got.Store, prefixed)
			if n := len(got.Store.Params()); n != len(c.encoderSpecs())+5 {
				t.Errorf("%d parameters loaded", n)
			}
		}
	}
	// Without LMHead the head's keys are skipped.
	ck := writeHF(t, c, true, nil)
	got, err := Load(ck.dir, LoadOptions{})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if _, ok := got.Store.Get("lm_head.bias"); ok || !slices.Contains(got.Skipped, "lm_head.dense.weight") {
		t.Errorf("the LM head was loaded although not asked for (skipped %v)", got.Skipped)
	}
	if got.Store.Dtype() != tensor.Float32 {
		t.Errorf("default dtype %v", got.Store.Dtype())
	}
}

// Old checkpoints name LayerNorm parameters gamma and beta.
func TestLoadLegacyLayerNormNames(t *testing.T) {
	c := tinyConfig()
	ck := writeHF(t, c, false, func(ts []tensorfile.Tensor) []tensorfile.Tensor {
		for i := range ts {
			ts[i].Name = strings.Replace(ts[i].Name, "LayerNorm.weight", "LayerNorm.gamma", 1)
			ts[i].Name = strings.Replace(ts[i].Name, "LayerNorm.bias", "LayerNorm.beta", 1)
		}
		return ts
	})
	got, err := Load(ck.dir, LoadOptions{LMHead: true})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	p, _ := got.Store.Get("roberta.encoder.layer.1.output.LayerNorm.bias")
	want := ck.values["encoder.layer.1.output.LayerNorm.bias"]
	if float32(layers.Float64s(p.Value)[3]) != want[3] {
		t.Error("gamma/beta were not renamed to weight/bias")
	}
}

func TestLoadErrorsNameTheKey(t *testing.T) {
	c := tinyConfig()
	drop := func(name string) func([]tensorfile.Tensor) []tensorfile.Tensor {
		return func(ts []tensorfile.Tensor) []tensorfile.Tensor {
			return slices.DeleteFunc(ts, func(x tensorfile.Tensor) bool { return x.Name == name })
		}
	}
	cases := []struct {
		name   string
		mutate func([]tensorfile.Tensor) []tensorfile.Tensor
		opts   LoadOptions
		want   []string
	}{
		{"missing", drop("roberta.encoder.layer.1.attention.self.key.bias"), LoadOptions{}, []string{"roberta.encoder.layer.1.attention.self.key.bias"}},
		{"missing two", func(ts []tensorfile.Tensor) []tensorfile.Tensor {
			return drop("roberta.embeddings.LayerNorm.bias")(drop("roberta.encoder.layer.0.output.dense.weight")(ts))
		}, LoadOptions{}, []string{"roberta.embeddings.LayerNorm.bias", "roberta.encoder.layer.0.output.dense.weight"}},
		{"shape", func(ts []tensorfile.Tensor) []tensorfile.Tensor {
			for i, x := range ts {
				if x.Name == "roberta.encoder.layer.0.intermediate.dense.weight" {
					ts[i] = tensorfile.FromFloat32(x.Name, []int{8, 12}, make([]float32, 96))
				}
			}
			return ts
		}, LoadOptions{}, []string{"roberta.encoder.layer.0.intermediate.dense.weight", "[12 8]"}},
		{"dtype", func(ts []tensorfile.Tensor) []tensorfile.Tensor {
			for i, x := range ts {
				if x.Name == "roberta.embeddings.LayerNorm.weight" {
					ts[i] = tensorfile.Tensor{Name: x.Name, Dtype: "I32", Shape: []int{8}, Data: make([]byte, 32)}
				}
			}
			return ts
		}, LoadOptions{}, []string{"roberta.embeddings.LayerNorm.weight", "I32"}},
		{"unexpected", func(ts []tensorfile.Tensor) []tensorfile.Tensor {
			return append(ts, tensorfile.FromFloat32("roberta.encoder.layer.2.attention.self.query.weight", []int{1}, []float32{1}))
		}, LoadOptions{}, []string{"roberta.encoder.layer.2.attention.self.query.weight", "AllowUnexpected"}},
		{"duplicate", func(ts []tensorfile.Tensor) []tensorfile.Tensor {
			return append(ts, tensorfile.FromFloat32("embeddings.LayerNorm.bias", []int{8}, make([]float32, 8)))
		}, LoadOptions{}, []string{"embeddings.LayerNorm.bias", "roberta.embeddings.LayerNorm.bias"}},
		{"no LM head", drop("lm_head.layer_norm.bias"), LoadOptions{LMHead: true}, []string{"lm_head.layer_norm.bias"}},
		{"no classifier", nil, LoadOptions{Classifier: true}, []string{"classifier.out_proj.weight", "AddClassifier"}},
	}
	for _, tc := range cases {
		ck := writeHF(t, c, true, tc.mutate)
		_, err := Load(ck.dir, tc.opts)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", tc.name, err, w)
			}
		}
	}
	// Unexpected keys are listed when allowed.
	ck := writeHF(t, c, true, func(ts []tensorfile.Tensor) []tensorfile.Tensor {
		return append(ts, tensorfile.FromFloat32("extra.thing", []int{1}, []float32{1}))
	})
	got, err := Load(ck.dir, LoadOptions{AllowUnexpected: true})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if !reflect.DeepEqual(got.Unexpected, []string{"extra.thing"}) {
		t.Errorf("unexpected %v", got.Unexpected)
	}
}

func TestLoadDirectoryErrors(t *testing.T) {
	c := tinyConfig()
	dir := t.TempDir()
	if _, err := Load(dir, LoadOptions{}); err == nil || !strings.Contains(err.Error(), ConfigFile) {
		t.Errorf("no config: %v", err)
	}
	if err := WriteConfig(filepath.Join(dir, ConfigFile), c); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, LoadOptions{}); err == nil || !strings.Contains(err.Error(), WeightsFile) {
		t.Errorf("no weights: %v", err)
	}
	writeFile(t, filepath.Join(dir, WeightsFile+".index.json"), "{}")
	if _, err := Load(dir, LoadOptions{}); err == nil || !strings.Contains(err.Error(), "sharded") {
		t.Errorf("sharded: %v", err)
	}
	writeFile(t, filepath.Join(dir, WeightsFile), "not a safetensors file")
	if _, err := Load(dir, LoadOptions{}); err == nil {
		t.Error("a corrupt weights file was accepted")
	}
	if _, err := Load(dir, LoadOptions{Dtype: tensor.Int}); err == nil {
		t.Error("an integer store was accepted")
	}
}

// newFullStore returns a store with a random encoder, LM head and
// classifier for c.
func newFullStore(t *testing.T, c Config, dt tensor.Dtype, labels int) *layers.Store {
	t.Helper()
	s, err := layers.NewStore(dt)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{InitStore(s, c, 1), AddLMHead(s, c, 2), AddClassifier(s, c, labels, 3)} {
		if err != nil {
			t.Fatalf("%+v", err)
		}
	}
	return s
}

func TestSaveLoadRoundTripIsBitExact(t *testing.T) {
	c := tinyConfig()
	for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
		s := newFullStore(t, c, dt, 3)
		// An adapter in the store is not part of the checkpoint.
		lily, err := layers.NewLily(layers.LilyConfig{R: 2, StrideA: 1, NumB: 2, Scaling: 1, TargetModules: []string{"query"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := layers.Attach(s, lily, c.Sites(), rand.New(rand.NewPCG(1, 1))); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "model")
		for i := 0; i < 2; i++ { // the second save replaces the first
			if err := Save(dir, s, c); err != nil {
				t.Fatalf("%+v", err)
			}
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 2 {
			t.Errorf("directory holds %v, want config.json and model.safetensors only", entries)
		}
		got, err := Load(dir, LoadOptions{Dtype: dt, LMHead: true, Classifier: true})
		if err != nil {
			t.Fatalf("%+v", err)
		}
		if got.NumLabels != 3 || len(got.Skipped) != 0 {
			t.Errorf("%d labels, skipped %v", got.NumLabels, got.Skipped)
		}
		n := 0
		for _, p := range s.Params() {
			q, ok := got.Store.Get(p.Name)
			if strings.Contains(p.Name, "lily_") {
				if ok {
					t.Errorf("adapter parameter %s was saved", p.Name)
				}
				continue
			}
			n++
			if !ok {
				t.Fatalf("%s was not saved", p.Name)
			}
			if !reflect.DeepEqual(q.Value.Data(), p.Value.Data()) || !q.Value.Shape().Eq(p.Value.Shape()) || q.Torch != p.Torch {
				t.Errorf("%s changed in the round trip", p.Name)
			}
		}
		if n != len(got.Store.Params()) {
			t.Errorf("loaded %d parameters, saved %d", len(got.Store.Params()), n)
		}

		// The file is in Hugging Face's layout.
		f, err := tensorfile.Open(filepath.Join(dir, WeightsFile))
		if err != nil {
			t.Fatal(err)
		}
		if f.Metadata()["format"] != "pt" {
			t.Errorf("metadata %v", f.Metadata())
		}
		keys, shapes := hfKeys(c)
		lk, ls := lmHeadKeys(c)
		keys, shapes = append(keys, lk...), append(shapes, ls...)
		keys = append(keys, "classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias")
		shapes = append(shapes, []int{8, 8}, []int{8}, []int{3, 8}, []int{3})
		for i, k := range keys {
			if !strings.HasPrefix(k, "lm_head") && !strings.HasPrefix(k, "classifier") {
				k = "roberta." + k
			}
			if got, ok := f.Shape(k); !ok || !reflect.DeepEqual(got, shapes[i]) {
				t.Errorf("file tensor %s: shape %v (present %t), want %v", k, got, ok, shapes[i])
			}
		}
		if len(f.Names()) != len(keys) {
			t.Errorf("file has %d tensors, want %d", len(f.Names()), len(keys))
		}
		var cfg map[string]any
		b, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
		if err := json.Unmarshal(b, &cfg); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(cfg["id2label"], map[string]any{"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}) {
			t.Errorf("id2label %v", cfg["id2label"])
		}
	}
}

func TestSaveErrors(t *testing.T) {
	c := tinyConfig()
	dir := t.TempDir()
	if err := Save(dir, nil, c); err == nil {
		t.Error("nil store accepted")
	}
	s, _ := layers.NewStore(tensor.Float32)
	if err := AddLMHead(s, c, 1); err != nil {
		t.Fatal(err)
	}
	if err := Save(dir, s, c); err == nil || !strings.Contains(err.Error(), wordEmbeddings) {
		t.Errorf("a store without encoder: %v", err)
	}
	// A partial head.
	s, _ = layers.NewStore(tensor.Float32)
	if err := InitStore(s, c, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.New(layers.ParamSpec{Name: "classifier.dense.weight", Shape: tensor.Shape{8, 8}}, true, nil); err != nil {
		t.Fatal(err)
	}
	if err := Save(dir, s, c); err == nil || !strings.Contains(err.Error(), "classifier.out_proj.bias") {
		t.Errorf("partial classifier: %v", err)
	}
	// Labels that contradict the head.
	s = newFullStore(t, c, tensor.Float32, 3)
	c.Extra = map[string]json.RawMessage{"id2label": json.RawMessage(`{"0":"a","1":"b"}`)}
	if err := Save(dir, s, c); err == nil || !strings.Contains(err.Error(), "id2label") {
		t.Errorf("two labels for three outputs: %v", err)
	}
	// A shape the config does not imply.
	c = tinyConfig()
	c.IntermediateSize = 6
	if err := Save(dir, s, c); err == nil || !strings.Contains(err.Error(), "intermediate.dense") {
		t.Errorf("wrong config: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("failed saves left %v", entries)
	}
}

func TestInitStore(t *testing.T) {
	c := tinyConfig()
	s := newFullStore(t, c, tensor.Float64, 2)
	get := func(name string) []float64 {
		p, ok := s.Get(name)
		if !ok {
			t.Fatalf("no %s", name)
		}
		if !p.Trainable {
			t.Errorf("%s is not trainable", name)
		}
		return layers.Float64s(p.Value)
	}
	for _, table := range []string{wordEmbeddings, positionEmbeddings} {
		v := get(table)
		for j := 0; j < c.HiddenSize; j++ {
			if v[c.PadTokenID*c.HiddenSize+j] != 0 {
				t.Fatalf("%s: padding row not zero", table)
			}
		}
	}
	for _, name := range []string{"roberta.encoder.layer.1.output.LayerNorm.weight", "lm_head.layer_norm.weight"} {
		for _, x := range get(name) {
			if x != 1 {
				t.Fatalf("%s holds %v, want ones", name, x)
			}
		}
	}
	for _, name := range []string{"roberta.encoder.layer.0.attention.self.query.bias", "lm_head.bias", "classifier.out_proj.bias", "roberta.embeddings.LayerNorm.bias"} {
		for _, x := range get(name) {
			if x != 0 {
				t.Fatalf("%s holds %v, want zeros", name, x)
			}
		}
	}
	// Weights are N(0, 0.02²): check the spread of the biggest matrix.
	w := get("roberta.encoder.layer.0.intermediate.dense.weight")
	var ss float64
	for _, x := range w {
		ss += x * x
	}
	if sd := math.Sqrt(ss / float64(len(w))); sd < 0.012 || sd > 0.028 {
		t.Errorf("weight standard deviation %v, want about 0.02", sd)
	}
	if _, total := s.Count(); total != 11*8+9*8+2*8+2*8+2*(4*72+2*16+8*12+12+12*8+8)+(72+16+11)+(72+18) {
		t.Errorf("%d parameters", total)
	}
	// Same seed, same weights.
	s2 := newFullStore(t, c, tensor.Float64, 2)
	for _, p := range s.Params() {
		q, _ := s2.Get(p.Name)
		if !reflect.DeepEqual(q.Value.Data(), p.Value.Data()) {
			t.Errorf("%s differs between two stores with one seed", p.Name)
		}
	}
	for _, err := range []error{InitStore(nil, c, 1), AddClassifier(s, c, 0, 1), InitStore(s, Config{}, 1), InitStore(s, c, 1)} {
		if err == nil {
			t.Error("an invalid call succeeded")
		}
	}
}
