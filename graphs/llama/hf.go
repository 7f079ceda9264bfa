package llama

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/lilygo/lily/gemm"
	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
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
// lm_head of a tied model are ignored). It is LoadHFWith(dir,
// HFOptions{Dtype: dt, Weights: dt}); LoadHFWith keeps bfloat16 weights in
// bfloat16.
func LoadHF(dir string, dt tensor.Dtype) (Config, *layers.Store, error) {
	if dt != tensor.Float32 && dt != tensor.Float64 {
		_, err := layers.NewStore(dt)
		return Config{}, nil, errors.Wrap(err, "llama.LoadHF")
	}
	return LoadHFWith(dir, HFOptions{Dtype: dt, Weights: dt})
}

// HFOptions says how LoadHFWith keeps a checkpoint's weights.
type HFOptions struct {
	// Dtype is the store's dtype, the one graphs compute in and adapters
	// are trained in: tensor.Float32 (the zero value means it) or
	// tensor.Float64. The RMSNorm gains are always kept in it (exactly).
	Dtype tensor.Dtype
	// Weights is the element type of the frozen matrices — the token
	// embedding, the seven linears of every layer and lm_head — which hold
	// nearly all of a model's memory:
	//   - the zero value keeps each as the checkpoint has it: a BF16 tensor
	//     in bfloat16 (lilyop.BFloat16), an F16 one in float16
	//     (lilyop.Float16), read from the file straight into place; any
	//     other is converted to Dtype;
	//   - Dtype converts every one to Dtype (what LoadHF does);
	//   - lilyop.BFloat16 keeps every one in bfloat16, rounding F16, F32
	//     and F64 values to the nearest bfloat16 (ties to even), as
	//     PyTorch's model.to(torch.bfloat16) does;
	//   - lilyop.Float16 keeps every one in float16 likewise, rounding
	//     BF16, F32 and F64 values to the nearest float16 (ties to even,
	//     magnitudes from 65520 up to infinity, which the load then refuses
	//     as non-finite), as model.to(torch.float16) does.
	Weights tensor.Dtype
}

// LoadHFWith reads a Hugging Face LLaMA checkpoint directory as LoadHF
// does, keeping the weights as o says. Tensors are read one at a time
// (tensorfile.OpenReader) after the headers have been checked, so a BF16
// checkpoint loaded into bfloat16 needs about its file size in memory
// (plus one tensor's worth while a linear is transposed to [in, out]).
// The graphs of Build and the Generator run on bfloat16 weights as they
// are; adapters attached afterwards (layers.Attach) are trained in Dtype.
// For example, to fine-tune a bfloat16 checkpoint in float32 with its
// weights kept in bfloat16:
//
//	c, s, err := llama.LoadHFWith(dir, llama.HFOptions{})
//
// and to halve the memory of a float32 checkpoint:
//
//	c, s, err := llama.LoadHFWith(dir, llama.HFOptions{Weights: lilyop.BFloat16})
func LoadHFWith(dir string, o HFOptions) (Config, *layers.Store, error) {
	if o.Dtype == (tensor.Dtype{}) {
		o.Dtype = tensor.Float32
	}
	s, err := layers.NewStore(o.Dtype)
	if err != nil {
		return Config{}, nil, errors.Wrap(err, "llama.LoadHFWith")
	}
	if o.Weights != (tensor.Dtype{}) && o.Weights != o.Dtype && !lilyop.IsHalfDtype(o.Weights) {
		return Config{}, nil, errors.Errorf("llama.LoadHFWith: weights dtype %v is neither %v nor bfloat16 or float16", o.Weights, o.Dtype)
	}
	dir = atomicfile.Resolve(dir)
	c, err := LoadHFConfig(filepath.Join(dir, hfConfigFile))
	if err != nil {
		return Config{}, nil, err
	}
	files, err := openWeights(dir)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if err != nil {
		return Config{}, nil, err
	}
	where := map[string]*tensorfile.Reader{}
	for _, f := range files {
		for _, n := range f.Names() {
			if where[n] != nil {
				return Config{}, nil, errors.Errorf("llama: %s: tensor %s appears in two shards", dir, n)
			}
			where[n] = f
		}
	}
	// Check every header before reading any data.
	specs := paramSpecs(c)
	known := map[string]bool{}
	for _, spec := range specs {
		known[spec.Name] = true
		f := where[spec.Name]
		if f == nil {
			return Config{}, nil, errors.Errorf("llama: %s: the checkpoint lacks %s", dir, spec.Name)
		}
		shape, _ := f.Shape(spec.Name)
		if want := torchShape(spec); !tensor.Shape(shape).Eq(tensor.Shape(want)) {
			return Config{}, nil, errors.Errorf("llama: %s: %s has shape %v, config.json implies %v", dir, spec.Name, shape, want)
		}
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
	for _, spec := range specs {
		v, err := readHFParam(where[spec.Name], spec, o)
		if err != nil {
			return Config{}, nil, errors.Wrapf(err, "llama: %s", dir)
		}
		p := &layers.Param{Name: spec.Name, Value: v, Torch: spec.Torch}
		if err := layers.CheckFinite(spec.Name, p.Value); err != nil {
			return Config{}, nil, errors.Wrapf(err, "llama: %s", dir)
		}
		if err := s.Add(p); err != nil {
			return Config{}, nil, errors.Wrapf(err, "llama: %s", dir)
		}
	}
	return c, s, nil
}

// readTransposedHalf reads the half-precision matrix [rows, cols] name
// into a new [cols, rows] slice, its transpose, a block of rows at a time
// through at (Reader.BF16At or Reader.F16At), so that no second copy of
// the matrix is ever held.
func readTransposedHalf[H gemm.BF16 | gemm.F16](at func(string, int, []H) error, name string, rows, cols int) ([]H, error) {
	out := make([]H, rows*cols)
	step := max(1, (1<<18)/cols) // rows per block: about 512 KiB
	buf := make([]H, min(step, rows)*cols)
	for r0 := 0; r0 < rows; r0 += step {
		n := min(step, rows-r0)
		blk := buf[:n*cols]
		if err := at(name, r0*cols, blk); err != nil {
			return nil, err
		}
		for c0 := 0; c0 < cols; c0 += 64 { // 64-column tiles keep the writes' lines in cache
			c1 := min(c0+64, cols)
			for r := 0; r < n; r++ {
				for c, v := range blk[r*cols+c0 : r*cols+c1] {
					out[(c0+c)*rows+r0+r] = v
				}
			}
		}
	}
	return out, nil
}

// torchShape is the shape of spec's tensor in a Hugging Face checkpoint.
func torchShape(spec layers.ParamSpec) []int {
	if spec.Torch == layers.Transposed {
		return []int{spec.Shape[1], spec.Shape[0]}
	}
	return []int(spec.Shape)
}

// readHFParam reads spec's tensor from f in store layout, in the dtype o
// asks for.
func readHFParam(f *tensorfile.Reader, spec layers.ParamSpec, o HFOptions) (*tensor.Dense, error) {
	dtype, _ := f.Dtype(spec.Name)
	half := o.Weights
	if half == (tensor.Dtype{}) {
		switch dtype {
		case tensorfile.BF16:
			half = lilyop.BFloat16
		case tensorfile.F16:
			half = lilyop.Float16
		}
	}
	if spec.Shape.Dims() >= 2 {
		switch half {
		case lilyop.BFloat16:
			return readHalfParam(f.BF16, f.BF16At, lilyop.NewBF16, spec, dtype == tensorfile.BF16)
		case lilyop.Float16:
			return readHalfParam(f.F16, f.F16At, lilyop.NewF16, spec, dtype == tensorfile.F16)
		}
	}
	if o.Dtype == tensor.Float32 { // no float64 detour: a third of the memory
		v, shape, err := f.Float32(spec.Name)
		if err != nil {
			return nil, err
		}
		if spec.Torch == layers.Transposed {
			v = transpose(v, shape[0], shape[1])
		}
		return tensor.New(tensor.WithShape(spec.Shape.Clone()...), tensor.WithBacking(v)), nil
	}
	v, shape, err := f.Float64(spec.Name)
	if err != nil {
		return nil, err
	}
	if spec.Torch == layers.Transposed {
		v = transpose(v, shape[0], shape[1])
	}
	return layers.FromFloat64(o.Dtype, spec.Shape, v), nil
}

// readHalfParam reads spec's matrix in half precision through read
// (Reader.BF16 or Reader.F16), or, when the file holds it in that half
// already (same) and it is transposed, through at, transposing it while
// it is read; newT makes the tensor.
func readHalfParam[H gemm.BF16 | gemm.F16](read func(string) ([]H, []int, error), at func(string, int, []H) error, newT func([]int, []H) (*tensor.Dense, error), spec layers.ParamSpec, same bool) (*tensor.Dense, error) {
	if same && spec.Torch == layers.Transposed {
		h, err := readTransposedHalf(at, spec.Name, spec.Shape[1], spec.Shape[0])
		if err != nil {
			return nil, err
		}
		return newT(spec.Shape, h)
	}
	h, shape, err := read(spec.Name)
	if err != nil {
		return nil, err
	}
	if spec.Torch == layers.Transposed {
		h = transpose(h, shape[0], shape[1])
	}
	return newT(spec.Shape, h)
}

// openWeights opens model.safetensors, or every shard of the index, for
// reading tensor by tensor; the caller closes them (also those returned
// with an error).
func openWeights(dir string) ([]*tensorfile.Reader, error) {
	single := filepath.Join(dir, hfWeights)
	if _, err := os.Stat(single); err == nil {
		f, err := tensorfile.OpenReader(single)
		if err != nil {
			return nil, errors.Wrap(err, "llama")
		}
		return []*tensorfile.Reader{f}, nil
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
	var files []*tensorfile.Reader
	for _, s := range names {
		f, err := tensorfile.OpenReader(filepath.Join(dir, s))
		if err != nil {
			return files, errors.Wrap(err, "llama")
		}
		files = append(files, f)
	}
	return files, nil
}

// SaveHF writes the base model in s as a Hugging Face checkpoint directory
// (created if needed): config.json and model.safetensors with Hugging
// Face's names and [out, in] linear weights, in the store's float type
// (F32 or F64), or BF16 for a weight kept in bfloat16. Weights of an Interleaved model are permuted into the
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
		switch p.Value.Dtype() {
		case lilyop.BFloat16:
			h := make([]gemm.BF16, len(v))
			for i, x := range v {
				h[i] = gemm.ToBF16(float32(x)) // exact: x is a bfloat16 value
			}
			ts = append(ts, tensorfile.FromBF16(spec.Name, shape, h))
			continue
		case lilyop.Float16:
			h := make([]gemm.F16, len(v))
			for i, x := range v {
				h[i] = gemm.ToF16(float32(x)) // exact: x is a float16 value
			}
			ts = append(ts, tensorfile.FromF16(spec.Name, shape, h))
			continue
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
