package layers

import (
	"math/rand/v2"

	"github.com/lilygo/lily/gorgoniafix"
	"github.com/lilygo/lily/internal/opkit"
	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Graph is one Gorgonia expression graph bound to a Store: typically one
// (batch, sequence-length) bucket in training or evaluation mode. Every
// parameter node of the graph holds the store's tensor itself, so a solver
// step on one graph is seen by all of them.
type Graph struct {
	// G is the underlying Gorgonia graph.
	G *G.ExprGraph

	store    *Store
	train    bool
	nodes    map[string]*G.Node
	widened  map[string]*G.Node
	bound    []string
	dropouts []*gorgoniafix.Dropout
	padMask  *G.Node
	mixing   map[string]*G.Node
}

// NewGraph starts a graph bound to s; train selects training mode (dropout
// active) or evaluation mode.
func (s *Store) NewGraph(train bool) *Graph {
	return s.graphOn(G.NewGraph(), train)
}

// BindGraph returns a Graph bound to s that adds its nodes to the existing
// Gorgonia graph eg, so that a model written in plain Gorgonia can call
// Linear on its own nodes (package port does this). Every node the Graph
// makes is named after a store parameter; Gorgonia merges input nodes of
// equal name, shape and type, so those names must not already be used in eg.
func (s *Store) BindGraph(eg *G.ExprGraph, train bool) (*Graph, error) {
	if eg == nil {
		return nil, errors.New("layers.Store.BindGraph: nil graph")
	}
	return s.graphOn(eg, train), nil
}

// graphOn returns a Graph bound to s whose nodes go into eg.
func (s *Store) graphOn(eg *G.ExprGraph, train bool) *Graph {
	return &Graph{G: eg, store: s, train: train, nodes: map[string]*G.Node{}, widened: map[string]*G.Node{}, mixing: map[string]*G.Node{}}
}

// Store returns the store the graph is bound to.
func (g *Graph) Store() *Store { return g.store }

// Train reports whether the graph is in training mode.
func (g *Graph) Train() bool { return g.train }

// Param returns the node of the named store parameter, creating it on first
// use. The node is named after the parameter and holds its tensor.
func (g *Graph) Param(name string) (*G.Node, error) {
	if n, ok := g.nodes[name]; ok {
		return n, nil
	}
	p, ok := g.store.Get(name)
	if !ok {
		return nil, errors.Errorf("parameter %q is not in the store (was the model or adapter attached?)", name)
	}
	v := p.Value
	n := G.NewTensor(g.G, v.Dtype(), v.Dims(), G.WithShape(v.Shape()...), G.WithName(name), G.WithValue(v))
	g.nodes[name] = n
	g.bound = append(g.bound, name)
	return n, nil
}

// Float returns the node of the named store parameter in the store's dtype:
// Param's node, or for a parameter kept in bfloat16 or float16 that node
// widened on every run (lilyop.Widen). It is for small frozen tensors that feed ops
// without a bfloat16 path (norm gains, biases); matrix products and
// embedding lookups read bfloat16 weights directly through Param.
func (g *Graph) Float(name string) (*G.Node, error) {
	n, err := g.Param(name)
	if err != nil || !lilyop.IsHalf(n) {
		return n, err
	}
	if w, ok := g.widened[name]; ok {
		return w, nil
	}
	w, err := lilyop.Widen(n, g.store.dtype)
	if err != nil {
		return nil, errors.Wrapf(err, "parameter %q", name)
	}
	g.widened[name] = w
	return w, nil
}

// Input adds a named input node of the store's dtype with a zeroed value that
// the caller fills (or replaces with gorgonia.Let) before each run.
func (g *Graph) Input(name string, shape ...int) *G.Node {
	v := tensor.New(tensor.WithShape(shape...), tensor.Of(g.store.dtype))
	return G.NewTensor(g.G, g.store.dtype, len(shape), G.WithShape(shape...), G.WithName(name), G.WithValue(v))
}

// Learnables returns the nodes of the trainable parameters this graph uses,
// in the order they were bound: what gorgonia.Grad and a solver need.
func (g *Graph) Learnables() G.Nodes {
	var out G.Nodes
	for _, name := range g.bound {
		if p, _ := g.store.Get(name); p.Trainable {
			out = append(out, g.nodes[name])
		}
	}
	return out
}

// Dropout applies dropout with probability p to x in a training graph, as a
// product with a mask input that RefillDropout redraws (Gorgonia's own
// Dropout has a wrong gradient; see package gorgoniafix). In an evaluation
// graph, or for p == 0, it returns x unchanged. name must be unique.
func (g *Graph) Dropout(x *G.Node, p float64, name string) (*G.Node, error) {
	if !g.train || p == 0 {
		return x, nil
	}
	d, err := gorgoniafix.NewDropout(g.G, x, p, name)
	if err != nil {
		return nil, err
	}
	g.dropouts = append(g.dropouts, d)
	return d.Output(), nil
}

// RefillDropout draws new masks for every dropout of the graph; call it
// before each training run.
func (g *Graph) RefillDropout(rng *rand.Rand) error {
	for _, d := range g.dropouts {
		if err := d.Refill(rng); err != nil {
			return err
		}
	}
	return nil
}

// SetPadMask declares the padding mask ([batch, tokens], 1 for real tokens,
// 0 for padding) that sequence routing, and batch routing with masking, use.
func (g *Graph) SetPadMask(mask *G.Node) { g.padMask = mask }

// PadMask returns the padding mask, or nil.
func (g *Graph) PadMask() *G.Node { return g.padMask }

// Mixing returns the mixing-weight node of every routed Lily site in the
// graph, by module path; after a run their values are the routers' outputs.
func (g *Graph) Mixing() map[string]*G.Node { return g.mixing }

// Machine differentiates loss with respect to the graph's learnables and
// returns a TapeMachine that runs only what the loss, the extra outputs and
// those gradients need, with the learnables' gradients readable through
// Node.Grad and for solvers. Gorgonia's own NewTapeMachine(g) runs every
// node, including the gradients that ops create for frozen weights, which
// costs about a third of a fine-tuning step. With no learnables (an
// evaluation graph) it only computes loss and the extra outputs; loss may
// then be nil. A learnable kept in bfloat16 (a frozen parameter whose
// Trainable was set afterwards) is an error: convert it first
// (Store.ConvertFrozen to the store's dtype).
//
// The machine also lets this module's ops recycle their output buffers from
// run to run (opkit.EnableReuse) where only this module's ops read them, so
// a step does not allocate and zero every activation anew: the values of
// such intermediate nodes are valid until the next run. The loss, the extra
// outputs and the routers' mixing weights (Mixing) always get fresh values,
// as with a plain TapeMachine; pass a node as an extra output to keep its
// values across runs.
func (g *Graph) Machine(loss *G.Node, extra ...*G.Node) (G.VM, error) {
	outputs := append(G.Nodes{}, extra...)
	wrt := g.Learnables()
	for _, n := range wrt {
		if lilyop.IsHalf(n) {
			return nil, errors.Errorf("Machine: parameter %q is trainable but kept in %s; only float32 and float64 parameters are trained (convert it with Store.ConvertFrozen(%v, ...) while it is frozen)", n.Name(), halfName(n.Dtype()), g.store.dtype)
		}
	}
	if loss != nil {
		outputs = append(outputs, loss)
	}
	if loss != nil && len(wrt) > 0 {
		grads, err := G.Grad(loss, wrt...)
		if err != nil {
			return nil, errors.Wrap(err, "differentiating the loss")
		}
		outputs = append(outputs, grads...)
	}
	if len(outputs) == 0 {
		return nil, errors.New("Machine: nothing to compute")
	}
	inputs := g.G.ExactSubgraphRoots(outputs...).Inputs()
	prog, locs, err := G.CompileFunction(g.G, inputs, outputs)
	if err != nil {
		return nil, errors.Wrap(err, "compiling the graph")
	}
	keep := append(G.Nodes{}, extra...)
	if loss != nil {
		keep = append(keep, loss)
	}
	for _, m := range g.mixing {
		keep = append(keep, m)
	}
	opkit.EnableReuse(g.G, keep)
	return G.NewTapeMachine(g.G, G.WithPrecompiled(prog, locs), G.BindDualValues(wrt...)), nil
}
