package layers

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lilygo/lily/gorgoniafix"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// toy is a small residual stack used by the tests: each layer computes
// x ← x + tanh(query(x))⊙value(x), with frozen, random query/value linears.
type toy struct {
	store  *Store
	sites  []Site
	layers int
	d      int
}

func newToy(t testing.TB, dt tensor.Dtype, layers, d int, seed uint64) *toy {
	t.Helper()
	s, err := NewStore(dt)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	m := &toy{store: s, layers: layers, d: d}
	for l := 0; l < layers; l++ {
		for _, target := range []string{"query", "value"} {
			path := fmt.Sprintf("encoder.layer.%d.attention.self.%s", l, target)
			site := Site{Layer: l, Target: target, Path: path, DIn: d, DOut: d, Weight: path + ".weight", Bias: path + ".bias"}
			if _, err := s.New(ParamSpec{Name: site.Weight, Shape: tensor.Shape{d, d}, Init: KaimingUniform(d), Torch: Transposed}, false, rng); err != nil {
				t.Fatal(err)
			}
			if _, err := s.New(ParamSpec{Name: site.Bias, Shape: tensor.Shape{d}, Init: KaimingUniform(d)}, false, rng); err != nil {
				t.Fatal(err)
			}
			m.sites = append(m.sites, site)
		}
	}
	return m
}

// forward builds the toy model on x and returns its output.
func (m *toy) forward(g *Graph, a Adapter, x *G.Node) (*G.Node, error) {
	for l := 0; l < m.layers; l++ {
		q, err := Linear(g, a, m.sites[2*l], x)
		if err != nil {
			return nil, err
		}
		v, err := Linear(g, a, m.sites[2*l+1], x)
		if err != nil {
			return nil, err
		}
		tq, err := G.Tanh(q)
		if err != nil {
			return nil, err
		}
		gate, err := G.HadamardProd(tq, v)
		if err != nil {
			return nil, err
		}
		if x, err = G.Add(x, gate); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// lossGraph is one built graph: inputs, target and the squared-error loss.
type lossGraph struct {
	g      *Graph
	x, y   *G.Node
	out    *G.Node
	loss   *G.Node
	vm     G.VM
	params G.Nodes
}

// build makes a graph for a batch of shape [b, tok, d] (tok == 0: [b, d]),
// with a padding mask when mask != nil.
func (m *toy) build(t testing.TB, a Adapter, train, grad bool, b, tok int, mask []float64) *lossGraph {
	t.Helper()
	g := m.store.NewGraph(train)
	shape := []int{b, m.d}
	if tok > 0 {
		shape = []int{b, tok, m.d}
	}
	lg := &lossGraph{g: g, x: g.Input("x", shape...), y: g.Input("y", shape...)}
	if mask != nil {
		mk := g.Input("mask", b, tok)
		copyInto(mk.Value().(*tensor.Dense), mask)
		g.SetPadMask(mk)
	}
	var err error
	if lg.out, err = m.forward(g, a, lg.x); err != nil {
		t.Fatalf("%+v", err)
	}
	diff, err := G.Sub(lg.out, lg.y)
	if err != nil {
		t.Fatal(err)
	}
	sq, err := G.Square(diff)
	if err != nil {
		t.Fatal(err)
	}
	if lg.loss, err = G.Mean(sq); err != nil {
		t.Fatal(err)
	}
	if grad {
		lg.params = g.Learnables()
		if _, err := G.Grad(lg.loss, lg.params...); err != nil {
			t.Fatalf("%+v", err)
		}
		lg.vm = G.NewTapeMachine(g.G, G.BindDualValues(lg.params...))
	} else {
		lg.vm = G.NewTapeMachine(g.G)
	}
	return lg
}

func (lg *lossGraph) run(t testing.TB) float64 {
	t.Helper()
	lg.vm.Reset()
	if err := lg.vm.RunAll(); err != nil {
		t.Fatalf("%+v", err)
	}
	switch v := lg.loss.Value().Data().(type) {
	case float64:
		return v
	case float32:
		return float64(v)
	}
	t.Fatalf("loss has type %T", lg.loss.Value().Data())
	return 0
}

func copyInto(dst *tensor.Dense, src []float64) {
	switch d := dst.Data().(type) {
	case []float64:
		copy(d, src)
	case []float32:
		for i, v := range src {
			d[i] = float32(v)
		}
	}
}

func randSlice(rng *rand.Rand, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = rng.Float64()*2 - 1
	}
	return out
}

// gradCheckStore compares the symbolic gradient of every trainable store
// parameter with central differences on a forward-only twin graph.
func gradCheckStore(t *testing.T, m *toy, a Adapter, b, tok int, mask []float64, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 2))
	shape := b * m.d
	if tok > 0 {
		shape *= tok
	}
	xv, yv := randSlice(rng, shape), randSlice(rng, shape)
	lg := m.build(t, a, false, true, b, tok, mask)
	fwd := m.build(t, a, false, false, b, tok, mask)
	for _, g := range []*lossGraph{lg, fwd} {
		copyInto(g.x.Value().(*tensor.Dense), xv)
		copyInto(g.y.Value().(*tensor.Dense), yv)
	}
	lg.run(t)
	if len(lg.params) == 0 {
		t.Fatal("no trainable parameters in the graph")
	}
	const eps = 1e-6
	for _, n := range lg.params {
		gv, err := n.Grad()
		if err != nil {
			t.Fatal(err)
		}
		if !gv.Shape().Eq(n.Shape()) || gv.Shape().Dims() != n.Dims() {
			t.Fatalf("gradient of %s has shape %v, want %v", n.Name(), gv.Shape(), n.Shape())
		}
		ana := gv.Data().([]float64)
		p, _ := m.store.Get(n.Name())
		vals := p.Value.Data().([]float64)
		for j := range vals {
			orig := vals[j]
			vals[j] = orig + eps
			fp := fwd.run(t)
			vals[j] = orig - eps
			fm := fwd.run(t)
			vals[j] = orig
			num := (fp - fm) / (2 * eps)
			if e := math.Abs(num-ana[j]) / math.Max(1, math.Abs(num)); e > 1e-6 {
				t.Errorf("d/d%s[%d]: analytic %.10g, numeric %.10g", n.Name(), j, ana[j], num)
			}
		}
	}
	lg.vm.Close()
	fwd.vm.Close()
}

// trainSteps runs n AdamW steps on fixed random data and returns the losses.
func trainSteps(t testing.TB, m *toy, a Adapter, n int, lr float64) []float64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	lg := m.build(t, a, true, true, 4, 3, nil)
	defer lg.vm.Close()
	copyInto(lg.x.Value().(*tensor.Dense), randSlice(rng, 4*3*m.d))
	copyInto(lg.y.Value().(*tensor.Dense), randSlice(rng, 4*3*m.d))
	opt := gorgoniafix.NewAdamW(gorgoniafix.WithLearnRate(lr), gorgoniafix.WithWeightDecay(0))
	var losses []float64
	for i := 0; i < n; i++ {
		if err := lg.g.RefillDropout(rng); err != nil {
			t.Fatal(err)
		}
		losses = append(losses, lg.run(t))
		if err := opt.Step(G.NodesToValueGrads(lg.params)); err != nil {
			t.Fatalf("%+v", err)
		}
	}
	return losses
}
