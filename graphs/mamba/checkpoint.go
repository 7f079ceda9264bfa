package mamba

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/tensorfile"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// File names of a Hugging Face model directory.
const (
	// ConfigFile is the model configuration.
	ConfigFile = "config.json"
	// WeightsFile holds the weights in safetensors format.
	WeightsFile = "model.safetensors"
	// IndexFile maps every tensor of a sharded checkpoint to its shard.
	IndexFile = "model.safetensors.index.json"
)

// originalEmbedding is the embedding's key in state-spaces/mamba's own
// checkpoints (MixerModel.embedding).
const originalEmbedding = "backbone.embedding.weight"

// torchShape is the checkpoint shape of a parameter spec.
func torchShape(spec layers.ParamSpec) []int {
	if spec.TorchShape != nil {
		return append([]int(nil), spec.TorchShape...)
	}
	s := []int(spec.Shape.Clone())
	if spec.Torch == layers.Transposed {
		s[0], s[1] = s[1], s[0]
	}
	return s
}

// transpose returns the [cols, rows] transpose of a row-major [rows, cols]
// matrix.
func transpose(m []float64, rows, cols int) []float64 {
	out := make([]float64, len(m))
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			out[j*rows+i] = m[i*cols+j]
		}
	}
	return out
}

// located is where a tensor is: its file and its key in the file.
type located struct {
	f   *tensorfile.File
	key string
}

// shards opens the checkpoint of dir: model.safetensors, or the shards that
// model.safetensors.index.json lists. It returns where each key is.
func shards(dir string) (map[string]located, error) {
	single := filepath.Join(dir, WeightsFile)
	if _, err := os.Stat(single); err == nil {
		f, err := tensorfile.Open(single)
		if err != nil {
			return nil, err
		}
		keys := map[string]located{}
		for _, k := range f.Names() {
			keys[k] = located{f, k}
		}
		return keys, nil
	}
	index := filepath.Join(dir, IndexFile)
	data, err := os.ReadFile(index)
	if err != nil {
		for _, bin := range []string{"pytorch_model.bin", "pytorch_model.bin.index.json"} {
			if _, e := os.Stat(filepath.Join(dir, bin)); e == nil {
				return nil, errors.Errorf("%s has only PyTorch pickles (%s); convert them to %s first (e.g. with safetensors.torch.save_file)", dir, bin, WeightsFile)
			}
		}
		return nil, errors.Errorf("%s has neither %s nor %s", dir, WeightsFile, IndexFile)
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, errors.Wrapf(err, "parsing %s", index)
	}
	if len(idx.WeightMap) == 0 {
		return nil, errors.Errorf("%s has an empty weight_map", index)
	}
	opened := map[string]*tensorfile.File{}
	keys := map[string]located{}
	for k, shard := range idx.WeightMap {
		if shard != filepath.Base(shard) {
			return nil, errors.Errorf("%s: shard %q of %q is not a file name in the directory", index, shard, k)
		}
		f, ok := opened[shard]
		if !ok {
			if f, err = tensorfile.Open(filepath.Join(dir, shard)); err != nil {
				return nil, err
			}
			opened[shard] = f
		}
		if _, ok := f.Shape(k); !ok {
			return nil, errors.Errorf("%s maps %q to %s, which does not hold it", index, k, shard)
		}
		keys[k] = located{f, k}
	}
	for shard, f := range opened {
		for _, k := range f.Names() {
			if keys[k].f != f {
				return nil, errors.Errorf("%s holds %q, which %s does not map to it", shard, k, index)
			}
		}
	}
	return keys, nil
}

// LoadHF reads a Hugging Face Mamba or Falcon-Mamba model directory
// (config.json and model.safetensors, or shards listed in
// model.safetensors.index.json) and adds every parameter of the model to s,
// trainable, under the names of ParamSpecs; call s.Freeze() before attaching
// an adapter. Checkpoint tensors (F16, BF16, F32, F64) are converted to the
// store's dtype; linear weights, [out, in] in PyTorch, are transposed to
// [in, out]; conv1d.weight [d_inner, 1, k] becomes [d_inner, k].
// state-spaces/mamba's original key backbone.embedding.weight is accepted
// for backbone.embeddings.weight. With tied embeddings a checkpoint may also
// hold lm_head.weight, which must then equal the embedding.
//
// Every problem is reported at once, and nothing is added to s unless the
// checkpoint fits the config exactly: missing keys and unexpected keys by
// name, shape mismatches naming the key and both shapes, a NaN or ±Inf
// (also one that a float64 value too large for a float32 store becomes)
// naming the key.
func LoadHF(dir string, s *layers.Store) (Config, error) {
	if s == nil {
		return Config{}, errors.New("mamba.LoadHF: nil store")
	}
	dir = atomicfile.Resolve(dir)
	cfg, err := ReadConfig(filepath.Join(dir, ConfigFile))
	if err != nil {
		return Config{}, errors.Wrap(err, "mamba.LoadHF")
	}
	keys, err := shards(dir)
	if err != nil {
		return Config{}, errors.Wrap(err, "mamba.LoadHF")
	}
	if at, ok := keys[originalEmbedding]; ok {
		if _, dup := keys[EmbeddingName]; dup {
			return Config{}, errors.Errorf("mamba.LoadHF: %s has both %s and %s", dir, originalEmbedding, EmbeddingName)
		}
		keys[EmbeddingName] = at
		delete(keys, originalEmbedding)
	}
	var missing, mismatched []string
	var params []*layers.Param
	for _, spec := range cfg.ParamSpecs() {
		at, ok := keys[spec.Name]
		if !ok {
			missing = append(missing, spec.Name)
			continue
		}
		delete(keys, spec.Name)
		vals, err := readTensor(at, spec)
		if err != nil {
			mismatched = append(mismatched, err.Error())
			continue
		}
		value := layers.FromFloat64(s.Dtype(), spec.Shape, vals)
		if err := layers.CheckFinite(at.key, value); err != nil {
			mismatched = append(mismatched, err.Error())
			continue
		}
		params = append(params, &layers.Param{Name: spec.Name, Value: value, Trainable: true, Torch: spec.Torch, TorchShape: spec.TorchShape})
	}
	if at, ok := keys[LMHeadName]; ok && cfg.TieWordEmbeddings {
		delete(keys, LMHeadName)
		if err := checkTiedHead(at.f, cfg, params); err != nil {
			mismatched = append(mismatched, err.Error())
		}
	}
	var unexpected []string
	for k := range keys {
		unexpected = append(unexpected, k)
	}
	if len(missing)+len(unexpected)+len(mismatched) > 0 {
		sort.Strings(unexpected)
		var msg []string
		if len(missing) > 0 {
			msg = append(msg, fmt.Sprintf("missing keys %s", strings.Join(missing, ", ")))
		}
		if len(unexpected) > 0 {
			msg = append(msg, fmt.Sprintf("unexpected keys %s", strings.Join(unexpected, ", ")))
		}
		msg = append(msg, mismatched...)
		return Config{}, errors.Errorf("mamba.LoadHF: %s does not fit its config: %s", dir, strings.Join(msg, "; "))
	}
	for _, p := range params {
		if err := s.Add(p); err != nil {
			return Config{}, errors.Wrap(err, "mamba.LoadHF")
		}
	}
	return cfg, nil
}

// readTensor reads the tensor of spec in the store's layout.
func readTensor(at located, spec layers.ParamSpec) ([]float64, error) {
	shape, _ := at.f.Shape(at.key)
	want := torchShape(spec)
	if !slices.Equal(shape, want) {
		return nil, errors.Errorf("%s has shape %v, the config implies %v", at.key, shape, want)
	}
	vals, _, err := at.f.Float64(at.key)
	if err != nil {
		return nil, err
	}
	if spec.Torch == layers.Transposed {
		vals = transpose(vals, want[0], want[1])
	}
	return vals, nil
}

// checkTiedHead accepts a tied checkpoint's lm_head.weight only when it
// equals the loaded embedding.
func checkTiedHead(f *tensorfile.File, cfg Config, params []*layers.Param) error {
	head, shape, err := f.Float64(LMHeadName)
	if err != nil {
		return err
	}
	if !slices.Equal(shape, []int{cfg.VocabSize, cfg.HiddenSize}) {
		return errors.Errorf("%s has shape %v, the tied embedding is [%d %d]", LMHeadName, shape, cfg.VocabSize, cfg.HiddenSize)
	}
	for _, p := range params {
		if p.Name != EmbeddingName {
			continue
		}
		for i, v := range layers.Float64s(p.Value) {
			if v != head[i] {
				return errors.Errorf("%s differs from %s although tie_word_embeddings is true", LMHeadName, EmbeddingName)
			}
		}
	}
	return nil
}

// SaveHF writes the model of store s as a Hugging Face model directory that
// LoadHF and transformers' MambaForCausalLM (FalconMambaForCausalLM with
// mixer_rms_eps) load: config.json and model.safetensors in PyTorch layout
// and the store's dtype (F32 or F64), without lm_head.weight when the
// embeddings are tied, as transformers saves tied models. Adapter
// parameters are not written (merge an adapter into the weights first to
// include it). dir is created if needed; the two files are replaced
// together (atomicfile.UpdateDir): a process killed at any point leaves the
// previous pair or the new one; other entries of dir are kept.
func SaveHF(dir string, s *layers.Store, cfg Config) error {
	if s == nil {
		return errors.New("mamba.SaveHF: nil store")
	}
	if err := cfg.Validate(); err != nil {
		return errors.Wrap(err, "mamba.SaveHF")
	}
	var tensors []tensorfile.Tensor
	for _, spec := range cfg.ParamSpecs() {
		p, ok := s.Get(spec.Name)
		if !ok {
			return errors.Errorf("mamba.SaveHF: the store has no %s", spec.Name)
		}
		if !slices.Equal(p.Value.Shape(), spec.Shape) {
			return errors.Errorf("mamba.SaveHF: %s has shape %v, the config implies %v", spec.Name, p.Value.Shape(), spec.Shape)
		}
		shape := torchShape(spec)
		vals := layers.Float64s(p.Value)
		if spec.Torch == layers.Transposed {
			vals = transpose(vals, spec.Shape[0], spec.Shape[1])
		}
		if s.Dtype() == tensor.Float32 {
			f := make([]float32, len(vals))
			for i, v := range vals {
				f[i] = float32(v)
			}
			tensors = append(tensors, tensorfile.FromFloat32(spec.Name, shape, f))
		} else {
			tensors = append(tensors, tensorfile.FromFloat64(spec.Name, shape, vals))
		}
	}
	err := atomicfile.UpdateDir(dir, func(tmp string) error {
		if err := WriteConfig(filepath.Join(tmp, ConfigFile), cfg); err != nil {
			return err
		}
		return tensorfile.Write(filepath.Join(tmp, WeightsFile), tensors, map[string]string{"format": "pt"})
	})
	return errors.Wrap(err, "mamba.SaveHF")
}
