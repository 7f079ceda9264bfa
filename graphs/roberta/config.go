package roberta

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/lilygo/lily/internal/hfconfig"
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
)

// Config is a RoBERTa model configuration with the fields and JSON names of
// Hugging Face's RobertaConfig (config.json). Keys this package does not use
// (id2label, bos_token_id, torch_dtype, …) are kept in Extra and written
// back unchanged.
type Config struct {
	// VocabSize is the number of rows of the word-embedding table.
	VocabSize int `json:"vocab_size"`
	// HiddenSize is the width of every hidden state.
	HiddenSize int `json:"hidden_size"`
	// NumHiddenLayers is the number of encoder layers.
	NumHiddenLayers int `json:"num_hidden_layers"`
	// NumAttentionHeads must divide HiddenSize.
	NumAttentionHeads int `json:"num_attention_heads"`
	// IntermediateSize is the feed-forward network's inner width.
	IntermediateSize int `json:"intermediate_size"`
	// HiddenAct must be "gelu" (exact erf GELU).
	HiddenAct string `json:"hidden_act"`
	// HiddenDropoutProb is the dropout after embeddings and block outputs.
	HiddenDropoutProb float64 `json:"hidden_dropout_prob"`
	// AttentionProbsDropoutProb is the dropout on attention probabilities.
	AttentionProbsDropoutProb float64 `json:"attention_probs_dropout_prob"`
	// MaxPositionEmbeddings is the number of rows of the position table;
	// sequences may be MaxSeqLen long.
	MaxPositionEmbeddings int `json:"max_position_embeddings"`
	// TypeVocabSize is the number of token types (1 for RoBERTa).
	TypeVocabSize int `json:"type_vocab_size"`
	// InitializerRange is the standard deviation of fresh weights.
	InitializerRange float64 `json:"initializer_range"`
	// LayerNormEps is every LayerNorm's epsilon.
	LayerNormEps float64 `json:"layer_norm_eps"`
	// PadTokenID is the padding token, whose position is PadTokenID and
	// after which real positions are numbered.
	PadTokenID int `json:"pad_token_id"`
	// PositionEmbeddingType must be "absolute" (the only kind RoBERTa
	// checkpoints use).
	PositionEmbeddingType string `json:"position_embedding_type"`
	// ClassifierDropout is the classification head's dropout; nil means
	// HiddenDropoutProb, as in Hugging Face.
	ClassifierDropout *float64 `json:"classifier_dropout"`
	// ModelType is "roberta" (empty is accepted on reading).
	ModelType string `json:"model_type"`

	// Extra holds every other key of config.json as compact raw JSON.
	Extra map[string]json.RawMessage `json:"-"`
}

// DefaultConfig returns Hugging Face's RobertaConfig defaults, which
// ReadConfig applies to keys a config.json leaves out.
func DefaultConfig() Config {
	return Config{
		VocabSize: 50265, HiddenSize: 768, NumHiddenLayers: 12, NumAttentionHeads: 12,
		IntermediateSize: 3072, HiddenAct: "gelu", HiddenDropoutProb: 0.1, AttentionProbsDropoutProb: 0.1,
		MaxPositionEmbeddings: 512, TypeVocabSize: 2, InitializerRange: 0.02, LayerNormEps: 1e-12,
		PadTokenID: 1, PositionEmbeddingType: "absolute", ModelType: "roberta",
	}
}

// BaseConfig returns the configuration of roberta-base (FacebookAI/roberta-base).
func BaseConfig() Config {
	c := DefaultConfig()
	c.MaxPositionEmbeddings = 514
	c.TypeVocabSize = 1
	c.LayerNormEps = 1e-5
	return c
}

// HeadDim is the width of one attention head.
func (c Config) HeadDim() int { return c.HiddenSize / c.NumAttentionHeads }

// classifierDropout resolves the classification head's dropout.
func (c Config) classifierDropout() float64 {
	if c.ClassifierDropout != nil {
		return *c.ClassifierDropout
	}
	return c.HiddenDropoutProb
}

// Validate reports the first setting this package cannot run, saying why.
func (c Config) Validate() error {
	positive := []struct {
		name string
		v    int
	}{
		{"vocab_size", c.VocabSize}, {"hidden_size", c.HiddenSize}, {"num_hidden_layers", c.NumHiddenLayers},
		{"num_attention_heads", c.NumAttentionHeads}, {"intermediate_size", c.IntermediateSize},
		{"max_position_embeddings", c.MaxPositionEmbeddings}, {"type_vocab_size", c.TypeVocabSize},
	}
	for _, p := range positive {
		if p.v < 1 {
			return errors.Errorf("roberta config: %s = %d; it must be positive", p.name, p.v)
		}
	}
	probs := []struct {
		name string
		v    float64
	}{
		{"hidden_dropout_prob", c.HiddenDropoutProb}, {"attention_probs_dropout_prob", c.AttentionProbsDropoutProb},
	}
	if c.ClassifierDropout != nil {
		probs = append(probs, struct {
			name string
			v    float64
		}{"classifier_dropout", *c.ClassifierDropout})
	}
	for _, p := range probs {
		if math.IsNaN(p.v) || p.v < 0 || p.v >= 1 {
			return errors.Errorf("roberta config: %s = %v; it must be in [0, 1)", p.name, p.v)
		}
	}
	switch {
	case c.HiddenSize%c.NumAttentionHeads != 0:
		return errors.Errorf("roberta config: hidden_size %d is not divisible by num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads)
	case c.HiddenAct != "gelu":
		return errors.Errorf("roberta config: hidden_act %q is not supported; only \"gelu\" (exact erf GELU, as RoBERTa uses) is", c.HiddenAct)
	case c.PositionEmbeddingType != "absolute" && c.PositionEmbeddingType != "":
		return errors.Errorf("roberta config: position_embedding_type %q is not supported; only \"absolute\" is", c.PositionEmbeddingType)
	case c.ModelType != "roberta" && c.ModelType != "":
		return errors.Errorf("roberta config: model_type %q is not \"roberta\"", c.ModelType)
	case c.PadTokenID < 0 || c.PadTokenID >= c.VocabSize:
		return errors.Errorf("roberta config: pad_token_id %d outside the vocabulary [0, %d)", c.PadTokenID, c.VocabSize)
	case c.MaxPositionEmbeddings < c.PadTokenID+2:
		return errors.Errorf("roberta config: max_position_embeddings %d leaves no position after the padding offset %d", c.MaxPositionEmbeddings, c.PadTokenID)
	case !(c.LayerNormEps > 0) || math.IsInf(c.LayerNormEps, 0):
		return errors.Errorf("roberta config: layer_norm_eps = %v; it must be a positive number", c.LayerNormEps)
	case math.IsNaN(c.InitializerRange) || c.InitializerRange < 0 || math.IsInf(c.InitializerRange, 0):
		return errors.Errorf("roberta config: initializer_range = %v; it must be a non-negative number", c.InitializerRange)
	}
	for _, key := range []string{"is_decoder", "add_cross_attention"} {
		var on bool
		if raw, ok := c.Extra[key]; ok && json.Unmarshal(raw, &on) == nil && on {
			return errors.Errorf("roberta config: %s is true; only the bidirectional encoder is supported", key)
		}
	}
	return nil
}

// MaxSeqLen is the longest sequence the position table covers: Hugging
// Face's position ids start at pad_token_id+1.
func (c Config) MaxSeqLen() int { return c.MaxPositionEmbeddings - c.PadTokenID - 1 }

// plainConfig is Config without its JSON methods.
type plainConfig Config

// UnmarshalJSON reads a config.json object: typed fields from their keys
// (defaults from DefaultConfig for absent ones), every other key into Extra.
func (c *Config) UnmarshalJSON(data []byte) error {
	p := plainConfig(DefaultConfig())
	if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	known, err := hfconfig.Keys(plainConfig(Config{}))
	if err != nil {
		return err
	}
	if p.Extra, err = hfconfig.Extra(all, known); err != nil {
		return err
	}
	*c = Config(p)
	return nil
}

// MarshalJSON writes the typed fields and Extra as one object with sorted
// keys, as Hugging Face writes config.json.
func (c Config) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(plainConfig(c))
	if err != nil {
		return nil, err
	}
	return hfconfig.Merge(b, c.Extra)
}

// ReadConfig reads and validates a Hugging Face config.json.
func ReadConfig(path string) (Config, error) {
	var c Config
	if err := hfconfig.Read(path, "roberta config", &c); err != nil {
		return Config{}, err
	}
	return c, nil
}

// WriteConfig validates c and writes it atomically as an indented
// config.json.
func WriteConfig(path string, c Config) error {
	return hfconfig.Write(path, "roberta config", c)
}

// prefix starts every encoder parameter's name, as in Hugging Face's
// task models (RobertaForMaskedLM, RobertaForSequenceClassification).
const prefix = "roberta."

// layerPath returns "roberta.encoder.layer.<l>".
func layerPath(l int) string { return fmt.Sprintf("%sencoder.layer.%d", prefix, l) }

// Sites returns the six adaptable linears of every encoder layer, in module
// order: attention.self.query, .key, .value, attention.output.dense,
// intermediate.dense and output.dense. Each Site's Path is the Hugging Face
// module path (e.g. "roberta.encoder.layer.3.attention.self.query"), its
// Target the last path element ("query", "dense"), and its weights the store
// names "<path>.weight" ([in, out]) and "<path>.bias". Adapters match
// target_modules against the paths with PEFT's suffix rule.
func (c Config) Sites() []layers.Site {
	h, in := c.HiddenSize, c.IntermediateSize
	var out []layers.Site
	for l := 0; l < c.NumHiddenLayers; l++ {
		base := layerPath(l)
		for _, s := range []struct {
			path, target string
			din, dout    int
		}{
			{".attention.self.query", "query", h, h},
			{".attention.self.key", "key", h, h},
			{".attention.self.value", "value", h, h},
			{".attention.output.dense", "dense", h, h},
			{".intermediate.dense", "dense", h, in},
			{".output.dense", "dense", in, h},
		} {
			p := base + s.path
			out = append(out, layers.Site{Layer: l, Target: s.target, Path: p, DIn: s.din, DOut: s.dout, Weight: p + ".weight", Bias: p + ".bias"})
		}
	}
	return out
}
