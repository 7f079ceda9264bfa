package bench

import (
	"fmt"
	"math/rand/v2"

	"github.com/lilygo/lily/graphs/roberta"
	"github.com/lilygo/lily/internal/opkit"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Method names an adapter configuration to benchmark.
type Method struct {
	// Name is "lily" or "lora".
	Name string
	// R is the rank.
	R int
	// StrideA and NumB configure Lily.
	StrideA, NumB int
	// Scaling is Lily's scaling or LoRA's alpha/r.
	Scaling float64
}

// PaperLily is the roberta-base GLUE configuration of the paper on query
// and value: r 32, 2 A's (stride_A 6 over 12 layers), 2 B's, 198,144
// trainable parameters.
func PaperLily() Method { return Method{Name: "lily", R: 32, StrideA: 6, NumB: 2, Scaling: 0.01} }

// MatchedLoRA is LoRA r 5 on query and value of roberta-base: 184,320
// parameters, the nearest count to PaperLily's 198,144 (r 6 has 221,184).
func MatchedLoRA() Method { return Method{Name: "lora", R: 5, Scaling: 2} }

// LoRARank returns LoRA with the given rank (alpha = 2r).
func LoRARank(r int) Method { return Method{Name: "lora", R: r, Scaling: 2} }

// String names the method with its parameters.
func (m Method) String() string {
	if m.Name == "lily" {
		return fmt.Sprintf("Lily r=%d stride_A=%d num_B=%d", m.R, m.StrideA, m.NumB)
	}
	return fmt.Sprintf("LoRA r=%d", m.R)
}

// Adapter returns the layers adapter for query and value.
func (m Method) Adapter() (layers.Adapter, error) {
	targets := []string{"query", "value"}
	switch m.Name {
	case "lily":
		return layers.NewLily(layers.LilyConfig{R: m.R, StrideA: m.StrideA, NumB: m.NumB, Scaling: m.Scaling, TargetModules: targets, NonZeroB: true})
	case "lora":
		return layers.NewLoRA(layers.LoRAConfig{R: m.R, Alpha: m.Scaling * float64(m.R), TargetModules: targets, NonZeroB: true})
	}
	return nil, errors.Errorf("bench: unknown method %q", m.Name)
}

// AdapterConfig describes the adapters-only benchmark: the adapter of every
// query and value site of a roberta-base-shaped encoder, each applied to a
// given input x [batch·seq, hidden] (one per layer, shared by that layer's
// query and value, as in the model), forward and backward.
type AdapterConfig struct {
	Method Method
	// Composed builds Lily's delta from stock Gorgonia ops (Mul, SoftMax,
	// Mean, Reshape) instead of the fused lilyop ops, site by site.
	Composed bool
	// PerSite computes every site's x·A by itself (lilyop.MatMul), instead
	// of one GEMM per layer for query and value together
	// (lilyop.MatMulShared), which is what layers.LinearGroup does.
	PerSite bool
	// Layers, Batch and Seq default to 12, 8 and 128.
	Layers, Batch, Seq int
	// Dtype defaults to float32.
	Dtype tensor.Dtype
}

func (c *AdapterConfig) defaults() {
	if c.Layers == 0 {
		c.Layers = 12
	}
	if c.Batch == 0 {
		c.Batch = 8
	}
	if c.Seq == 0 {
		c.Seq = 128
	}
	if c.Dtype == (tensor.Dtype{}) {
		c.Dtype = tensor.Float32
	}
}

// AdapterStep runs the adapters of AdapterConfig: Probe of every site's
// delta (one shared output gradient, as if given), differentiated with respect to every adapter parameter and
// every input x (the gradient a layer below would need), compiled as
// layers.Graph.Machine compiles (only what the loss and those gradients
// need).
type AdapterStep struct {
	vm G.VM
	// Params is the number of trainable adapter parameters.
	Params int
	// Nodes is the number of nodes of the graph.
	Nodes int
	// Store holds the adapter's parameters.
	Store *layers.Store
	// Learn are the adapter parameter nodes; Inputs the x nodes.
	Learn, Inputs G.Nodes
	// Loss is the scalar loss node.
	Loss *G.Node
}

// NewAdapterStep builds the benchmark graph.
func NewAdapterStep(c AdapterConfig) (*AdapterStep, error) {
	c.defaults()
	if c.Composed && c.Method.Name != "lily" {
		return nil, errors.New("bench: only Lily has a stock composition")
	}
	cfg := roberta.BaseConfig()
	cfg.NumHiddenLayers = c.Layers
	var sites []layers.Site
	for _, s := range cfg.Sites() {
		if s.Target == "query" || s.Target == "value" {
			sites = append(sites, s)
		}
	}
	ad, err := c.Method.Adapter()
	if err != nil {
		return nil, err
	}
	st, err := layers.NewStore(c.Dtype)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(7, 7))
	if err := layers.Attach(st, ad, sites, rng); err != nil {
		return nil, err
	}
	params, _ := st.Count()
	g := st.NewGraph(true)
	m, d := c.Batch*c.Seq, cfg.HiddenSize
	probe := randomInput(g.G, c.Dtype, "bench.probe", rng, m, d)
	xs := make(G.Nodes, c.Layers)
	for l := range xs {
		xs[l] = randomInput(g.G, c.Dtype, fmt.Sprintf("bench.x%d", l), rng, m, d)
	}
	// h[path] is x·A of a site, computed for query and value of a layer
	// together unless PerSite or Composed.
	h := map[string]*G.Node{}
	if !c.PerSite && !c.Composed {
		for l := 0; l < c.Layers; l++ {
			var as G.Nodes
			for _, s := range sites[2*l : 2*l+2] {
				A, err := downProjection(g, ad, s)
				if err != nil {
					return nil, err
				}
				as = append(as, A)
			}
			hs, err := lilyop.MatMulShared(xs[l], as...)
			if err != nil {
				return nil, err
			}
			h[sites[2*l].Path], h[sites[2*l+1].Path] = hs[0], hs[1]
		}
	}
	var deltas G.Nodes
	for _, s := range sites {
		var delta *G.Node
		switch {
		case c.Method.Name == "lora":
			delta, err = loraDelta(g, s, xs[s.Layer], h[s.Path], c.Method.Scaling)
		case c.Composed:
			delta, err = lilyDeltaStock(g, ad.(*layers.Lily), s, xs[s.Layer], c.Method.Scaling, c.Dtype)
		default:
			delta, err = lilyDelta(g, ad.(*layers.Lily), s, xs[s.Layer], h[s.Path], c.Method.Scaling)
		}
		if err != nil {
			return nil, errors.Wrap(err, s.Path)
		}
		deltas = append(deltas, delta)
	}
	loss, err := Probe(probe, deltas...)
	if err != nil {
		return nil, err
	}
	learn := g.Learnables()
	vm, err := compileGrads(g.G, loss, learn, xs)
	if err != nil {
		return nil, err
	}
	return &AdapterStep{vm: vm, Params: params, Nodes: len(g.G.AllNodes()), Store: st, Learn: learn, Inputs: xs, Loss: loss}, nil
}

// Step runs forward and backward once.
func (s *AdapterStep) Step() error {
	s.vm.Reset()
	return s.vm.RunAll()
}

// Close releases the machine.
func (s *AdapterStep) Close() error { return s.vm.Close() }

// compileGrads differentiates loss with respect to learn and extra and
// compiles only what the loss and those gradients need, as
// layers.Graph.Machine does (output recycling included); learn's gradients
// are bound as dual values (readable with Node.Grad).
func compileGrads(g *G.ExprGraph, loss *G.Node, learn, extra G.Nodes) (G.VM, error) {
	grads, err := G.Grad(loss, append(append(G.Nodes{}, learn...), extra...)...)
	if err != nil {
		return nil, errors.Wrap(err, "differentiating")
	}
	outputs := append(G.Nodes{loss}, grads...)
	inputs := g.ExactSubgraphRoots(outputs...).Inputs()
	prog, locs, err := G.CompileFunction(g, inputs, outputs)
	if err != nil {
		return nil, errors.Wrap(err, "compiling")
	}
	opkit.EnableReuse(g, G.Nodes{loss})
	return G.NewTapeMachine(g, G.WithPrecompiled(prog, locs), G.BindDualValues(learn...)), nil
}

// downProjection binds the site's A (Lily's shared one, or LoRA's).
func downProjection(g *layers.Graph, ad layers.Adapter, s layers.Site) (*G.Node, error) {
	if l, ok := ad.(*layers.Lily); ok {
		return g.Param(l.PEFTNames()[s.Path+".lily_A.weight"])
	}
	return g.Param(s.Path + ".lora_A.weight")
}

// lilyDelta is layers.Lily's adapter term with batch routing:
// ExpertMix(h, RouterWeights(h, R), B) with h = x·A (given, or computed
// here when nil).
func lilyDelta(g *layers.Graph, l *layers.Lily, s layers.Site, x, h *G.Node, scale float64) (*G.Node, error) {
	A, R, B, err := lilyParams(g, l, s)
	if err != nil {
		return nil, err
	}
	if h == nil {
		if h, err = lilyop.MatMul(x, A); err != nil {
			return nil, err
		}
	}
	w, err := lilyop.RouterWeights(h, R, nil, lilyop.Batch)
	if err != nil {
		return nil, err
	}
	return lilyop.ExpertMix(h, w, B, lilyop.Batch, scale)
}

func lilyParams(g *layers.Graph, l *layers.Lily, s layers.Site) (A, R, B *G.Node, err error) {
	names := l.PEFTNames()
	if A, err = g.Param(names[s.Path+".lily_A.weight"]); err != nil {
		return
	}
	if R, err = g.Param(names[s.Path+".lily_router.weight"]); err != nil {
		return
	}
	B, err = g.Param(names[s.Path+".lily_B.weight"])
	return
}

// lilyDeltaStock computes the same as lilyDelta from stock Gorgonia ops, as
// lilyop's equivalence test composes it (x must be a matrix).
func lilyDeltaStock(g *layers.Graph, l *layers.Lily, s layers.Site, x *G.Node, scale float64, dt tensor.Dtype) (*G.Node, error) {
	A, R, B, err := lilyParams(g, l, s)
	if err != nil {
		return nil, err
	}
	e, r, d := B.Shape()[0], B.Shape()[1], B.Shape()[2]
	h, err := G.Mul(x, A)
	if err != nil {
		return nil, err
	}
	logits, err := G.Mul(h, R)
	if err != nil {
		return nil, err
	}
	p, err := G.SoftMax(logits)
	if err != nil {
		return nil, err
	}
	w, err := G.Mean(p, 0)
	if err != nil {
		return nil, err
	}
	wRow, err := G.Reshape(w, tensor.Shape{1, e})
	if err != nil {
		return nil, err
	}
	bFlat, err := G.Reshape(B, tensor.Shape{e, r * d})
	if err != nil {
		return nil, err
	}
	mixed, err := G.Mul(wRow, bFlat)
	if err != nil {
		return nil, err
	}
	bMix, err := G.Reshape(mixed, tensor.Shape{r, d})
	if err != nil {
		return nil, err
	}
	y, err := G.Mul(h, bMix)
	if err != nil {
		return nil, err
	}
	var c *G.Node
	if dt == tensor.Float64 {
		c = G.NewConstant(scale)
	} else {
		c = G.NewConstant(float32(scale))
	}
	return G.Mul(y, c)
}

// loraDelta is layers.LoRA's adapter term without dropout:
// MatMulScaled(h, B, scaling) with h = x·A (given, or computed here when
// nil).
func loraDelta(g *layers.Graph, s layers.Site, x, h *G.Node, scale float64) (*G.Node, error) {
	A, err := g.Param(s.Path + ".lora_A.weight")
	if err != nil {
		return nil, err
	}
	B, err := g.Param(s.Path + ".lora_B.weight")
	if err != nil {
		return nil, err
	}
	if h == nil {
		if h, err = lilyop.MatMul(x, A); err != nil {
			return nil, err
		}
	}
	return lilyop.MatMulScaled(h, B, scale)
}
