package roberta

import (
	"encoding/json"
	"fmt"
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

// File names of a Hugging Face model directory.
const (
	// ConfigFile is the model configuration.
	ConfigFile = "config.json"
	// WeightsFile holds the weights in safetensors format.
	WeightsFile = "model.safetensors"
)

// LoadOptions says what Load builds.
type LoadOptions struct {
	// Dtype of the store: tensor.Float32 (the zero value) or tensor.Float64.
	// Checkpoint tensors (F16, BF16, F32, F64) are converted to it.
	Dtype tensor.Dtype
	// LMHead loads the masked-language-model head (lm_head.*); the
	// checkpoint must have it. Otherwise its keys are skipped.
	LMHead bool
	// Classifier loads the classification head (classifier.*); the
	// checkpoint must have it. Otherwise its keys are skipped.
	Classifier bool
	// AllowUnexpected accepts checkpoint keys that name nothing of the model
	// and lists them in Checkpoint.Unexpected; by default they are an error.
	AllowUnexpected bool
}

// Checkpoint is a model loaded from a Hugging Face directory.
type Checkpoint struct {
	// Config is the validated config.json.
	Config Config
	// Store holds the loaded parameters, all trainable, under their Hugging
	// Face names with the "roberta." prefix; linear weights are transposed to
	// [in, out]. Call Store.Freeze() before attaching an adapter.
	Store *layers.Store
	// NumLabels is the classification head's width (0 without Classifier).
	NumLabels int
	// Skipped lists, sorted, the checkpoint keys deliberately not loaded:
	// the pooler (RoBERTa's task heads do not use it), the position_ids and
	// token_type_ids buffers, the tied decoder weight and bias, and heads not
	// asked for.
	Skipped []string
	// Unexpected lists, sorted, keys naming nothing of the model (only with
	// LoadOptions.AllowUnexpected).
	Unexpected []string
}

// canonicalKey maps a checkpoint key to the store's name for it: keys of a
// bare RobertaModel gain the "roberta." prefix, and legacy LayerNorm
// gamma/beta become weight/bias, as Hugging Face renames them on loading.
func canonicalKey(k string) string {
	for _, p := range []string{"embeddings.", "encoder.", "pooler."} {
		if strings.HasPrefix(k, p) {
			k = prefix + k
			break
		}
	}
	if s, ok := strings.CutSuffix(k, "LayerNorm.gamma"); ok {
		k = s + "LayerNorm.weight"
	} else if s, ok := strings.CutSuffix(k, "LayerNorm.beta"); ok {
		k = s + "LayerNorm.bias"
	}
	return k
}

// alwaysSkipped reports keys that are never loaded.
func alwaysSkipped(k string) bool {
	return strings.HasPrefix(k, prefix+"pooler.") || k == prefix+"embeddings.position_ids" || k == prefix+"embeddings.token_type_ids" ||
		k == "lm_head.decoder.weight" || k == "lm_head.decoder.bias"
}

// torchShape is the checkpoint shape of a parameter spec.
func torchShape(spec layers.ParamSpec) []int {
	s := []int(spec.Shape.Clone())
	if spec.Torch == layers.Transposed {
		s[0], s[1] = s[1], s[0]
	}
	return s
}

// transpose returns the [cols, rows] transpose of a row-major [rows, cols]
// matrix.
func transpose[T any](m []T, rows, cols int) []T {
	out := make([]T, len(m))
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			out[j*rows+i] = m[i*cols+j]
		}
	}
	return out
}

// Load reads a Hugging Face RoBERTa model directory: config.json and a
// single model.safetensors (keys with or without the "roberta." prefix;
// linear weights [out, in] are transposed into the store's [in, out];
// F16/BF16/F32/F64 are converted to opts.Dtype). Every encoder parameter
// must be present with the shape the config implies: missing keys are
// reported together by name, and a shape mismatch names the key, as does a
// NaN or ±Inf.
func Load(dir string, opts LoadOptions) (*Checkpoint, error) {
	dir = atomicfile.Resolve(dir)
	cfg, err := ReadConfig(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, errors.Wrap(err, "roberta.Load")
	}
	path := filepath.Join(dir, WeightsFile)
	if _, err := os.Stat(path); err != nil {
		if _, e := os.Stat(path + ".index.json"); e == nil {
			return nil, errors.Errorf("roberta.Load: %s is a sharded checkpoint (%s.index.json); merge it into one %s", dir, WeightsFile, WeightsFile)
		}
		return nil, errors.Wrapf(err, "roberta.Load: %s needs a %s (convert PyTorch .bin checkpoints to safetensors)", dir, WeightsFile)
	}
	f, err := tensorfile.Open(path)
	if err != nil {
		return nil, errors.Wrap(err, "roberta.Load")
	}
	dt := opts.Dtype
	if dt == (tensor.Dtype{}) {
		dt = tensor.Float32
	}
	store, err := layers.NewStore(dt)
	if err != nil {
		return nil, errors.Wrap(err, "roberta.Load")
	}
	ck := &Checkpoint{Config: cfg, Store: store}

	// Map the file's keys to store names.
	fileKey := map[string]string{}
	for _, k := range f.Names() {
		c := canonicalKey(k)
		if prev, dup := fileKey[c]; dup {
			return nil, errors.Errorf("roberta.Load: %s: keys %q and %q both name %s", path, prev, k, c)
		}
		fileKey[c] = k
	}

	specs := cfg.encoderSpecs()
	if opts.LMHead {
		specs = append(specs, cfg.lmHeadSpecs()...)
	}
	if opts.Classifier {
		k, ok := fileKey[classifierOut+".weight"]
		if !ok {
			return nil, errors.Errorf("roberta.Load: %s has no classification head (missing %s.weight); load without LoadOptions.Classifier and call AddClassifier", path, classifierOut)
		}
		shape, _ := f.Shape(k)
		if len(shape) != 2 || shape[0] < 1 {
			return nil, errors.Errorf("roberta.Load: %s: %s has shape %v, want [num_labels, %d]", path, k, shape, cfg.HiddenSize)
		}
		ck.NumLabels = shape[0]
		specs = append(specs, cfg.classifierSpecs(ck.NumLabels)...)
	}
	wanted := map[string]bool{}
	var missing []string
	for _, spec := range specs {
		wanted[spec.Name] = true
		if _, ok := fileKey[spec.Name]; !ok {
			missing = append(missing, spec.Name)
		}
	}
	if len(missing) > 0 {
		return nil, errors.Errorf("roberta.Load: %s lacks %d tensors: %s", path, len(missing), strings.Join(missing, ", "))
	}
	for c, k := range fileKey {
		switch {
		case wanted[c]:
		case alwaysSkipped(c), strings.HasPrefix(c, "lm_head."), strings.HasPrefix(c, "classifier."):
			ck.Skipped = append(ck.Skipped, k)
		default:
			ck.Unexpected = append(ck.Unexpected, k)
		}
	}
	sort.Strings(ck.Skipped)
	sort.Strings(ck.Unexpected)
	if len(ck.Unexpected) > 0 && !opts.AllowUnexpected {
		return nil, errors.Errorf("roberta.Load: %s has %d tensors that are not part of a RoBERTa model: %s (set LoadOptions.AllowUnexpected to ignore them)", path, len(ck.Unexpected), strings.Join(ck.Unexpected, ", "))
	}

	for _, spec := range specs {
		if err := loadParam(store, f, fileKey[spec.Name], spec); err != nil {
			return nil, errors.Wrapf(err, "roberta.Load: %s", path)
		}
	}
	return ck, nil
}

// loadParam reads one tensor, checks its shape, converts it to the store's
// layout and dtype, and adds it trainable.
func loadParam(s *layers.Store, f *tensorfile.File, key string, spec layers.ParamSpec) error {
	want := torchShape(spec)
	if got, _ := f.Shape(key); !tensor.Shape(got).Eq(tensor.Shape(want)) || len(got) != len(want) {
		return errors.Errorf("tensor %q has shape %v, the config implies %v", key, got, want)
	}
	var value *tensor.Dense
	if s.Dtype() == tensor.Float64 {
		data, _, err := f.Float64(key)
		if err != nil {
			return err
		}
		if spec.Torch == layers.Transposed {
			data = transpose(data, want[0], want[1])
		}
		value = tensor.New(tensor.WithShape(spec.Shape.Clone()...), tensor.WithBacking(data))
	} else {
		data, _, err := f.Float32(key)
		if err != nil {
			return err
		}
		if spec.Torch == layers.Transposed {
			data = transpose(data, want[0], want[1])
		}
		value = tensor.New(tensor.WithShape(spec.Shape.Clone()...), tensor.WithBacking(data))
	}
	if err := layers.CheckFinite(key, value); err != nil {
		return err
	}
	return s.Add(&layers.Param{Name: spec.Name, Value: value, Trainable: true, Torch: spec.Torch})
}

// headSpecs returns the specs of a head if the store has all of them, nil
// if it has none, and an error naming the absent ones if it has some.
func headSpecs(s *layers.Store, what string, specs []layers.ParamSpec) ([]layers.ParamSpec, error) {
	var have, lack []string
	for _, spec := range specs {
		if _, ok := s.Get(spec.Name); ok {
			have = append(have, spec.Name)
		} else {
			lack = append(lack, spec.Name)
		}
	}
	switch {
	case len(have) == 0:
		return nil, nil
	case len(lack) > 0:
		return nil, errors.Errorf("the store has part of the %s (%s) but not %s", what, strings.Join(have, ", "), strings.Join(lack, ", "))
	}
	return specs, nil
}

// Save writes the RoBERTa model held in s as a Hugging Face directory that
// Load and transformers' from_pretrained read: config.json and
// model.safetensors with Hugging Face key names, linear weights as [out, in],
// in the store's dtype. The two files are replaced together
// (atomicfile.UpdateDir): a process killed at any point leaves the previous
// pair or the new one; other entries of dir are kept. The encoder must be
// complete; the MLM and classification heads are saved when present. Other
// parameters (adapters) are not saved. With a classification head and no
// id2label in cfg, generic labels LABEL_0 … are written, as Hugging Face
// does.
func Save(dir string, s *layers.Store, cfg Config) error {
	if s == nil {
		return errors.New("roberta.Save: nil store")
	}
	if err := cfg.Validate(); err != nil {
		return errors.Wrap(err, "roberta.Save")
	}
	specs := cfg.encoderSpecs()
	lm, err := headSpecs(s, "MLM head", cfg.lmHeadSpecs())
	if err != nil {
		return errors.Wrap(err, "roberta.Save")
	}
	specs = append(specs, lm...)
	if p, ok := s.Get(classifierOut + ".bias"); ok {
		n := p.Value.Shape()[0]
		cls, err := headSpecs(s, "classification head", cfg.classifierSpecs(n))
		if err != nil {
			return errors.Wrap(err, "roberta.Save")
		}
		if cfg, err = withLabels(cfg, n); err != nil {
			return errors.Wrap(err, "roberta.Save")
		}
		specs = append(specs, cls...)
	} else if _, err := headSpecs(s, "classification head", cfg.classifierSpecs(1)); err != nil {
		return errors.Wrap(err, "roberta.Save")
	}

	tensors := make([]tensorfile.Tensor, 0, len(specs))
	for _, spec := range specs {
		p, ok := s.Get(spec.Name)
		if !ok {
			return errors.Errorf("roberta.Save: the store has no %s", spec.Name)
		}
		if !p.Value.Shape().Eq(spec.Shape) {
			return errors.Errorf("roberta.Save: %s has shape %v, the config implies %v", spec.Name, p.Value.Shape(), spec.Shape)
		}
		ts := torchShape(spec)
		switch data := p.Value.Data().(type) {
		case []float32:
			if spec.Torch == layers.Transposed {
				data = transpose(data, spec.Shape[0], spec.Shape[1])
			}
			tensors = append(tensors, tensorfile.FromFloat32(spec.Name, ts, data))
		case []float64:
			if spec.Torch == layers.Transposed {
				data = transpose(data, spec.Shape[0], spec.Shape[1])
			}
			tensors = append(tensors, tensorfile.FromFloat64(spec.Name, ts, data))
		default:
			return errors.Errorf("roberta.Save: %s has dtype %v", spec.Name, p.Value.Dtype())
		}
	}
	err = atomicfile.UpdateDir(dir, func(tmp string) error {
		if err := tensorfile.Write(filepath.Join(tmp, WeightsFile), tensors, map[string]string{"format": "pt"}); err != nil {
			return err
		}
		return WriteConfig(filepath.Join(tmp, ConfigFile), cfg)
	})
	return errors.Wrap(err, "roberta.Save")
}

// withLabels returns cfg with id2label and label2id for n labels: kept when
// cfg has n of them, generic (LABEL_i) when it has none, an error otherwise.
func withLabels(cfg Config, n int) (Config, error) {
	if raw, ok := cfg.Extra["id2label"]; ok {
		var m map[string]string
		if err := json.Unmarshal(raw, &m); err != nil {
			return cfg, errors.Wrap(err, "config id2label")
		}
		if len(m) != n {
			return cfg, errors.Errorf("config id2label has %d labels, the classification head %d", len(m), n)
		}
		return cfg, nil
	}
	id2label, label2id := map[string]string{}, map[string]int{}
	for i := 0; i < n; i++ {
		id2label[fmt.Sprint(i)] = fmt.Sprintf("LABEL_%d", i)
		label2id[fmt.Sprintf("LABEL_%d", i)] = i
	}
	a, _ := json.Marshal(id2label) // maps of strings and ints always encode
	b, _ := json.Marshal(label2id)
	extra := map[string]json.RawMessage{}
	for k, v := range cfg.Extra {
		extra[k] = v
	}
	extra["id2label"], extra["label2id"] = a, b
	cfg.Extra = extra
	return cfg, nil
}
