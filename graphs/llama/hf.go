package llama

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/tensorfile"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// Hugging Face checkpoint file names.
const (
	hfConfigFile = "config.json"
	hfWeights    = "model.safetensors"
	hfIndex      = "model.safetensors.index.json"
)

// LoadHF reads a Hugging Face LLaMA checkpoint directory: config.json and
// either model.safetensors or the shards listed by
// model.safetensors.index.json. Tensors may be F32, F16, BF16 or F64 and
// are converted to dt. The store holds every base weight under its Hugging
// Face name, frozen, linears transposed to [in, out]; the config's layout
// is Halves. Missing tensors, wrong shapes, NaN or ±Inf values and
// unexpected tensors are errors (rotary inv_freq buffers and a redundant
// lm_head of a tied model are ignored).
func LoadHF(dir string, dt tensor.Dtype) (Config, *layers.Store, error) {
	dir = atomicfile.Resolve(dir)
	c, err := LoadHFConfig(filepath.Join(dir, hfConfigFile))
	if err != nil {
		return Config{}, nil, err
	}
	files, err := openWeights(dir)
	if err != nil {
		return Config{}, nil, err
	}
	where := map[string]*tensorfile.File{}
	for _, f := range files {
		for _, n := range f.Names() {
			if where[n] != nil {
				return Config{}, nil, errors.Errorf("llama: %s: tensor %s appears in two shards", dir, n)
			}
			where[n] = f
		}
	}
	vals := map[string][]float64{}
	known := map[string]bool{}
	for _, spec := range paramSpecs(c) {
		known[spec.Name] = true
		f := where[spec.Name]
		if f == nil {
			return Config{}, nil, errors.Errorf("llama: %s: the checkpoint lacks %s", dir, spec.Name)
		}
		v, shape, err := f.Float64(spec.Name)
		if err != nil {
			return Config{}, nil, errors.Wrapf(err, "llama: %s", dir)
		}
		want := []int(spec.Shape)
		if spec.Torch == layers.Transposed {
			want = []int{spec.Shape[1], spec.Shape[0]}
		}
		if !tensor.Shape(shape).Eq(tensor.Shape(want)) {
			return Config{}, nil, errors.Errorf("llama: %s: %s has shape %v, config.json implies %v", dir, spec.Name, shape, want)
		}
		if spec.Torch == layers.Transposed {
			v = transpose(v, want[0], want[1])
		}
		vals[spec.Name] = v
	}
	var extra []string
	for n := range where {
		if !known[n] && !strings.HasSuffix(n, "rotary_emb.inv_freq") && !(c.TiedEmbeddings && n == HeadName) {
			extra = append(extra, n)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return Config{}, nil, errors.Errorf("llama: %s: unexpected tensors %v (not a LLaMA checkpoint for this config?)", dir, extra)
	}
	s, err := storeFrom(c, dt, vals)
	return c, s, errors.Wrap(err, dir)
}

// openWeights opens model.safetensors, or every shard of the index.
func openWeights(dir string) ([]*tensorfile.File, error) {
	single := filepath.Join(dir, hfWeights)
	if _, err := os.Stat(single); err == nil {
		f, err := tensorfile.Open(single)
		return []*tensorfile.File{f}, errors.Wrap(err, "llama")
	}
	data, err := os.ReadFile(filepath.Join(dir, hfIndex))
	if err != nil {
		return nil, errors.Errorf("llama: %s has neither %s nor %s", dir, hfWeights, hfIndex)
	}
	var index struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(data, &index); err != nil {
		return nil, errors.Wrapf(err, "llama: %s", filepath.Join(dir, hfIndex))
	}
	shards := map[string]bool{}
	for _, s := range index.WeightMap {
		if s != filepath.Base(s) {
			return nil, errors.Errorf("llama: %s names shard %q outside the directory", hfIndex, s)
		}
		shards[s] = true
	}
	names := make([]string, 0, len(shards))
	for s := range shards {
		names = append(names, s)
	}
	sort.Strings(names)
	var files []*tensorfile.File
	for _, s := range names {
		f, err := tensorfile.Open(filepath.Join(dir, s))
		if err != nil {
			return nil, errors.Wrap(err, "llama")
		}
		files = append(files, f)
	}
	return files, nil
}

// SaveHF writes the base model in s as a Hugging Face checkpoint directory
// (created if needed): config.json and model.safetensors with Hugging
// Face's names and [out, in] linear weights, in the store's float type
// (F32 or F64). Weights of an Interleaved model are permuted into the
// Halves layout on the way, as Hugging Face's conversion script does, so
// transformers' LlamaForCausalLM computes the same model. Adapter
// parameters are not written. The two files are replaced together
// (atomicfile.UpdateDir): a process killed at any point leaves the previous
// pair or the new one; other entries of dir are kept.
func SaveHF(dir string, c Config, s *layers.Store) error {
	if err := checkStore(c, s); err != nil {
		return err
	}
	cfgJSON, err := c.HFConfigJSON()
	if err != nil {
		return err
	}
	var ts []tensorfile.Tensor
	for _, spec := range paramSpecs(c) {
		p, _ := s.Get(spec.Name)
		v := layers.Float64s(p.Value)
		if c.Rope == Interleaved {
			v = toHalves(c, spec.Name, v)
		}
		shape := []int(spec.Shape)
		if spec.Torch == layers.Transposed {
			v = transpose(v, shape[0], shape[1])
			shape = []int{shape[1], shape[0]}
		}
		if s.Dtype() == tensor.Float64 {
			ts = append(ts, tensorfile.FromFloat64(spec.Name, shape, v))
			continue
		}
		f := make([]float32, len(v))
		for i, x := range v {
			f[i] = float32(x)
		}
		ts = append(ts, tensorfile.FromFloat32(spec.Name, shape, f))
	}
	err = atomicfile.UpdateDir(dir, func(tmp string) error {
		if err := tensorfile.Write(filepath.Join(tmp, hfWeights), ts, map[string]string{"format": "pt"}); err != nil {
			return err
		}
		return atomicfile.WriteBytes(filepath.Join(tmp, hfConfigFile), cfgJSON)
	})
	return errors.Wrap(err, "llama.SaveHF")
}

// ToHFLayout converts an Interleaved model in s to the Halves layout in
// place, permuting the output columns of every q_proj and k_proj weight as
// Hugging Face's convert_llama_weights_to_hf.py permutes their rows, and
// returns the config with Rope set to Halves. The logits do not change. A
// Halves model is returned unchanged. Convert before attaching adapters
// to q_proj or k_proj: their outputs are laid out like the weights.
func ToHFLayout(c Config, s *layers.Store) (Config, error) {
	if err := checkStore(c, s); err != nil {
		return Config{}, err
	}
	if c.Rope == Halves {
		return c, nil
	}
	for _, site := range c.Sites() {
		if site.Target != "q_proj" && site.Target != "k_proj" {
			continue
		}
		p, _ := s.Get(site.Weight)
		setFloats(p.Value, toHalves(c, site.Weight, layers.Float64s(p.Value)))
	}
	c.Rope = Halves
	return c, nil
}

// toHalves returns v permuted from the Interleaved to the Halves layout if
// name is a q_proj or k_proj weight ([in, out] in the store), else v: the
// output feature 2j+s of each head (s = 0, 1) moves to s·headDim/2 + j.
func toHalves(c Config, name string, v []float64) []float64 {
	return permuteRotary(c, name, v, true)
}

// permuteRotary moves the output features of a q_proj or k_proj weight
// between the Interleaved (2j+s) and Halves (s·headDim/2 + j) positions of
// each head, towards Halves when halves is true; other weights come back
// unchanged.
func permuteRotary(c Config, name string, v []float64, halves bool) []float64 {
	var heads int
	switch {
	case strings.HasSuffix(name, ".self_attn.q_proj.weight"):
		heads = c.NHeads
	case strings.HasSuffix(name, ".self_attn.k_proj.weight"):
		heads = c.NKVHeads
	default:
		return v
	}
	hd := c.HeadDim()
	out := heads * hd
	res := make([]float64, len(v))
	for r := 0; r < len(v)/out; r++ {
		for h := 0; h < heads; h++ {
			for j := 0; j < hd/2; j++ {
				for s := 0; s < 2; s++ {
					inter, half := r*out+h*hd+2*j+s, r*out+h*hd+s*hd/2+j
					if halves {
						res[half] = v[inter]
					} else {
						res[inter] = v[half]
					}
				}
			}
		}
	}
	return res
}
