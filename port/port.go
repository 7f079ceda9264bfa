// Package port fine-tunes an existing Gorgonia model with Lily or LoRA
// without rewriting it. A model whose weights are nodes made with
// gorgonia.NewMatrix and whose forward pass calls gorgonia.Mul keeps both: it
// lists its linear layers once, and calls Port.Linear where it called Mul.
//
//	lily, _ := layers.NewLily(layers.LilyConfig{R: 4, StrideA: 2, NumB: 2, Scaling: 1,
//		TargetModules: []string{"fc"}})
//	p, err := port.New(g, lily,
//		port.Layer{Name: "hidden.0.fc", W: m.w1, B: m.b1},
//		port.Layer{Name: "hidden.1.fc", W: m.w2, B: m.b2})
//	h, err := p.Linear("hidden.0.fc", x)            // was G.Mul(x, m.w1) + m.b1
//	...
//	G.Grad(cost, p.Learnables()...)                  // the adapter only; W stays frozen
//	p.Save("adapter")                                // a PEFT-style adapter directory
//	p.SaveWith("adapter", adapterfile.Options{PEFTLayout: true}) // exactly as PEFT saves it
//
// Lily shares its tensors across layers according to their position in
// the model (one A per stride_A consecutive layers of a target, one pool of
// B experts per target), so a Port sees every layer up front, in model
// order. Layer names are module paths: target_modules entries match a name
// or a dot-separated suffix of it, exactly as in layers and PEFT.
//
// Inside, a Port is the library's ordinary machinery: a layers.Store that
// wraps the model's own weight tensors as frozen parameters, one
// layers.Site per layer, the adapter's Layout and Apply, and a layers.Graph
// bound to the model's Gorgonia graph. Store, Adapter, Sites and Graph expose
// them, for merging (layers.Merge folds a LoRA into the model's own
// tensors), for custom save options (package adapterfile), and for the
// move to several graphs sharing one store (see docs/porting.md).
package port

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/lilygo/lily/adapterfile"
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Layer is one linear layer y = x·W + B of the model.
type Layer struct {
	// Name is the layer's module path, such as "encoder.layer.0.fc". It must
	// be unique; it names the adapter's tensors (and their keys in adapter
	// files), and target_modules entries match it or a dot-separated suffix
	// of it ("fc" matches "encoder.layer.0.fc", not "fc1").
	Name string
	// W is the weight as gorgonia.Mul(x, W) uses it: a [d_in, d_out] matrix
	// node holding a float32 or float64 value. The port reads the tensor the
	// node holds when the port is made, and never changes it (only
	// layers.Merge does, when asked to).
	W *G.Node
	// B is the bias, [d_out] or [1, d_out] (the shape gorgonia.BroadcastAdd
	// users give it), or nil for none. It shares W's element type.
	B *G.Node
}

// Port adapts the listed linear layers of one Gorgonia graph.
type Port struct {
	store   *layers.Store
	graph   *layers.Graph
	adapter layers.Adapter
	sites   []layers.Site
	index   map[string]int
}

// newSeed seeds the adapter initialisation of New, so that the same model and
// configuration always start from the same adapter.
const newSeed = 0x6c696c79

// New adds adapter a (from layers.NewLily, layers.NewLoRA, or layers.None)
// to the listed layers of graph g, given in model order (input to output).
// The adapter's trainable tensors are initialised as the method prescribes
// (Kaiming-uniform A's and routers, zero B's, so the model computes exactly
// what it did before) from a fixed seed; NewRand takes a generator instead.
// Layers that no target_modules entry matches are computed unadapted. The
// adapter keeps its layout over these layers, so give each model its own
// adapter value (ports of the same model on other graphs may share it).
func New(g *G.ExprGraph, a layers.Adapter, ls ...Layer) (*Port, error) {
	return NewRand(g, a, rand.New(rand.NewPCG(newSeed, newSeed)), ls...)
}

// NewRand is New with the adapter's initial values drawn from rng.
func NewRand(g *G.ExprGraph, a layers.Adapter, rng *rand.Rand, ls ...Layer) (*Port, error) {
	if a == nil {
		return nil, errors.New("port.New: no adapter; pass layers.NewLily, layers.NewLoRA or layers.None{}")
	}
	if rng == nil {
		return nil, errors.New("port.NewRand: nil random generator")
	}
	p, err := wrap(g, ls)
	if err != nil {
		return nil, errors.Wrap(err, "port.New")
	}
	if err := layers.Attach(p.store, a, p.sites, rng); err != nil {
		return nil, errors.Wrap(err, "port.New")
	}
	p.adapter = a
	if err := p.bind(g); err != nil {
		return nil, errors.Wrap(err, "port.New")
	}
	return p, nil
}

// Load adds the adapter saved in dir (by Save, or a PEFT adapter directory
// whose keys name these layers) to the listed layers of graph g: the same
// model, possibly on another graph or in another process. The loaded
// tensors stay trainable, so training can go on.
func Load(g *G.ExprGraph, dir string, ls ...Layer) (*Port, error) {
	p, err := wrap(g, ls)
	if err != nil {
		return nil, errors.Wrapf(err, "port.Load %s", dir)
	}
	if p.adapter, err = adapterfile.Load(dir, p.store, p.sites); err != nil {
		return nil, errors.Wrap(err, "port.Load")
	}
	if err := p.bind(g); err != nil {
		return nil, errors.Wrapf(err, "port.Load %s", dir)
	}
	return p, nil
}

// wrap checks the layers and puts their tensors into a new store as frozen
// parameters named <layer>.weight and <layer>.bias.
func wrap(g *G.ExprGraph, ls []Layer) (*Port, error) {
	if g == nil {
		return nil, errors.New("nil graph")
	}
	if len(ls) == 0 {
		return nil, errors.New("no layers; list every linear layer the adapter may adapt, in model order")
	}
	p := &Port{index: map[string]int{}}
	for i, l := range ls {
		if l.Name == "" {
			return nil, errors.Errorf("layer %d has no name", i)
		}
		if _, dup := p.index[l.Name]; dup {
			return nil, errors.Errorf("two layers are named %q", l.Name)
		}
		w, err := value(g, l.W, "weight")
		if err != nil {
			return nil, errors.Wrapf(err, "layer %s", l.Name)
		}
		if w.Dims() != 2 {
			return nil, errors.Errorf("layer %s: weight %s has shape %v; want a [d_in, d_out] matrix as gorgonia.Mul(x, W) uses", l.Name, l.W.Name(), w.Shape())
		}
		if p.store == nil {
			if p.store, err = layers.NewStore(w.Dtype()); err != nil {
				return nil, errors.Wrapf(err, "layer %s", l.Name)
			}
		}
		site := layers.Site{Layer: i, Target: l.Name[strings.LastIndex(l.Name, ".")+1:], Path: l.Name,
			DIn: w.Shape()[0], DOut: w.Shape()[1], Weight: l.Name + ".weight"}
		if err := p.store.Add(&layers.Param{Name: site.Weight, Value: w, Torch: layers.Transposed}); err != nil {
			return nil, errors.Wrapf(err, "layer %s", l.Name)
		}
		if l.B != nil {
			b, err := bias(g, l.B, site.DOut)
			if err != nil {
				return nil, errors.Wrapf(err, "layer %s", l.Name)
			}
			site.Bias = l.Name + ".bias"
			if err := p.store.Add(&layers.Param{Name: site.Bias, Value: b}); err != nil {
				return nil, errors.Wrapf(err, "layer %s", l.Name)
			}
		}
		p.index[l.Name] = len(p.sites)
		p.sites = append(p.sites, site)
	}
	return p, nil
}

// value returns the tensor a node of graph g holds.
func value(g *G.ExprGraph, n *G.Node, what string) (*tensor.Dense, error) {
	if n == nil {
		return nil, errors.Errorf("no %s node", what)
	}
	if n.Graph() != g {
		return nil, errors.Errorf("%s %s belongs to another graph", what, n.Name())
	}
	v, ok := n.Value().(*tensor.Dense)
	if !ok || v == nil {
		return nil, errors.Errorf("%s %s holds no tensor value (%T); create it with gorgonia.WithInit or gorgonia.WithValue, or Let it, before porting", what, n.Name(), n.Value())
	}
	if v.IsView() {
		return nil, errors.Errorf("%s %s holds a view of another tensor; give it a tensor of its own (Materialize it)", what, n.Name())
	}
	return v, nil
}

// bias returns the [dOut] tensor of a [dOut] or [1, dOut] bias node; the
// latter shares the node's backing array.
func bias(g *G.ExprGraph, n *G.Node, dOut int) (*tensor.Dense, error) {
	v, err := value(g, n, "bias")
	if err != nil {
		return nil, err
	}
	switch s := v.Shape(); {
	case s.Dims() == 1 && s[0] == dOut:
		return v, nil
	case s.Dims() == 2 && s[0] == 1 && s[1] == dOut:
		return tensor.New(tensor.WithShape(dOut), tensor.WithBacking(v.Data())), nil
	default:
		return nil, errors.Errorf("bias %s has shape %v; want [%d] or [1, %d]", n.Name(), s, dOut, dOut)
	}
}

// bind checks that no node of g already uses a name the port's nodes will
// take (Gorgonia would merge them), then binds a layers.Graph to g.
func (p *Port) bind(g *G.ExprGraph) error {
	for _, name := range p.store.Names() {
		if len(g.ByName(name)) > 0 {
			return errors.Errorf("the graph already has a node named %q, which the port needs for its own; rename the layer or the node (Gorgonia merges input nodes of equal name, shape and type)", name)
		}
	}
	var err error
	p.graph, err = p.store.BindGraph(g, true)
	return err
}

// Linear returns the named layer's output for x [..., d_in]: x·W + B plus the
// adapter's contribution when the layer is adapted. Any rank of at least 2
// works; the leading dimensions are folded into one matrix product, so a
// [batch, tokens, d_in] input needs no reshape. A layer may be applied to
// several inputs.
func (p *Port) Linear(name string, x *G.Node) (*G.Node, error) {
	i, ok := p.index[name]
	if !ok {
		return nil, errors.Errorf("port.Linear: no layer named %q; the layers are %s", name, p.names())
	}
	switch {
	case x == nil:
		return nil, errors.Errorf("port.Linear %s: nil input", name)
	case x.Graph() != p.graph.G:
		return nil, errors.Errorf("port.Linear %s: input %s belongs to another graph", name, x.Name())
	case x.Dtype() != p.store.Dtype():
		return nil, errors.Errorf("port.Linear %s: input %s is %v, the weights are %v", name, x.Name(), x.Dtype(), p.store.Dtype())
	}
	y, err := layers.Linear(p.graph, p.adapter, p.sites[i], x)
	return y, errors.Wrap(err, "port.Linear")
}

// names lists the layer names for error messages.
func (p *Port) names() string {
	out := make([]string, len(p.sites))
	for i, s := range p.sites {
		out[i] = fmt.Sprintf("%q", s.Path)
	}
	return strings.Join(out, ", ")
}

// Learnables returns the nodes of the adapter tensors that the layers built
// so far use: what gorgonia.Grad, gorgonia.BindDualValues and a solver need.
// Call it after the forward pass. The model's weights are never among them.
func (p *Port) Learnables() G.Nodes { return p.graph.Learnables() }

// Adapted reports whether the adapter adapts the named layer, that is
// whether one of its target_modules matches the name.
func (p *Port) Adapted(name string) bool {
	a, ok := p.adapter.(interface{ Adapted(path string) bool })
	return ok && a.Adapted(name)
}

// Count returns the number of trainable elements (the adapter's, shared
// tensors counted once) and of all elements the port holds (the listed
// layers' weights and biases plus the adapter).
func (p *Port) Count() (trainable, total int) { return p.store.Count() }

// Save writes the adapter alone (never the model's weights) to dir as a
// PEFT-style adapter directory: adapter_model.safetensors and
// adapter_config.json. Load reads it back into a port of the same model.
// It is SaveWith with the default options.
func (p *Port) Save(dir string) error {
	return p.SaveWith(dir, adapterfile.Options{})
}

// SaveWith is Save with adapterfile's options: PEFTLayout writes the
// directory exactly as PEFT saves it (Lily's shared tensors repeated under
// each layer's key), BaseModel and TaskType fill the config. Load reads
// either layout.
func (p *Port) SaveWith(dir string, opt adapterfile.Options) error {
	return errors.Wrap(adapterfile.Save(dir, p.store, p.adapter, p.sites, opt), "port.Save")
}

// RefillDropout draws new dropout masks for the adapter's dropout (LoRA's
// lora_dropout); call it before each training run. Until it is called, and
// for adapters without dropout, the masks are all ones: evaluation.
func (p *Port) RefillDropout(rng *rand.Rand) error { return p.graph.RefillDropout(rng) }

// Store returns the parameter store: the layers' own tensors as frozen
// parameters and the adapter's as trainable ones.
func (p *Port) Store() *layers.Store { return p.store }

// Adapter returns the adapter.
func (p *Port) Adapter() layers.Adapter { return p.adapter }

// Sites returns a copy of the layers as layers.Sites, in model order: Path
// is the layer's name, Target its last dot-separated element, Layer its
// position in the list, and Weight and Bias name its tensors in Store.
func (p *Port) Sites() []layers.Site { return append([]layers.Site(nil), p.sites...) }

// Graph returns the layers.Graph bound to the model's Gorgonia graph; its
// Machine compiles a tape that skips the frozen weights' gradients.
func (p *Port) Graph() *layers.Graph { return p.graph }
