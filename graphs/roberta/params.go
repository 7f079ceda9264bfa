package roberta

import (
	"math/rand/v2"

	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// Store names of the parameters outside the encoder layers; they are the
// Hugging Face checkpoint keys.
const (
	wordEmbeddings     = prefix + "embeddings.word_embeddings.weight"
	positionEmbeddings = prefix + "embeddings.position_embeddings.weight"
	tokenTypeEmbedding = prefix + "embeddings.token_type_embeddings.weight"
	embeddingsNorm     = prefix + "embeddings.LayerNorm"
	lmHeadDense        = "lm_head.dense"
	lmHeadNorm         = "lm_head.layer_norm"
	lmHeadBias         = "lm_head.bias"
	classifierDense    = "classifier.dense"
	classifierOut      = "classifier.out_proj"
)

// linearSpecs returns the [in, out] weight (Torch layout [out, in]) and the
// bias of a linear module, initialised as Hugging Face does: N(0, std²)
// weight, zero bias.
func linearSpecs(path string, in, out int, std float64) []layers.ParamSpec {
	return []layers.ParamSpec{
		{Name: path + ".weight", Shape: tensor.Shape{in, out}, Init: layers.Normal(std), Torch: layers.Transposed},
		{Name: path + ".bias", Shape: tensor.Shape{out}},
	}
}

// normSpecs returns a LayerNorm's weight (ones) and bias (zeros).
func normSpecs(path string, width int) []layers.ParamSpec {
	return []layers.ParamSpec{
		{Name: path + ".weight", Shape: tensor.Shape{width}, Init: layers.Constant(1)},
		{Name: path + ".bias", Shape: tensor.Shape{width}},
	}
}

// embeddingInit draws N(0, std²) and zeroes row pad (nn.Embedding's
// padding_idx row), for a table of the given width; pad < 0 zeroes nothing.
func embeddingInit(std float64, width, pad int) layers.Init {
	normal := layers.Normal(std)
	return func(rng *rand.Rand, vals []float64) {
		normal(rng, vals)
		if pad >= 0 {
			clear(vals[pad*width : (pad+1)*width])
		}
	}
}

// encoderSpecs lists the encoder's parameters in Hugging Face module order.
func (c Config) encoderSpecs() []layers.ParamSpec {
	h, std := c.HiddenSize, c.InitializerRange
	specs := []layers.ParamSpec{
		{Name: wordEmbeddings, Shape: tensor.Shape{c.VocabSize, h}, Init: embeddingInit(std, h, c.PadTokenID)},
		{Name: positionEmbeddings, Shape: tensor.Shape{c.MaxPositionEmbeddings, h}, Init: embeddingInit(std, h, c.PadTokenID)},
		{Name: tokenTypeEmbedding, Shape: tensor.Shape{c.TypeVocabSize, h}, Init: embeddingInit(std, h, -1)},
	}
	specs = append(specs, normSpecs(embeddingsNorm, h)...)
	sites := c.Sites()
	for l := 0; l < c.NumHiddenLayers; l++ {
		for i, s := range sites[6*l : 6*l+6] {
			specs = append(specs, linearSpecs(s.Path, s.DIn, s.DOut, std)...)
			switch i {
			case 3:
				specs = append(specs, normSpecs(layerPath(l)+".attention.output.LayerNorm", h)...)
			case 5:
				specs = append(specs, normSpecs(layerPath(l)+".output.LayerNorm", h)...)
			}
		}
	}
	return specs
}

// NumParams is the number of parameters of the encoder c describes, with
// its MLM head when lmHead is set, from the sizes alone and in float64, so
// that a memory estimate can refuse absurd sizes before anything (not even
// the list of parameters) is allocated.
func (c Config) NumParams(lmHead bool) float64 {
	one, none := c, c
	one.NumHiddenLayers, none.NumHiddenLayers = 1, 0
	n := layers.SpecsSize(none.encoderSpecs())
	n += float64(c.NumHiddenLayers) * (layers.SpecsSize(one.encoderSpecs()) - n)
	if lmHead {
		n += layers.SpecsSize(c.lmHeadSpecs())
	}
	return n
}

// lmHeadSpecs lists RobertaLMHead's parameters; its decoder weight is the
// word-embedding table.
func (c Config) lmHeadSpecs() []layers.ParamSpec {
	specs := linearSpecs(lmHeadDense, c.HiddenSize, c.HiddenSize, c.InitializerRange)
	specs = append(specs, normSpecs(lmHeadNorm, c.HiddenSize)...)
	return append(specs, layers.ParamSpec{Name: lmHeadBias, Shape: tensor.Shape{c.VocabSize}})
}

// classifierSpecs lists RobertaClassificationHead's parameters for
// numLabels outputs.
func (c Config) classifierSpecs(numLabels int) []layers.ParamSpec {
	specs := linearSpecs(classifierDense, c.HiddenSize, c.HiddenSize, c.InitializerRange)
	return append(specs, linearSpecs(classifierOut, c.HiddenSize, numLabels, c.InitializerRange)...)
}

// addSpecs validates the arguments and adds specs to s as trainable
// parameters drawn from a generator seeded by (seed, stream).
func addSpecs(what string, s *layers.Store, cfg Config, specs []layers.ParamSpec, seed, stream uint64) error {
	if s == nil {
		return errors.Errorf("roberta.%s: nil store", what)
	}
	if err := cfg.Validate(); err != nil {
		return errors.Wrapf(err, "roberta.%s", what)
	}
	rng := rand.New(rand.NewPCG(seed, stream))
	for _, spec := range specs {
		if _, err := s.New(spec, true, rng); err != nil {
			return errors.Wrapf(err, "roberta.%s", what)
		}
	}
	return nil
}

// InitStore adds a freshly initialised RoBERTa encoder to s, as Hugging
// Face initialises one: N(0, initializer_range²) for linear weights and
// embeddings, zero biases, LayerNorm weight 1 and bias 0, and the padding
// rows of the word and position tables zero. The parameters are trainable
// (a fresh model is meant to be trained); call s.Freeze() before attaching
// an adapter to fine-tune only the adapter.
func InitStore(s *layers.Store, cfg Config, seed uint64) error {
	return addSpecs("InitStore", s, cfg, cfg.encoderSpecs(), seed, 1)
}

// AddLMHead adds a freshly initialised, trainable masked-language-model head
// (RobertaLMHead: lm_head.dense, lm_head.layer_norm and lm_head.bias; its
// decoder weight is tied to the word embeddings).
func AddLMHead(s *layers.Store, cfg Config, seed uint64) error {
	return addSpecs("AddLMHead", s, cfg, cfg.lmHeadSpecs(), seed, 2)
}

// AddClassifier adds a freshly initialised, trainable classification head
// (RobertaClassificationHead: classifier.dense and classifier.out_proj) with
// numLabels outputs.
func AddClassifier(s *layers.Store, cfg Config, numLabels int, seed uint64) error {
	if numLabels < 1 {
		return errors.Errorf("roberta.AddClassifier: %d labels; need at least 1", numLabels)
	}
	return addSpecs("AddClassifier", s, cfg, cfg.classifierSpecs(numLabels), seed, 3)
}
