// Package adapterfile saves and loads adapters — and extra trainable modules
// such as a classifier head — as PEFT-style adapter directories:
// adapter_model.safetensors with PEFT's key names and PyTorch layouts, plus
// adapter_config.json.
//
// By default a Lily tensor shared by several layers is stored once, under
// the name of the first layer that uses it, and adapter_config.json carries
// this library's own options under "lily_go". Options.PEFTLayout instead
// writes exactly what PEFT writes: shared tensors repeated under every
// layer's name and no "lily_go" key, so that PEFT's PeftModel.from_pretrained
// loads the directory without a warning. Load reads both layouts and checks
// that repeated copies agree.
package adapterfile

import (
	"encoding/json"
	"path/filepath"
	"sort"
	"strings"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/tensorfile"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// Prefix starts every key, as in PEFT's saved state dicts.
const Prefix = "base_model.model."

// Options tune Save.
type Options struct {
	// PEFTLayout writes the directory exactly as PEFT would: every shared
	// Lily tensor repeated once per layer, and no "lily_go" section in the
	// config (PEFT warns about keys it does not know). Save refuses it for
	// a Lily adapter that PEFT cannot compute: routing other than batch,
	// mask_batch, uniform or frozen mixing.
	PEFTLayout bool
	// Extra names store parameters saved besides the adapter (PEFT's
	// modules_to_save). Nil means every trainable parameter that does not
	// belong to the adapter, such as a classifier head.
	Extra []string
	// BaseModel and TaskType fill the config's base_model_name_or_path and
	// task_type (e.g. "SEQ_CLS"). With SEQ_CLS and TOKEN_CLS, extra modules
	// inside "classifier" or "score" are listed in modules_to_save as that
	// head, as PEFT requires.
	BaseModel, TaskType string
}

// Save writes adapter a (laid out over sites in store s) and the extra
// modules to dir, creating it if needed. The two files are replaced
// together (atomicfile.UpdateDir): a process killed at any point leaves the
// previous pair or the new one; other entries of dir are kept.
func Save(dir string, s *layers.Store, a layers.Adapter, sites []layers.Site, opt Options) error {
	cfg, err := configOf(a)
	if err != nil {
		return err
	}
	if opt.PEFTLayout {
		if err := peftComputes(a); err != nil {
			return err
		}
	}
	specs, err := a.Layout(sites)
	if err != nil {
		return errors.Wrap(err, "adapterfile.Save")
	}
	own := map[string]bool{}
	for _, sp := range specs {
		own[sp.Name] = true
	}
	// key (without prefix) → store parameter.
	keys := map[string]string{}
	for _, sp := range specs {
		keys[sp.Name] = sp.Name
	}
	if l, ok := a.(*layers.Lily); ok && opt.PEFTLayout {
		keys = l.PEFTNames()
	}
	extra := opt.Extra
	if extra == nil {
		for _, p := range s.Trainable() {
			if !own[p.Name] {
				extra = append(extra, p.Name)
			}
		}
	}
	modules := map[string]bool{}
	for _, name := range extra {
		if own[name] {
			return errors.Errorf("adapterfile.Save: extra parameter %q belongs to the adapter", name)
		}
		keys[name] = name
		modules[savedModule(moduleOf(name), opt.TaskType)] = true
	}
	var tensors []tensorfile.Tensor
	for key, name := range keys {
		p, ok := s.Get(name)
		if !ok {
			return errors.Errorf("adapterfile.Save: parameter %q is not in the store (attach the adapter first)", name)
		}
		tensors = append(tensors, toTorch(Prefix+key, p))
	}
	for m := range modules {
		cfg.ModulesToSave = append(cfg.ModulesToSave, m)
	}
	sort.Strings(cfg.ModulesToSave)
	cfg.BaseModel, cfg.TaskType, cfg.InferenceMode = opt.BaseModel, opt.TaskType, true
	if opt.PEFTLayout {
		cfg.Ext = nil
	} else {
		cfg.Ext.SharedOnce = true
		cfg.Ext.Dtype = s.Dtype().String()
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return errors.Wrap(err, "adapterfile.Save: encoding config")
	}
	return atomicfile.UpdateDir(dir, func(tmp string) error {
		if err := tensorfile.Write(filepath.Join(tmp, WeightsName), tensors, map[string]string{"format": "pt"}); err != nil {
			return err
		}
		return atomicfile.WriteBytes(filepath.Join(tmp, ConfigName), append(b, '\n'))
	})
}

// peftComputes reports, for a Lily adapter, the first option PEFT's Lily
// lacks: PEFT would load such an adapter and silently compute batch
// routing with live routers instead.
func peftComputes(a layers.Adapter) error {
	l, ok := a.(*layers.Lily)
	if !ok {
		return nil
	}
	c := l.Config()
	var what string
	switch {
	case c.Routing != lilyop.Batch:
		what = c.Routing.String() + " routing"
	case c.MaskBatch:
		what = "mask_batch"
	case c.Uniform:
		what = "uniform mixing"
	case len(l.FrozenMixing()) > 0:
		what = "frozen mixing vectors"
	default:
		return nil
	}
	return errors.Errorf("adapterfile.Save: PEFT's Lily computes only batch routing with live routers, so it cannot reproduce this adapter's %s; save it without PEFTLayout", what)
}

// taskHeads are the modules that PEFT adds to modules_to_save itself for
// a task type (PeftModelForSequenceClassification and its kin).
var taskHeads = map[string][]string{"SEQ_CLS": {"classifier", "score"}, "TOKEN_CLS": {"classifier", "score"}, "QUESTION_ANS": {"qa_outputs"}}

// savedModule returns the name modules_to_save lists for module m: the
// outermost module on m's path that PEFT already saves for the task type
// (matched as PEFT matches, by suffix), else m. Given both a task head and
// a module inside it, PEFT wraps twice and fails to load the directory
// (KeyError in set_peft_model_state_dict, PEFT 0.21.0).
func savedModule(m, task string) string {
	parts := strings.Split(m, ".")
	for i := 1; i <= len(parts); i++ {
		p := strings.Join(parts[:i], ".")
		for _, h := range taskHeads[task] {
			if strings.HasSuffix(p, h) {
				return p
			}
		}
	}
	return m
}

// moduleOf strips the parameter suffix: "classifier.dense.weight" →
// "classifier.dense".
func moduleOf(name string) string {
	if i := strings.LastIndex(name, "."); i > 0 {
		return name[:i]
	}
	return name
}

// torchShape is the shape PyTorch uses for p.
func torchShape(p *layers.Param) []int {
	return layoutShape(p.Value.Shape(), p.Torch, p.TorchShape)
}

// layoutShape is the shape PyTorch uses for a parameter of the store shape
// shape, layout torch and explicit PyTorch shape ts (nil: none).
func layoutShape(shape []int, torch layers.Layout, ts []int) []int {
	if ts != nil {
		return append([]int(nil), ts...)
	}
	s := append([]int(nil), shape...)
	if torch == layers.Transposed {
		s[0], s[1] = s[1], s[0]
	}
	return s
}

// toTorch converts a store parameter into a tensor in PyTorch's layout.
func toTorch(key string, p *layers.Param) tensorfile.Tensor {
	vals := layers.Float64s(p.Value)
	if p.Torch == layers.Transposed {
		sh := p.Value.Shape()
		vals = transpose(vals, sh[0], sh[1])
	}
	if p.Value.Dtype() == tensor.Float32 {
		f := make([]float32, len(vals))
		for i, v := range vals {
			f[i] = float32(v)
		}
		return tensorfile.FromFloat32(key, torchShape(p), f)
	}
	return tensorfile.FromFloat64(key, torchShape(p), vals)
}

// transpose returns the [c, r] transpose of an [r, c] matrix.
func transpose(v []float64, r, c int) []float64 {
	out := make([]float64, len(v))
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			out[j*r+i] = v[i*c+j]
		}
	}
	return out
}
