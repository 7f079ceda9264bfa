package layers

import (
	"fmt"
	"math"

	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// LilyConfig configures a Lily adapter. The JSON names are PEFT's
// LilyConfig keys where PEFT has the field.
type LilyConfig struct {
	// R is the rank of the shared low-rank space.
	R int `json:"r"`
	// StrideA is the number of consecutive adapted layers (of one target
	// and shape) that share one down-projection A.
	StrideA int `json:"stride_A"`
	// NumB is the number of up-projection experts B shared by every layer of
	// a target.
	NumB int `json:"num_B"`
	// Scaling multiplies the adapter's output directly (not alpha/r).
	Scaling float64 `json:"scaling"`
	// TargetModules names the adapted modules; a module matches when its path
	// equals an entry or ends with "." + entry, as in PEFT.
	TargetModules []string `json:"target_modules"`
	// NonZeroB draws B Kaiming-uniform instead of starting it at zero (PEFT's
	// init_weights=false). Zero B, the default, makes the adapted model equal
	// the base model at step 0; non-zero B is useful in tests.
	NonZeroB bool `json:"non_zero_b,omitempty"`
	// Routing chooses how router probabilities become mixing weights. Batch
	// is the reference behaviour (PEFT does only this).
	Routing lilyop.Routing `json:"routing"`
	// MaskBatch excludes padding tokens from the batch-routing mean; the
	// reference includes them.
	MaskBatch bool `json:"mask_batch"`
	// Uniform replaces the routers by the fixed uniform mixture mean_e B[e]
	// (the paper's "monoscale" ablation). It has no router parameters and
	// can be merged.
	Uniform bool `json:"uniform"`
}

// DefaultLilyConfig returns PEFT's LilyConfig defaults (r 32, stride_A 1,
// num_B 2, scaling 1, B initialised to zero) with batch routing, targeting
// the given modules.
func DefaultLilyConfig(targets ...string) LilyConfig {
	return LilyConfig{R: 32, StrideA: 1, NumB: 2, Scaling: 1, TargetModules: targets}
}

// Validate reports the first invalid field with the way to fix it.
func (c LilyConfig) Validate() error {
	switch {
	case c.R < 1:
		return errors.Errorf("lily: r = %d; it must be a positive integer", c.R)
	case c.StrideA < 1:
		return errors.Errorf("lily: stride_A = %d; it must be at least 1", c.StrideA)
	case c.NumB < 2 && !c.Uniform:
		return errors.Errorf("lily: num_B = %d; it must be at least 2 for the router to be trained (PEFT rejects it too)", c.NumB)
	case c.NumB < 1:
		return errors.Errorf("lily: num_B = %d; it must be at least 1", c.NumB)
	case math.IsNaN(c.Scaling) || math.IsInf(c.Scaling, 0):
		return errors.Errorf("lily: scaling = %v; it must be a finite number", c.Scaling)
	case len(c.TargetModules) == 0:
		return errors.New("lily: target_modules is empty; name the modules to adapt, e.g. query,value")
	case c.Routing < lilyop.Batch || c.Routing > lilyop.Token:
		return errors.Errorf("lily: invalid routing mode %d", int(c.Routing))
	}
	for _, t := range c.TargetModules {
		if t == "" {
			return errors.New("lily: target_modules contains an empty name")
		}
	}
	return nil
}

// lilySite is the layout of one adapted site: the store names of its A, its
// group's B pool and its router (empty when Uniform).
type lilySite struct {
	group      string
	a, b, rout string
}

// Lily is the Lily adapter (arXiv 2407.09946) as LILY.md specifies it: sites
// are grouped by (matched target, DIn, DOut); within a group, consecutive
// blocks of StrideA sites share one A [DIn, r], all sites share one pool of
// NumB experts B [NumB, r, DOut], and every site has its own router
// [r, NumB] reading h = x·A.
type Lily struct {
	cfg    LilyConfig
	sites  map[string]lilySite
	frozen map[string][]float64
	merged bool
}

// NewLily returns a Lily adapter for a validated configuration.
func NewLily(cfg LilyConfig) (*Lily, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.TargetModules = append([]string(nil), cfg.TargetModules...)
	return &Lily{cfg: cfg}, nil
}

// Method returns "lily".
func (l *Lily) Method() string { return "lily" }

// Config returns the adapter's configuration.
func (l *Lily) Config() LilyConfig { return l.cfg }

// Layout groups the matching sites as PEFT does, in the order the sites are
// given (a model lists them in module order), and returns A's, B pools and
// routers in that order.
func (l *Lily) Layout(sites []Site) ([]ParamSpec, error) {
	if err := validateSites(sites); err != nil {
		return nil, err
	}
	c := l.cfg
	members := map[string][]Site{}
	var order []string
	for _, s := range sites {
		t, ok := matchTarget(s, c.TargetModules)
		if !ok {
			continue
		}
		key := fmt.Sprintf("%s:%dx%d", t, s.DIn, s.DOut)
		if _, seen := members[key]; !seen {
			order = append(order, key)
		}
		members[key] = append(members[key], s)
	}
	if len(order) == 0 {
		return nil, errors.Errorf("lily: no module matches target_modules %v", c.TargetModules)
	}
	l.sites = map[string]lilySite{}
	var specs []ParamSpec
	for _, key := range order {
		group := members[key]
		first := group[0]
		bName := first.Path + ".lily_B.weight"
		for i, s := range group {
			leader := group[(i/c.StrideA)*c.StrideA]
			ls := lilySite{group: key, a: leader.Path + ".lily_A.weight", b: bName}
			if i%c.StrideA == 0 {
				specs = append(specs, ParamSpec{Name: ls.a, Shape: tensor.Shape{s.DIn, c.R}, Init: KaimingUniform(s.DIn), Torch: Transposed})
			}
			if i == 0 {
				bInit := Init(nil)
				if c.NonZeroB {
					bInit = KaimingUniform(s.DOut)
				}
				specs = append(specs, ParamSpec{Name: bName, Shape: tensor.Shape{c.NumB, c.R, s.DOut}, Init: bInit, TorchShape: []int{c.NumB * c.R, s.DOut}})
			}
			if !c.Uniform {
				ls.rout = s.Path + ".lily_router.weight"
				specs = append(specs, ParamSpec{Name: ls.rout, Shape: tensor.Shape{c.R, c.NumB}, Init: KaimingUniform(c.R), Torch: Transposed})
			}
			l.sites[s.Path] = ls
		}
	}
	return specs, nil
}

// Adapted reports whether the site is adapted by the current layout.
func (l *Lily) Adapted(path string) bool {
	_, ok := l.sites[path]
	return ok
}

// Apply returns x·w + b + scaling·(x·A)·Σ_e mix[e]·B[e], where the mixing
// weights come from the site's router (per routing mode), from a frozen
// mixing vector, or are uniform.
func (l *Lily) Apply(g *Graph, site Site, x, w, b *G.Node) (*G.Node, error) {
	base, err := Base(x, w, b)
	if err != nil {
		return nil, err
	}
	ls, ok, err := l.site(site)
	if err != nil || !ok {
		return base, err
	}
	A, err := g.Param(ls.a)
	if err != nil {
		return nil, err
	}
	h, err := lilyop.MatMul(x, A)
	if err != nil {
		return nil, err
	}
	return l.up(g, site, ls, base, h)
}

// ApplyGroup applies the adapter to sites that all read x, as Apply does
// for each, but computes every adapted site's h = x·A as one GEMM
// (lilyop.MatMulShared), whose backward pass also sums their input
// gradients in one GEMM.
func (l *Lily) ApplyGroup(g *Graph, sites []Site, x *G.Node, ws, bs G.Nodes) (G.Nodes, error) {
	out := make(G.Nodes, len(sites))
	var as G.Nodes
	at := map[string]int{}
	var adapted []int
	for i, s := range sites {
		var err error
		if out[i], err = Base(x, ws[i], bs[i]); err != nil {
			return nil, err
		}
		ls, ok, err := l.site(s)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		adapted = append(adapted, i)
		if _, seen := at[ls.a]; !seen {
			A, err := g.Param(ls.a)
			if err != nil {
				return nil, err
			}
			at[ls.a] = len(as)
			as = append(as, A)
		}
		// Bind B and the router now, so that the graph's learnables come
		// in the same order as from Apply site by site.
		if _, err := g.Param(ls.b); err != nil {
			return nil, err
		}
		if _, isFrozen := l.frozen[s.Path]; !isFrozen && !l.cfg.Uniform {
			if _, err := g.Param(ls.rout); err != nil {
				return nil, err
			}
		}
	}
	if len(adapted) == 0 {
		return out, nil
	}
	hs, err := lilyop.MatMulShared(x, as...)
	if err != nil {
		return nil, err
	}
	for _, i := range adapted {
		ls := l.sites[sites[i].Path]
		if out[i], err = l.up(g, sites[i], ls, out[i], hs[at[ls.a]]); err != nil {
			return nil, errors.Wrapf(err, "linear %s (lily)", sites[i].Path)
		}
	}
	return out, nil
}

// site returns the layout of an adapted site; ok is false when the site is
// not adapted or the adapter is merged.
func (l *Lily) site(site Site) (ls lilySite, ok bool, err error) {
	if l.sites == nil {
		return ls, false, errors.New("lily adapter used before Layout/Attach")
	}
	ls, ok = l.sites[site.Path]
	return ls, ok && !l.merged, nil
}

// up returns base + scaling·h·Σ_e mix[e]·B[e] for the site's h = x·A.
func (l *Lily) up(g *Graph, site Site, ls lilySite, base, h *G.Node) (*G.Node, error) {
	B, err := g.Param(ls.b)
	if err != nil {
		return nil, err
	}
	mode := lilyop.Batch
	var mix *G.Node
	switch fixed, isFrozen := l.frozen[site.Path]; {
	case isFrozen || l.cfg.Uniform:
		if !isFrozen {
			fixed = uniform(l.cfg.NumB)
		}
		v := FromFloat64(g.store.dtype, []int{len(fixed)}, fixed)
		mix = G.NewVector(g.G, g.store.dtype, G.WithShape(len(fixed)), G.WithName(site.Path+".lily_mixing"), G.WithValue(v))
	default:
		R, err := g.Param(ls.rout)
		if err != nil {
			return nil, err
		}
		mode = l.cfg.Routing
		var mask *G.Node
		if mode == lilyop.Sequence || (mode == lilyop.Batch && l.cfg.MaskBatch) {
			mask = g.PadMask()
			if mask == nil && l.cfg.MaskBatch {
				return nil, errors.New("lily: mask_batch is set but the graph has no padding mask")
			}
		}
		if mix, err = lilyop.RouterWeights(h, R, mask, mode); err != nil {
			return nil, err
		}
		g.mixing[site.Path] = mix
	}
	delta, err := lilyop.ExpertMix(h, mix, B, mode, l.cfg.Scaling)
	if err != nil {
		return nil, err
	}
	return lilyop.Add(base, delta)
}

func uniform(n int) []float64 {
	u := make([]float64, n)
	for i := range u {
		u[i] = 1 / float64(n)
	}
	return u
}

// PEFTNames maps the per-layer parameter name PEFT uses for every adapted
// site's A, B and router ("<path>.lily_A.weight", …, without PEFT's
// "base_model.model." prefix) to the store parameter that holds it. Shared
// tensors appear under several PEFT names; PEFT's own files repeat them.
func (l *Lily) PEFTNames() map[string]string {
	out := map[string]string{}
	for path, ls := range l.sites {
		out[path+".lily_A.weight"] = ls.a
		out[path+".lily_B.weight"] = ls.b
		if ls.rout != "" {
			out[path+".lily_router.weight"] = ls.rout
		}
	}
	return out
}

// FrozenMixing returns a copy of the mixing vectors fixed by FreezeMixing.
func (l *Lily) FrozenMixing() map[string][]float64 {
	out := map[string][]float64{}
	for p, v := range l.frozen {
		out[p] = append([]float64(nil), v...)
	}
	return out
}
