package adapterfile

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
)

// ConfigName and WeightsName are the file names PEFT uses in an adapter
// directory.
const (
	ConfigName  = "adapter_config.json"
	WeightsName = "adapter_model.safetensors"
)

// Config is adapter_config.json: PEFT's keys for the method, plus our own
// extensions under "lily_go". PEFT ignores that key but warns about it, so
// Save leaves it out in the PEFT layout; a config without it (PEFT's own
// files) means PEFT's semantics: batch routing, live routers.
type Config struct {
	PEFTType      string   `json:"peft_type"`
	BaseModel     string   `json:"base_model_name_or_path,omitempty"`
	TaskType      string   `json:"task_type,omitempty"`
	InferenceMode bool     `json:"inference_mode"`
	TargetModules []string `json:"target_modules,omitempty"`
	ModulesToSave []string `json:"modules_to_save,omitempty"`
	R             int      `json:"r,omitempty"`

	// Lily (peft_type "LILY").
	StrideA     int     `json:"stride_A,omitempty"`
	NumB        int     `json:"num_B,omitempty"`
	Scaling     float64 `json:"scaling,omitempty"`
	InitWeights *bool   `json:"init_weights,omitempty"`

	// LoRA (peft_type "LORA").
	Alpha           float64 `json:"lora_alpha,omitempty"`
	Dropout         float64 `json:"lora_dropout,omitempty"`
	RSLoRA          bool    `json:"use_rslora,omitempty"`
	InitLoRAWeights *bool   `json:"init_lora_weights,omitempty"`
	Bias            string  `json:"bias,omitempty"`

	Ext *Extension `json:"lily_go,omitempty"`
}

// Extension holds what only this library writes.
type Extension struct {
	// Routing, MaskBatch and Uniform are the Lily options PEFT lacks.
	Routing   lilyop.Routing `json:"routing"`
	MaskBatch bool           `json:"mask_batch,omitempty"`
	Uniform   bool           `json:"uniform,omitempty"`
	// FrozenMixing holds mixing vectors fixed with FreezeMixing.
	FrozenMixing map[string][]float64 `json:"frozen_mixing,omitempty"`
	// SharedOnce is true when shared Lily tensors are stored once (under
	// their first user's name) instead of PEFT's once per layer; Save sets
	// it whenever it writes this section.
	SharedOnce bool `json:"shared_tensors_once"`
	// Dtype is the element type the tensors were saved in.
	Dtype string `json:"dtype"`
}

// configOf describes adapter a as adapter_config.json.
func configOf(a layers.Adapter) (Config, error) {
	switch ad := a.(type) {
	case *layers.Lily:
		c := ad.Config()
		init := !c.NonZeroB
		return Config{PEFTType: "LILY", R: c.R, StrideA: c.StrideA, NumB: c.NumB, Scaling: c.Scaling,
			TargetModules: c.TargetModules, InitWeights: &init,
			Ext: &Extension{Routing: c.Routing, MaskBatch: c.MaskBatch, Uniform: c.Uniform, FrozenMixing: ad.FrozenMixing()}}, nil
	case *layers.LoRA:
		c := ad.Config()
		init := !c.NonZeroB
		return Config{PEFTType: "LORA", R: c.R, Alpha: c.Alpha, Dropout: c.Dropout, RSLoRA: c.RSLoRA,
			TargetModules: c.TargetModules, InitLoRAWeights: &init, Bias: "none", Ext: &Extension{}}, nil
	case layers.None, *layers.None:
		return Config{PEFTType: "NONE", Ext: &Extension{}}, nil
	}
	return Config{}, errors.Errorf("adapterfile: cannot save a %s adapter (%T)", a.Method(), a)
}

// MaxScaling bounds the factor an adapter file may scale its update by:
// trained adapters use about 1 (the Lily paper at most 2, LoRA's alpha/r
// rarely more than 32), so a larger one is a corrupt or hostile file whose
// output would swamp the model's, or overflow float32.
const MaxScaling = 1e6

// Adapter builds the adapter the configuration describes; it refuses a
// scaling beyond ±MaxScaling.
func (c Config) Adapter() (layers.Adapter, error) {
	ext := Extension{}
	if c.Ext != nil {
		ext = *c.Ext
	}
	switch c.PEFTType {
	case "LILY":
		nonZero := c.InitWeights != nil && !*c.InitWeights
		if err := checkScaling(c.Scaling); err != nil {
			return nil, err
		}
		l, err := layers.NewLily(layers.LilyConfig{R: c.R, StrideA: c.StrideA, NumB: c.NumB, Scaling: c.Scaling,
			TargetModules: c.TargetModules, NonZeroB: nonZero, Routing: ext.Routing, MaskBatch: ext.MaskBatch, Uniform: ext.Uniform})
		return l, errors.Wrap(err, ConfigName)
	case "LORA":
		if c.Bias != "" && c.Bias != "none" {
			return nil, errors.Errorf("%s: bias %q is not supported; only \"none\"", ConfigName, c.Bias)
		}
		nonZero := c.InitLoRAWeights != nil && !*c.InitLoRAWeights
		l, err := layers.NewLoRA(layers.LoRAConfig{R: c.R, Alpha: c.Alpha, Dropout: c.Dropout, RSLoRA: c.RSLoRA,
			TargetModules: c.TargetModules, NonZeroB: nonZero})
		if err != nil {
			return nil, errors.Wrap(err, ConfigName)
		}
		return l, checkScaling(l.Config().Scaling())
	case "NONE":
		return layers.None{}, nil
	}
	return nil, errors.Errorf("%s: peft_type %q is not supported; use LILY, LORA or NONE", ConfigName, c.PEFTType)
}

// checkScaling refuses a non-finite scaling or one beyond ±MaxScaling.
func checkScaling(s float64) error {
	if !(math.Abs(s) <= MaxScaling) {
		return errors.Errorf("%s: scaling %v is not a number within ±%g; the file is corrupt", ConfigName, s, float64(MaxScaling))
	}
	return nil
}

// ReadConfig reads dir/adapter_config.json.
func ReadConfig(dir string) (Config, error) {
	path := filepath.Join(atomicfile.Resolve(dir), ConfigName)
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, errors.Wrap(err, "reading adapter config")
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, errors.Wrapf(err, "parsing %s", path)
	}
	return c, nil
}

// unimplemented are PEFT config keys that change which modules are adapted
// or what they compute, in ways this package does not implement. PEFT
// writes every one of them, with an empty or false value when unused.
var unimplemented = []string{
	"alpha_pattern", "rank_pattern", "use_dora", "lora_bias", "fan_in_fan_out", "layer_replication",
	"layers_to_transform", "layers_pattern", "exclude_modules", "target_parameters",
	"trainable_token_indices", "use_qalora", "use_bdlora", "alora_invocation_tokens",
}

// UnmarshalJSON reads target_modules as a list of module names; PEFT's other
// form, one regular expression, is refused with a clear error, and so is
// any PEFT option of the unimplemented list that is set.
func (c *Config) UnmarshalJSON(b []byte) error {
	type plain Config
	var raw struct {
		plain
		TargetModules json.RawMessage `json:"target_modules"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for _, k := range unimplemented {
		switch v := strings.TrimSpace(string(all[k])); v {
		case "", "null", "false", "{}", "[]", `""`:
		default:
			return errors.Errorf("%s is %s: this PEFT option is not implemented here; only adapters without it load", k, v)
		}
	}
	*c = Config(raw.plain)
	c.TargetModules = nil
	if len(raw.TargetModules) == 0 || string(raw.TargetModules) == "null" {
		return nil
	}
	var one string
	if err := json.Unmarshal(raw.TargetModules, &one); err == nil {
		return errors.Errorf("target_modules is the regular expression %q; list the module names instead", one)
	}
	return errors.Wrap(json.Unmarshal(raw.TargetModules, &c.TargetModules), "target_modules must be a list of module names")
}
