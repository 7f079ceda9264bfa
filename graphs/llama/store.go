package llama

import (
	"math/rand/v2"

	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// inputNormName and postNormName name the two RMSNorm weights of block l.
func inputNormName(l int) string { return layerPath(l) + ".input_layernorm.weight" }
func postNormName(l int) string  { return layerPath(l) + ".post_attention_layernorm.weight" }

// paramSpecs lists every parameter of the base model in Hugging Face's
// checkpoint order, with store shapes and the initialisation of
// transformers' LlamaPreTrainedModel (normal, std 0.02; norms at one).
func paramSpecs(c Config) []layers.ParamSpec {
	normal := layers.Normal(0.02)
	ones := layers.Constant(1)
	specs := []layers.ParamSpec{{Name: EmbedName, Shape: tensor.Shape{c.VocabSize, c.Dim}, Init: normal}}
	sites := c.Sites()
	for l := 0; l < c.NLayers; l++ {
		specs = append(specs, layers.ParamSpec{Name: inputNormName(l), Shape: tensor.Shape{c.Dim}, Init: ones})
		for i, s := range sites[7*l : 7*l+7] {
			if i == 4 {
				specs = append(specs, layers.ParamSpec{Name: postNormName(l), Shape: tensor.Shape{c.Dim}, Init: ones})
			}
			specs = append(specs, layers.ParamSpec{Name: s.Weight, Shape: tensor.Shape{s.DIn, s.DOut}, Init: normal, Torch: layers.Transposed})
		}
	}
	specs = append(specs, layers.ParamSpec{Name: FinalNormName, Shape: tensor.Shape{c.Dim}, Init: ones})
	if !c.TiedEmbeddings {
		specs = append(specs, layers.ParamSpec{Name: HeadName, Shape: tensor.Shape{c.Dim, c.VocabSize}, Init: normal, Torch: layers.Transposed})
	}
	return specs
}

// NewStore returns a store of dtype dt (tensor.Float32 or tensor.Float64)
// holding a randomly initialised model (weights normal with std 0.02 as
// Hugging Face initialises LLaMA, norms one), drawn from seed. Every
// parameter is frozen, ready for an adapter to be attached; set
// Param.Trainable to train base weights too.
func NewStore(c Config, dt tensor.Dtype, seed uint64) (*layers.Store, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	s, err := layers.NewStore(dt)
	if err != nil {
		return nil, errors.Wrap(err, "llama.NewStore")
	}
	rng := rand.New(rand.NewPCG(seed, 0x11a3a))
	for _, spec := range paramSpecs(c) {
		if _, err := s.New(spec, false, rng); err != nil {
			return nil, errors.Wrap(err, "llama.NewStore")
		}
	}
	return s, nil
}

// checkStore verifies that s holds every base parameter with its shape.
func checkStore(c Config, s *layers.Store) error {
	if s == nil {
		return errors.New("llama: no store")
	}
	for _, spec := range paramSpecs(c) {
		p, ok := s.Get(spec.Name)
		if !ok {
			return errors.Errorf("llama: the store lacks %s", spec.Name)
		}
		if !p.Value.Shape().Eq(spec.Shape) {
			return errors.Errorf("llama: %s has shape %v, the config needs %v", spec.Name, p.Value.Shape(), spec.Shape)
		}
	}
	return nil
}
