package layers

import (
	"math"

	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// LoRAConfig configures a LoRA adapter. The JSON names are PEFT's
// LoraConfig keys.
type LoRAConfig struct {
	// R is the rank of every site's A [DIn, r] and B [r, DOut].
	R int `json:"r"`
	// Alpha sets the scaling alpha/r (alpha/√r with RSLoRA).
	Alpha float64 `json:"lora_alpha"`
	// Dropout is applied to the adapter's input while training.
	Dropout float64 `json:"lora_dropout"`
	// RSLoRA uses the rank-stabilised scaling alpha/√r.
	RSLoRA bool `json:"use_rslora"`
	// TargetModules names the adapted modules, matched as in PEFT.
	TargetModules []string `json:"target_modules"`
	// NonZeroB draws B Kaiming-uniform instead of starting it at zero
	// (PEFT's init_lora_weights=false).
	NonZeroB bool `json:"non_zero_b,omitempty"`
}

// DefaultLoRAConfig returns PEFT's LoraConfig defaults (r 8, alpha 8, no
// dropout, B initialised to zero) targeting the given modules.
func DefaultLoRAConfig(targets ...string) LoRAConfig {
	return LoRAConfig{R: 8, Alpha: 8, TargetModules: targets}
}

// Validate reports the first invalid field with the way to fix it.
func (c LoRAConfig) Validate() error {
	switch {
	case c.R < 1:
		return errors.Errorf("lora: r = %d; it must be a positive integer", c.R)
	case math.IsNaN(c.Alpha) || math.IsInf(c.Alpha, 0):
		return errors.Errorf("lora: lora_alpha = %v; it must be a finite number", c.Alpha)
	case math.IsNaN(c.Dropout) || c.Dropout < 0 || c.Dropout >= 1:
		return errors.Errorf("lora: lora_dropout = %v; it must be in [0, 1)", c.Dropout)
	case len(c.TargetModules) == 0:
		return errors.New("lora: target_modules is empty; name the modules to adapt, e.g. query,value")
	}
	return nil
}

// Scaling is the factor applied to x·A·B.
func (c LoRAConfig) Scaling() float64 {
	if c.RSLoRA {
		return c.Alpha / math.Sqrt(float64(c.R))
	}
	return c.Alpha / float64(c.R)
}

// LoRA is the LoRA adapter (Hu et al. 2021): every adapted site gets its own
// A [DIn, r] (Kaiming-uniform) and B [r, DOut] (zero), and adds
// scaling·dropout(x)·A·B.
type LoRA struct {
	cfg    LoRAConfig
	sites  map[string]bool
	merged bool
}

// NewLoRA returns a LoRA adapter for a validated configuration.
func NewLoRA(cfg LoRAConfig) (*LoRA, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.TargetModules = append([]string(nil), cfg.TargetModules...)
	return &LoRA{cfg: cfg}, nil
}

// Method returns "lora".
func (l *LoRA) Method() string { return "lora" }

// Config returns the adapter's configuration.
func (l *LoRA) Config() LoRAConfig { return l.cfg }

// Layout returns lora_A and lora_B for every matching site.
func (l *LoRA) Layout(sites []Site) ([]ParamSpec, error) {
	if err := validateSites(sites); err != nil {
		return nil, err
	}
	l.sites = map[string]bool{}
	var specs []ParamSpec
	for _, s := range sites {
		if _, ok := matchTarget(s, l.cfg.TargetModules); !ok {
			continue
		}
		l.sites[s.Path] = true
		bInit := Init(nil)
		if l.cfg.NonZeroB {
			bInit = KaimingUniform(l.cfg.R)
		}
		specs = append(specs,
			ParamSpec{Name: s.Path + ".lora_A.weight", Shape: tensor.Shape{s.DIn, l.cfg.R}, Init: KaimingUniform(s.DIn), Torch: Transposed},
			ParamSpec{Name: s.Path + ".lora_B.weight", Shape: tensor.Shape{l.cfg.R, s.DOut}, Init: bInit, Torch: Transposed})
	}
	if len(specs) == 0 {
		return nil, errors.Errorf("lora: no module matches target_modules %v", l.cfg.TargetModules)
	}
	return specs, nil
}

// Adapted reports whether the site is adapted by the current layout.
func (l *LoRA) Adapted(path string) bool { return l.sites[path] }

// Apply returns x·w + b + scaling·dropout(x)·A·B.
func (l *LoRA) Apply(g *Graph, site Site, x, w, b *G.Node) (*G.Node, error) {
	base, err := Base(x, w, b)
	if err != nil {
		return nil, err
	}
	ok, err := l.adapted(site)
	if err != nil || !ok {
		return base, err
	}
	A, B, err := l.params(g, site)
	if err != nil {
		return nil, err
	}
	xd, err := g.Dropout(x, l.cfg.Dropout, site.Path+".lora_dropout")
	if err != nil {
		return nil, err
	}
	h, err := lilyop.MatMul(xd, A)
	if err != nil {
		return nil, err
	}
	return l.up(base, h, B)
}

// ApplyGroup applies the adapter to sites that all read x, as Apply does
// for each; without dropout (or in an evaluation graph) it computes every
// adapted site's x·A as one GEMM (lilyop.MatMulShared), whose backward pass
// also sums their input gradients in one GEMM.
func (l *LoRA) ApplyGroup(g *Graph, sites []Site, x *G.Node, ws, bs G.Nodes) (G.Nodes, error) {
	out := make(G.Nodes, len(sites))
	if l.cfg.Dropout > 0 && g.Train() {
		// Every site draws its own dropout mask on x: nothing is shared.
		for i, s := range sites {
			var err error
			if out[i], err = l.Apply(g, s, x, ws[i], bs[i]); err != nil {
				return nil, errors.Wrapf(err, "linear %s (lora)", s.Path)
			}
		}
		return out, nil
	}
	var as, bsUp G.Nodes
	var adapted []int
	for i, s := range sites {
		var err error
		if out[i], err = Base(x, ws[i], bs[i]); err != nil {
			return nil, err
		}
		ok, err := l.adapted(s)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		A, B, err := l.params(g, s)
		if err != nil {
			return nil, err
		}
		adapted = append(adapted, i)
		as, bsUp = append(as, A), append(bsUp, B)
	}
	if len(adapted) == 0 {
		return out, nil
	}
	hs, err := lilyop.MatMulShared(x, as...)
	if err != nil {
		return nil, err
	}
	for j, i := range adapted {
		if out[i], err = l.up(out[i], hs[j], bsUp[j]); err != nil {
			return nil, errors.Wrapf(err, "linear %s (lora)", sites[i].Path)
		}
	}
	return out, nil
}

// adapted reports whether the site gets an adapter term (it is adapted and
// the adapter is not merged).
func (l *LoRA) adapted(site Site) (bool, error) {
	if l.sites == nil {
		return false, errors.New("lora adapter used before Layout/Attach")
	}
	return l.sites[site.Path] && !l.merged, nil
}

// params binds the site's A and B.
func (l *LoRA) params(g *Graph, site Site) (A, B *G.Node, err error) {
	if A, err = g.Param(site.Path + ".lora_A.weight"); err != nil {
		return nil, nil, err
	}
	B, err = g.Param(site.Path + ".lora_B.weight")
	return A, B, err
}

// up returns base + scaling·h·B.
func (l *LoRA) up(base, h, B *G.Node) (*G.Node, error) {
	delta, err := lilyop.MatMulScaled(h, B, l.cfg.Scaling())
	if err != nil {
		return nil, err
	}
	return lilyop.Add(base, delta)
}
