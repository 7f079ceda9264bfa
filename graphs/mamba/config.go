package mamba

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/lilygo/lily/internal/hfconfig"
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
)

// Config is a Mamba-1 model configuration with the fields and JSON names of
// Hugging Face's MambaConfig (config.json), plus Falcon-Mamba's
// mixer_rms_eps. Keys this package does not use (residual_in_fp32,
// torch_dtype, architectures, …) are kept in Extra and written back
// unchanged.
type Config struct {
	// VocabSize is the number of token ids (rows of the embedding).
	VocabSize int `json:"vocab_size"`
	// HiddenSize is the residual stream's width d_model.
	HiddenSize int `json:"hidden_size"`
	// StateSize is d_state, the SSM state per channel.
	StateSize int `json:"state_size"`
	// NumHiddenLayers is the number of blocks.
	NumHiddenLayers int `json:"num_hidden_layers"`
	// IntermediateSize is d_inner; it must equal Expand·HiddenSize and is
	// derived from them when config.json leaves it out.
	IntermediateSize int `json:"intermediate_size"`
	// Expand is d_inner / d_model.
	Expand int `json:"expand"`
	// ConvKernel is the causal convolution's width d_conv.
	ConvKernel int `json:"conv_kernel"`
	// LayerNormEpsilon is the eps of every block's RMSNorm and of norm_f.
	LayerNormEpsilon float64 `json:"layer_norm_epsilon"`
	// UseBias gives in_proj and out_proj biases; UseConvBias the convolution.
	UseBias     bool `json:"use_bias"`
	UseConvBias bool `json:"use_conv_bias"`
	// HiddenAct must be "silu".
	HiddenAct string `json:"hidden_act"`
	// TimeStepRank is dt_rank, the width of dt before dt_proj. "auto" in
	// config.json means ceil(hidden_size/16), as in Hugging Face.
	TimeStepRank int `json:"time_step_rank"`
	// The dt_proj initialisation of the reference: weight uniform in
	// ±TimeStepScale/√TimeStepRank ("random") or that constant ("constant");
	// bias the inverse softplus of a step drawn log-uniformly in
	// [TimeStepMin, TimeStepMax] and clamped below at TimeStepFloor.
	TimeStepScale      float64 `json:"time_step_scale"`
	TimeStepMin        float64 `json:"time_step_min"`
	TimeStepMax        float64 `json:"time_step_max"`
	TimeStepInitScheme string  `json:"time_step_init_scheme"`
	TimeStepFloor      float64 `json:"time_step_floor"`
	// InitializerRange is the standard deviation of the embedding's
	// initialisation.
	InitializerRange float64 `json:"initializer_range"`
	// RescalePrenormResidual divides out_proj's initial weight by
	// √num_hidden_layers.
	RescalePrenormResidual bool `json:"rescale_prenorm_residual"`
	// TieWordEmbeddings makes the LM head the embedding table (transposed);
	// otherwise the checkpoint has its own lm_head.weight.
	TieWordEmbeddings bool `json:"tie_word_embeddings"`
	// PadTokenID pads the last window in Model.Perplexity; BosTokenID and
	// EosTokenID are kept for the tokenizer and round trips.
	PadTokenID int `json:"pad_token_id"`
	BosTokenID int `json:"bos_token_id"`
	EosTokenID int `json:"eos_token_id"`
	// MixerRMSEps, when set, adds Falcon-Mamba's weightless RMSNorms (with
	// this epsilon) on dt (before dt_proj), B and C. Nil for Mamba; a
	// "falcon_mamba" config.json without the key gets Falcon's 1e-6.
	MixerRMSEps *float64 `json:"mixer_rms_eps,omitempty"`
	// UseMambapy is Falcon-Mamba's choice of training fallback in PyTorch;
	// it does not change the model and is only kept for round trips.
	UseMambapy bool `json:"use_mambapy"`
	// ModelType is "mamba" or "falcon_mamba" (empty is accepted on reading).
	ModelType string `json:"model_type"`

	// Extra holds every other key of config.json, raw.
	Extra map[string]json.RawMessage `json:"-"`
}

// DefaultConfig returns Hugging Face's MambaConfig defaults (which are
// those of state-spaces/mamba-130m with a 50280-token vocabulary), applied
// by ReadConfig to keys a config.json leaves out.
func DefaultConfig() Config {
	return Config{
		VocabSize: 50280, HiddenSize: 768, StateSize: 16, NumHiddenLayers: 32, IntermediateSize: 1536,
		Expand: 2, ConvKernel: 4, LayerNormEpsilon: 1e-5, UseConvBias: true, HiddenAct: "silu",
		TimeStepRank: 48, TimeStepScale: 1, TimeStepMin: 0.001, TimeStepMax: 0.1,
		TimeStepInitScheme: "random", TimeStepFloor: 1e-4, InitializerRange: 0.1,
		TieWordEmbeddings: true, ModelType: "mamba",
	}
}

// TinyConfig returns a 2-layer model of width 8 (d_inner 16, d_state 4,
// dt_rank 2, kernel 3) over a 32-token vocabulary, small enough for tests
// and float64 gradient checks.
func TinyConfig() Config {
	c := DefaultConfig()
	c.VocabSize, c.HiddenSize, c.StateSize, c.NumHiddenLayers = 32, 8, 4, 2
	c.IntermediateSize, c.ConvKernel, c.TimeStepRank = 16, 3, 2
	return c
}

// FalconMamba7BConfig returns the architecture of tiiuae/falcon-mamba-7b
// (64 blocks of width 4096, d_inner 8192, dt_rank 256, an untied head and
// the mixer RMSNorms); special token ids are left at the defaults.
func FalconMamba7BConfig() Config {
	c := DefaultConfig()
	c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.IntermediateSize = 65024, 4096, 64, 8192
	c.TimeStepRank, c.TieWordEmbeddings, c.ModelType = 256, false, "falcon_mamba"
	eps := 1e-6
	c.MixerRMSEps = &eps
	return c
}

// DInner is the mixer's inner width d_inner = expand·hidden_size.
func (c Config) DInner() int { return c.Expand * c.HiddenSize }

// autoRank is Hugging Face's "auto" dt_rank: ceil(hidden_size/16).
func autoRank(hidden int) int { return (hidden + 15) / 16 }

// Validate reports the first setting this package cannot run, saying why.
func (c Config) Validate() error {
	for _, p := range []struct {
		name string
		v    int
	}{
		{"vocab_size", c.VocabSize}, {"hidden_size", c.HiddenSize}, {"state_size", c.StateSize},
		{"num_hidden_layers", c.NumHiddenLayers}, {"expand", c.Expand}, {"conv_kernel", c.ConvKernel},
		{"time_step_rank", c.TimeStepRank},
	} {
		if p.v < 1 {
			return errors.Errorf("mamba config: %s = %d; it must be positive", p.name, p.v)
		}
	}
	finitePos := func(v float64) bool { return v > 0 && !math.IsInf(v, 0) }
	switch {
	case c.IntermediateSize != c.DInner():
		return errors.Errorf("mamba config: intermediate_size %d is not expand·hidden_size = %d", c.IntermediateSize, c.DInner())
	case c.HiddenAct != "silu":
		return errors.Errorf("mamba config: hidden_act %q is not supported; Mamba uses \"silu\"", c.HiddenAct)
	case !finitePos(c.LayerNormEpsilon):
		return errors.Errorf("mamba config: layer_norm_epsilon = %v; it must be a positive number", c.LayerNormEpsilon)
	case c.MixerRMSEps != nil && !finitePos(*c.MixerRMSEps):
		return errors.Errorf("mamba config: mixer_rms_eps = %v; it must be a positive number", *c.MixerRMSEps)
	case !finitePos(c.TimeStepMin) || !finitePos(c.TimeStepMax) || c.TimeStepMax < c.TimeStepMin:
		return errors.Errorf("mamba config: time_step_min %v and time_step_max %v must satisfy 0 < min ≤ max", c.TimeStepMin, c.TimeStepMax)
	case math.IsNaN(c.TimeStepFloor) || c.TimeStepFloor < 0 || math.IsNaN(c.TimeStepScale) || math.IsInf(c.TimeStepScale, 0):
		return errors.Errorf("mamba config: time_step_floor %v and time_step_scale %v must be finite, the floor ≥ 0", c.TimeStepFloor, c.TimeStepScale)
	case c.TimeStepInitScheme != "random" && c.TimeStepInitScheme != "constant":
		return errors.Errorf("mamba config: time_step_init_scheme %q is not \"random\" or \"constant\"", c.TimeStepInitScheme)
	case math.IsNaN(c.InitializerRange) || c.InitializerRange < 0 || math.IsInf(c.InitializerRange, 0):
		return errors.Errorf("mamba config: initializer_range = %v; it must be a non-negative number", c.InitializerRange)
	case c.ModelType != "mamba" && c.ModelType != "falcon_mamba" && c.ModelType != "":
		return errors.Errorf("mamba config: model_type %q is not \"mamba\" or \"falcon_mamba\" (Mamba-2 is not supported)", c.ModelType)
	}
	return nil
}

// knownKeys lists the JSON keys of Config's typed fields.
func knownKeys() (map[string]bool, error) {
	eps := 1.0
	return hfconfig.Keys(plainConfig(Config{MixerRMSEps: &eps}))
}

// plainConfig is Config without its JSON methods.
type plainConfig Config

// originalKeys maps the names of state-spaces/mamba's own config.json
// (MambaConfig of mamba_ssm) to Hugging Face's.
var originalKeys = map[string]string{"d_model": "hidden_size", "n_layer": "num_hidden_layers", "d_intermediate": ""}

// ssmKeys maps the keys of mamba_ssm's ssm_cfg to Hugging Face's.
var ssmKeys = map[string]string{
	"d_state": "state_size", "d_conv": "conv_kernel", "expand": "expand", "dt_rank": "time_step_rank",
	"dt_min": "time_step_min", "dt_max": "time_step_max", "dt_init_floor": "time_step_floor",
	"dt_scale": "time_step_scale", "dt_init": "time_step_init_scheme", "bias": "use_bias", "conv_bias": "use_conv_bias",
}

// UnmarshalJSON reads a config.json object: typed fields from their keys
// (defaults from DefaultConfig for absent ones), every other key into Extra
// (compacted). It also reads state-spaces/mamba's original format (d_model, n_layer,
// ssm_cfg, pad_vocab_size_multiple, rms_norm, tie_embeddings; the vocabulary
// is padded as mamba_ssm pads it) and resolves time_step_rank "auto".
func (c *Config) UnmarshalJSON(data []byte) error {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	if err := fromOriginal(all); err != nil {
		return err
	}
	if string(all["time_step_rank"]) == `"auto"` {
		delete(all, "time_step_rank")
	}
	if string(all["model_type"]) == `"falcon_mamba"` && all["mixer_rms_eps"] == nil {
		all["mixer_rms_eps"] = json.RawMessage("1e-6")
	}
	p := plainConfig(DefaultConfig())
	p.TimeStepRank, p.IntermediateSize = 0, 0
	b, err := json.Marshal(all)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	if p.TimeStepRank == 0 {
		p.TimeStepRank = autoRank(p.HiddenSize)
	}
	if p.IntermediateSize == 0 {
		p.IntermediateSize = p.Expand * p.HiddenSize
	}
	known, err := knownKeys()
	if err != nil {
		return err
	}
	if p.Extra, err = hfconfig.Extra(all, known); err != nil {
		return err
	}
	*c = Config(p)
	return nil
}

// fromOriginal rewrites a config.json in mamba_ssm's own format (one with
// d_model and without hidden_size) into Hugging Face's keys, in place.
// Hugging Face configs that also carry some of those keys (n_layer,
// pad_vocab_size_multiple, …) are left alone: the keys stay in Extra.
func fromOriginal(all map[string]json.RawMessage) error {
	_, hf := all["hidden_size"]
	if _, orig := all["d_model"]; hf || !orig {
		return nil
	}
	for from, to := range originalKeys {
		v, ok := all[from]
		if !ok {
			continue
		}
		delete(all, from)
		if to == "" {
			var n int
			if json.Unmarshal(v, &n) != nil || n != 0 {
				return errors.Errorf("%s = %s: MLP layers between the mixers are not supported", from, v)
			}
			continue
		}
		all[to] = v
	}
	if raw, ok := all["ssm_cfg"]; ok {
		var ssm map[string]json.RawMessage
		if err := json.Unmarshal(raw, &ssm); err != nil {
			return errors.Wrap(err, "ssm_cfg")
		}
		for k, v := range ssm {
			to, ok := ssmKeys[k]
			switch {
			case k == "layer":
				if string(v) != `"Mamba1"` {
					return errors.Errorf("ssm_cfg.layer = %s: only Mamba1 is supported", v)
				}
			case !ok:
				return errors.Errorf("ssm_cfg.%s is not supported", k)
			default:
				all[to] = v
			}
		}
		delete(all, "ssm_cfg")
	}
	if raw, ok := all["rms_norm"]; ok {
		if string(raw) != "true" {
			return errors.Errorf("rms_norm = %s: only RMSNorm blocks are supported", raw)
		}
		delete(all, "rms_norm")
	}
	if raw, ok := all["tie_embeddings"]; ok {
		all["tie_word_embeddings"] = raw
		delete(all, "tie_embeddings")
	}
	if raw, ok := all["pad_vocab_size_multiple"]; ok {
		var m, v int
		if err := json.Unmarshal(raw, &m); err != nil || m < 1 {
			return errors.Errorf("pad_vocab_size_multiple = %s: want a positive integer", raw)
		}
		if err := json.Unmarshal(all["vocab_size"], &v); err != nil {
			return errors.Errorf("pad_vocab_size_multiple needs an integer vocab_size")
		}
		all["vocab_size"] = json.RawMessage(fmt.Sprint((v + m - 1) / m * m))
		delete(all, "pad_vocab_size_multiple")
	}
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

// ReadConfig reads and validates a Hugging Face (or state-spaces/mamba)
// config.json.
func ReadConfig(path string) (Config, error) {
	var c Config
	if err := hfconfig.Read(path, "mamba config", &c); err != nil {
		return Config{}, err
	}
	return c, nil
}

// WriteConfig validates c and writes it atomically as an indented
// config.json that Hugging Face's MambaConfig (or FalconMambaConfig) reads.
func WriteConfig(path string, c Config) error {
	return hfconfig.Write(path, "mamba config", c)
}

// Parameter names, as Hugging Face's MambaForCausalLM names them.
const (
	// EmbeddingName is the token embedding table [vocab_size, hidden_size].
	EmbeddingName = "backbone.embeddings.weight"
	// NormFName is the final RMSNorm's weight [hidden_size].
	NormFName = "backbone.norm_f.weight"
	// LMHeadName is the untied LM head, stored [hidden_size, vocab_size].
	LMHeadName = "lm_head.weight"
)

// LayerPath returns the module path of block l: "backbone.layers.<l>".
func LayerPath(l int) string { return fmt.Sprintf("backbone.layers.%d", l) }

// mixerPath returns "backbone.layers.<l>.mixer".
func mixerPath(l int) string { return LayerPath(l) + ".mixer" }

// Sites returns the four adaptable linears of every block, in module order:
// mixer.in_proj (hidden → 2·d_inner), mixer.x_proj (d_inner → dt_rank +
// 2·state_size, no bias), mixer.dt_proj (dt_rank → d_inner, with bias) and
// mixer.out_proj (d_inner → hidden). Each Site's Path is the Hugging Face
// module path (e.g. "backbone.layers.3.mixer.in_proj"), its Target the last
// path element, and its weights "<path>.weight" ([in, out] in the store)
// and "<path>.bias" where the layer has one. So target_modules ["in_proj"]
// is Lily "in" and ["in_proj", "dt_proj"] is "Δ + in".
func (c Config) Sites() []layers.Site {
	d, di, r, n := c.HiddenSize, c.DInner(), c.TimeStepRank, c.StateSize
	var out []layers.Site
	for l := 0; l < c.NumHiddenLayers; l++ {
		for _, s := range []struct {
			target    string
			din, dout int
			bias      bool
		}{
			{"in_proj", d, 2 * di, c.UseBias},
			{"x_proj", di, r + 2*n, false},
			{"dt_proj", r, di, true},
			{"out_proj", di, d, c.UseBias},
		} {
			path := mixerPath(l) + "." + s.target
			site := layers.Site{Layer: l, Target: s.target, Path: path, DIn: s.din, DOut: s.dout, Weight: path + ".weight"}
			if s.bias {
				site.Bias = path + ".bias"
			}
			out = append(out, site)
		}
	}
	return out
}
