package llama

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"

	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
)

// RopeLayout says which elements of a head the rotary position embedding
// rotates together. It must match how the checkpoint's q_proj and k_proj
// rows are ordered.
type RopeLayout int

const (
	// Halves rotates (x[i], x[i+d/2]) of each head of width d ("rotate_half"),
	// as Hugging Face transformers does; its conversion script permutes the
	// q/k rows of Meta checkpoints to match. It is the zero value.
	Halves RopeLayout = iota
	// Interleaved rotates adjacent pairs (x[2i], x[2i+1]) of each head, as
	// Meta's original code and llama2.c do.
	Interleaved
)

// String names the layout ("interleaved" or "halves").
func (l RopeLayout) String() string {
	switch l {
	case Interleaved:
		return "interleaved"
	case Halves:
		return "halves"
	}
	return fmt.Sprintf("RopeLayout(%d)", int(l))
}

// MarshalText writes the layout's name.
func (l RopeLayout) MarshalText() ([]byte, error) {
	if l != Interleaved && l != Halves {
		return nil, errors.Errorf("llama: unknown rope layout %d", int(l))
	}
	return []byte(l.String()), nil
}

// UnmarshalText reads "interleaved" or "halves".
func (l *RopeLayout) UnmarshalText(b []byte) error {
	switch string(b) {
	case "interleaved":
		*l = Interleaved
	case "halves":
		*l = Halves
	default:
		return errors.Errorf("llama: unknown rope layout %q (want interleaved or halves)", b)
	}
	return nil
}

// Config describes a LLaMA model. The JSON names are those of Hugging Face's
// LlamaConfig.
type Config struct {
	// Dim is the model width (hidden_size).
	Dim int `json:"hidden_size"`
	// HiddenDim is the MLP width (intermediate_size).
	HiddenDim int `json:"intermediate_size"`
	// NLayers is the number of transformer blocks.
	NLayers int `json:"num_hidden_layers"`
	// NHeads is the number of query heads.
	NHeads int `json:"num_attention_heads"`
	// NKVHeads is the number of key/value heads (grouped-query attention);
	// it divides NHeads.
	NKVHeads int `json:"num_key_value_heads"`
	// VocabSize is the number of tokens.
	VocabSize int `json:"vocab_size"`
	// MaxSeqLen is the longest sequence the model was trained for
	// (max_position_embeddings); generation stops there.
	MaxSeqLen int `json:"max_position_embeddings"`
	// NormEps is the RMSNorm epsilon.
	NormEps float64 `json:"rms_norm_eps"`
	// RopeTheta is the base of the rotary frequencies theta^(−2i/head_dim).
	RopeTheta float64 `json:"rope_theta"`
	// TiedEmbeddings makes the output head reuse the token embedding
	// (tie_word_embeddings); otherwise the store holds lm_head.weight.
	TiedEmbeddings bool `json:"tie_word_embeddings"`
	// Rope is the rotary layout of the stored q/k weights: Interleaved for
	// llama2.c checkpoints, Halves (the zero value) for Hugging Face ones
	// and new models. Hugging Face's config.json has no such field: its
	// files are always Halves.
	Rope RopeLayout `json:"rope_layout,omitempty"`
	// RopeScaling is config.json's rope_scaling of type "llama3" (Llama
	// 3.1 and 3.2); the zero value is none.
	RopeScaling RopeScaling `json:"-"`
}

// RopeScaling is Llama 3.1's rescaling of the rotary frequencies
// (rope_scaling {"rope_type": "llama3", ...} in config.json), as
// transformers' _compute_llama3_parameters computes it: a frequency whose
// wavelength 2π/f is longer than OriginalMaxPos/LowFreqFactor is divided
// by Factor, one shorter than OriginalMaxPos/HighFreqFactor is kept, and
// those between are interpolated. The zero value scales nothing.
type RopeScaling struct {
	Factor, LowFreqFactor, HighFreqFactor float64
	OriginalMaxPos                        int
}

// Enabled reports whether s scales anything.
func (s RopeScaling) Enabled() bool { return s != RopeScaling{} }

// Apply returns the scaled inverse frequency f.
func (s RopeScaling) Apply(f float64) float64 {
	if !s.Enabled() {
		return f
	}
	old := float64(s.OriginalMaxPos)
	wavelen := 2 * math.Pi / f
	switch {
	case wavelen < old/s.HighFreqFactor:
		return f
	case wavelen > old/s.LowFreqFactor:
		return f / s.Factor
	}
	smooth := (old/wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
	return (1-smooth)*f/s.Factor + smooth*f
}

// validate reports a scaling transformers would not accept.
func (s RopeScaling) validate() error {
	if !s.Enabled() {
		return nil
	}
	if !(s.Factor >= 1) || !(s.LowFreqFactor > 0) || !(s.HighFreqFactor > s.LowFreqFactor) || s.OriginalMaxPos <= 0 ||
		math.IsInf(s.Factor, 0) || math.IsInf(s.HighFreqFactor, 0) {
		return errors.Errorf("llama: rope_scaling %+v: want factor ≥ 1, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0", s)
	}
	return nil
}

// HeadDim is the width of one attention head.
func (c Config) HeadDim() int { return c.Dim / c.NHeads }

// KVDim is the width of the key and value projections.
func (c Config) KVDim() int { return c.NKVHeads * c.HeadDim() }

// Validate reports the first inconsistent field.
func (c Config) Validate() error {
	switch {
	case c.Dim <= 0 || c.HiddenDim <= 0 || c.NLayers <= 0 || c.NHeads <= 0 || c.NKVHeads <= 0 || c.VocabSize <= 0 || c.MaxSeqLen <= 0:
		return errors.Errorf("llama: config %+v: every size must be positive", c)
	case c.Dim%c.NHeads != 0:
		return errors.Errorf("llama: dim %d is not a multiple of n_heads %d", c.Dim, c.NHeads)
	case c.NHeads%c.NKVHeads != 0:
		return errors.Errorf("llama: n_heads %d is not a multiple of n_kv_heads %d", c.NHeads, c.NKVHeads)
	case c.HeadDim()%2 != 0:
		return errors.Errorf("llama: head dim %d is odd; rotary embeddings need pairs", c.HeadDim())
	case !(c.NormEps >= 0) || c.NormEps > 1:
		return errors.Errorf("llama: rms_norm_eps %v is not in [0, 1]", c.NormEps)
	case !(c.RopeTheta > 1) || c.RopeTheta > 1e12:
		return errors.Errorf("llama: rope_theta %v is not in (1, 1e12]", c.RopeTheta)
	case c.Rope != Interleaved && c.Rope != Halves:
		return errors.Errorf("llama: unknown rope layout %v", c.Rope)
	}
	return c.RopeScaling.validate()
}

// hfConfig is config.json as Hugging Face writes it; pointers tell absent
// fields (which take LlamaConfig's defaults) from zero ones.
type hfConfig struct {
	ModelType             string          `json:"model_type"`
	HiddenSize            *int            `json:"hidden_size"`
	IntermediateSize      *int            `json:"intermediate_size"`
	NumHiddenLayers       *int            `json:"num_hidden_layers"`
	NumAttentionHeads     *int            `json:"num_attention_heads"`
	NumKeyValueHeads      *int            `json:"num_key_value_heads"`
	VocabSize             *int            `json:"vocab_size"`
	MaxPositionEmbeddings *int            `json:"max_position_embeddings"`
	RMSNormEps            *float64        `json:"rms_norm_eps"`
	RopeTheta             *float64        `json:"rope_theta"`
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	HeadDim               *int            `json:"head_dim"`
	HiddenAct             string          `json:"hidden_act"`
	RopeScaling           json.RawMessage `json:"rope_scaling"`
	AttentionBias         bool            `json:"attention_bias"`
	MLPBias               bool            `json:"mlp_bias"`
}

// ParseHFConfig reads a Hugging Face LlamaConfig config.json. Absent
// optional fields take LlamaConfig's defaults (num_key_value_heads =
// num_attention_heads, rms_norm_eps 1e-6, rope_theta 10000,
// max_position_embeddings 2048, untied embeddings). Features this package
// does not implement (rope_scaling, biases, another activation or head_dim)
// are errors. The layout is Halves.
func ParseHFConfig(data []byte) (Config, error) {
	var h hfConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&h); err != nil {
		return Config{}, errors.Wrap(err, "llama: parsing config.json")
	}
	if h.ModelType != "" && h.ModelType != "llama" {
		return Config{}, errors.Errorf("llama: config.json has model_type %q, want \"llama\"", h.ModelType)
	}
	required := map[string]*int{
		"hidden_size": h.HiddenSize, "intermediate_size": h.IntermediateSize, "num_hidden_layers": h.NumHiddenLayers,
		"num_attention_heads": h.NumAttentionHeads, "vocab_size": h.VocabSize,
	}
	for _, name := range []string{"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"} {
		if required[name] == nil {
			return Config{}, errors.Errorf("llama: config.json lacks %s", name)
		}
	}
	c := Config{
		Dim: *h.HiddenSize, HiddenDim: *h.IntermediateSize, NLayers: *h.NumHiddenLayers, NHeads: *h.NumAttentionHeads,
		NKVHeads: *h.NumAttentionHeads, VocabSize: *h.VocabSize, MaxSeqLen: 2048, NormEps: 1e-6, RopeTheta: 10000, Rope: Halves,
	}
	if h.NumKeyValueHeads != nil {
		c.NKVHeads = *h.NumKeyValueHeads
	}
	if h.MaxPositionEmbeddings != nil {
		c.MaxSeqLen = *h.MaxPositionEmbeddings
	}
	if h.RMSNormEps != nil {
		c.NormEps = *h.RMSNormEps
	}
	if h.RopeTheta != nil {
		c.RopeTheta = *h.RopeTheta
	}
	if h.TieWordEmbeddings != nil {
		c.TiedEmbeddings = *h.TieWordEmbeddings
	}
	switch {
	case h.HiddenAct != "" && h.HiddenAct != "silu":
		return Config{}, errors.Errorf("llama: hidden_act %q is not supported (only silu)", h.HiddenAct)
	case h.AttentionBias || h.MLPBias:
		return Config{}, errors.New("llama: attention_bias and mlp_bias are not supported")
	}
	if len(h.RopeScaling) > 0 && string(h.RopeScaling) != "null" {
		var rs struct {
			RopeType string   `json:"rope_type"`
			Type     string   `json:"type"`
			Factor   *float64 `json:"factor"`
			Low      *float64 `json:"low_freq_factor"`
			High     *float64 `json:"high_freq_factor"`
			Original *int     `json:"original_max_position_embeddings"`
		}
		if err := json.Unmarshal(h.RopeScaling, &rs); err != nil {
			return Config{}, errors.Wrapf(err, "llama: rope_scaling %s", h.RopeScaling)
		}
		typ := rs.RopeType
		if typ == "" {
			typ = rs.Type
		}
		if typ == "default" {
			// transformers' name for no scaling
		} else if typ != "llama3" || rs.Factor == nil || rs.Low == nil || rs.High == nil || rs.Original == nil {
			return Config{}, errors.Errorf("llama: rope_scaling %s is not supported (only rope_type \"llama3\" with factor, low_freq_factor, high_freq_factor and original_max_position_embeddings, as Llama 3.1 and 3.2 have)", h.RopeScaling)
		} else {
			c.RopeScaling = RopeScaling{Factor: *rs.Factor, LowFreqFactor: *rs.Low, HighFreqFactor: *rs.High, OriginalMaxPos: *rs.Original}
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	if h.HeadDim != nil && *h.HeadDim != c.HeadDim() {
		return Config{}, errors.Errorf("llama: head_dim %d differs from hidden_size/num_attention_heads = %d; not supported", *h.HeadDim, c.HeadDim())
	}
	return c, nil
}

// LoadHFConfig reads and parses a Hugging Face config.json file.
func LoadHFConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, errors.Wrap(err, "llama")
	}
	c, err := ParseHFConfig(data)
	return c, errors.Wrap(err, path)
}

// HFConfigJSON returns the config.json that Hugging Face transformers needs
// to load the model as LlamaForCausalLM (float32 weights, BOS 1, EOS 2).
func (c Config) HFConfigJSON() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	m := map[string]any{
		"architectures":           []string{"LlamaForCausalLM"},
		"model_type":              "llama",
		"hidden_act":              "silu",
		"hidden_size":             c.Dim,
		"intermediate_size":       c.HiddenDim,
		"num_hidden_layers":       c.NLayers,
		"num_attention_heads":     c.NHeads,
		"num_key_value_heads":     c.NKVHeads,
		"vocab_size":              c.VocabSize,
		"max_position_embeddings": c.MaxSeqLen,
		"rms_norm_eps":            c.NormEps,
		"rope_theta":              c.RopeTheta,
		"tie_word_embeddings":     c.TiedEmbeddings,
		"attention_bias":          false,
		"mlp_bias":                false,
		"rope_scaling":            c.RopeScaling.hfJSON(),
		"bos_token_id":            1,
		"eos_token_id":            2,
		"torch_dtype":             "float32",
	}
	out, err := json.MarshalIndent(m, "", "  ")
	return append(out, '\n'), errors.Wrap(err, "llama: encoding config.json")
}

// Module paths and parameter names, as Hugging Face names them.
const (
	// EmbedName is the token embedding [vocab, dim].
	EmbedName = "model.embed_tokens.weight"
	// FinalNormName is the last RMSNorm's weight [dim].
	FinalNormName = "model.norm.weight"
	// HeadName is the untied output head, stored [dim, vocab].
	HeadName = "lm_head.weight"
)

// layerPath returns "model.layers.N".
func layerPath(l int) string { return fmt.Sprintf("model.layers.%d", l) }

// Sites returns the seven adaptable linears of every block in module order
// (self_attn q_proj, k_proj, v_proj, o_proj, mlp gate_proj, up_proj,
// down_proj), named as in Hugging Face checkpoints. Their frozen weights live
// in the store under "<path>.weight", [DIn, DOut].
func (c Config) Sites() []layers.Site {
	kv := c.KVDim()
	var out []layers.Site
	for l := 0; l < c.NLayers; l++ {
		p := layerPath(l)
		for _, s := range []struct {
			module, target string
			in, out        int
		}{
			{"self_attn", "q_proj", c.Dim, c.Dim},
			{"self_attn", "k_proj", c.Dim, kv},
			{"self_attn", "v_proj", c.Dim, kv},
			{"self_attn", "o_proj", c.Dim, c.Dim},
			{"mlp", "gate_proj", c.Dim, c.HiddenDim},
			{"mlp", "up_proj", c.Dim, c.HiddenDim},
			{"mlp", "down_proj", c.HiddenDim, c.Dim},
		} {
			path := p + "." + s.module + "." + s.target
			out = append(out, layers.Site{Layer: l, Target: s.target, Path: path, DIn: s.in, DOut: s.out, Weight: path + ".weight"})
		}
	}
	return out
}

// hfJSON is config.json's rope_scaling: nil, or the llama3 object.
func (s RopeScaling) hfJSON() any {
	if !s.Enabled() {
		return nil
	}
	return map[string]any{"rope_type": "llama3", "factor": s.Factor, "low_freq_factor": s.LowFreqFactor,
		"high_freq_factor": s.HighFreqFactor, "original_max_position_embeddings": s.OriginalMaxPos}
}
