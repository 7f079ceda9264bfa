package model

import (
	"encoding/gob"
	"math"
	"math/rand/v2"
	"os"

	"github.com/lilygo/lily/adapterfile"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/port"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// The model's widths: In features, two hidden layers of Hidden units,
// Classes logits.
const (
	In      = 2
	Hidden  = 64
	Classes = 3
)

var dt = tensor.Float64

// weights are the model's tensors, kept outside any graph: a graph is built
// for each batch size (Gorgonia's shapes are fixed) and puts its nodes on
// these same tensors, so a solver step on one is seen by all.
type weights struct {
	W0, B0, W1, B1, W2, B2, W3, B3 *tensor.Dense
}

// mlp is the model on one graph.
type mlp struct {
	w0, b0, w1, b1, w2, b2, w3, b3 *G.Node
	lily                           *port.Port // Lily (or LoRA) on the linear layers

	out *G.Node // logits
}

// newMLP puts nodes for the weights ws on graph g.
func newMLP(g *G.ExprGraph, ws *weights) *mlp {
	matrix := func(t *tensor.Dense, name string) *G.Node {
		return G.NewMatrix(g, dt, G.WithShape(t.Shape()...), G.WithName(name), G.WithValue(t))
	}
	return &mlp{
		w0: matrix(ws.W0, "w0"), b0: matrix(ws.B0, "b0"),
		w1: matrix(ws.W1, "w1"), b1: matrix(ws.B1, "b1"),
		w2: matrix(ws.W2, "w2"), b2: matrix(ws.B2, "b2"),
		w3: matrix(ws.W3, "w3"), b3: matrix(ws.B3, "b3"),
	}
}

// learnables returns the nodes that the solver trains.
// layers lists the linear layers in model order, named so that
// target_modules can pick them ("fc" matches both hidden layers).
func (m *mlp) layers() []port.Layer {
	return []port.Layer{
		{Name: "in", W: m.w0, B: m.b0},
		{Name: "hidden.0.fc", W: m.w1, B: m.b1},
		{Name: "hidden.1.fc", W: m.w2, B: m.b2},
		{Name: "out", W: m.w3, B: m.b3},
	}
}

func (m *mlp) learnables() G.Nodes {
	return m.lily.Learnables()
}

// fwd builds the forward pass of x [batch, In]; m.out holds the logits.
func (m *mlp) fwd(x *G.Node) (err error) {
	var h0, h1, h2 *G.Node
	if h0, err = m.lily.Linear("in", x); err != nil {
		return errors.Wrap(err, "layer 0")
	}
	if h0, err = G.Rectify(h0); err != nil {
		return errors.Wrap(err, "layer 0 activation")
	}
	if h1, err = m.lily.Linear("hidden.0.fc", h0); err != nil {
		return errors.Wrap(err, "layer 1")
	}
	if h1, err = G.Rectify(h1); err != nil {
		return errors.Wrap(err, "layer 1 activation")
	}
	if h2, err = m.lily.Linear("hidden.1.fc", h1); err != nil {
		return errors.Wrap(err, "layer 2")
	}
	if h2, err = G.Rectify(h2); err != nil {
		return errors.Wrap(err, "layer 2 activation")
	}
	m.out, err = m.lily.Linear("out", h2)
	return errors.Wrap(err, "layer 3")
}

// Init saves a new model with weights drawn from rng to ckpt.
func Init(ckpt string, rng *rand.Rand) error {
	return save(ckpt, fresh(rng))
}

// Train trains adapter a on the model saved in ckpt with the examples xs
// [n, In] and labels ys, in steps minibatches of batch examples drawn with
// rng, and saves the adapter to adapterDir with the options opt (PEFTLayout
// for PEFT's own layout); the model itself stays as it is. It returns the
// number of trained parameters.
func Train(ckpt string, a layers.Adapter, adapterDir string, opt adapterfile.Options, xs *tensor.Dense, ys []int, steps, batch int, lr float64, rng *rand.Rand) (int, error) {
	ws, err := load(ckpt)
	if err != nil {
		return 0, err
	}
	g := G.NewGraph()
	x := G.NewMatrix(g, dt, G.WithShape(batch, In), G.WithName("x"))
	y := G.NewMatrix(g, dt, G.WithShape(batch, Classes), G.WithName("y"))
	m := newMLP(g, ws)
	if m.lily, err = port.New(g, a, m.layers()...); err != nil {
		return 0, err
	}
	if err = m.fwd(x); err != nil {
		return 0, err
	}
	cost, err := crossEntropy(m.out, y)
	if err != nil {
		return 0, err
	}
	if _, err = G.Grad(cost, m.learnables()...); err != nil {
		return 0, err
	}
	vm := G.NewTapeMachine(g, G.BindDualValues(m.learnables()...))
	defer vm.Close()
	solver := G.NewAdamSolver(G.WithLearnRate(lr))

	xb := tensor.New(tensor.WithShape(batch, In), tensor.Of(dt))
	yb := tensor.New(tensor.WithShape(batch, Classes), tensor.Of(dt))
	for i := 0; i < steps; i++ {
		sample(xs, ys, xb, yb, rng)
		if err = G.Let(x, xb); err != nil {
			return 0, err
		}
		if err = G.Let(y, yb); err != nil {
			return 0, err
		}
		if err = vm.RunAll(); err != nil {
			return 0, errors.Wrapf(err, "step %d", i)
		}
		if err = solver.Step(G.NodesToValueGrads(m.learnables())); err != nil {
			return 0, errors.Wrapf(err, "step %d", i)
		}
		vm.Reset()
	}
	n := 0
	for _, l := range m.learnables() {
		n += l.Shape().TotalSize()
	}
	return n, m.lily.SaveWith(adapterDir, opt)
}

// crossEntropy is −mean(log softmax(logits) ⊙ y) for one-hot rows y.
func crossEntropy(logits, y *G.Node) (*G.Node, error) {
	p, err := G.SoftMax(logits)
	if err != nil {
		return nil, errors.Wrap(err, "cross-entropy")
	}
	if p, err = G.Log(p); err != nil {
		return nil, errors.Wrap(err, "cross-entropy")
	}
	if p, err = G.HadamardProd(p, y); err != nil {
		return nil, errors.Wrap(err, "cross-entropy")
	}
	if p, err = G.Mean(p); err != nil {
		return nil, errors.Wrap(err, "cross-entropy")
	}
	return G.Neg(p)
}

// Accuracy returns the share of the examples xs [n, In] that the model
// saved in ckpt, with the adapter saved in adapterDir, labels ys.
func Accuracy(ckpt, adapterDir string, xs *tensor.Dense, ys []int) (float64, error) {
	ws, err := load(ckpt)
	if err != nil {
		return 0, err
	}
	g := G.NewGraph()
	x := G.NewMatrix(g, dt, G.WithShape(xs.Shape()...), G.WithName("x"), G.WithValue(xs))
	m := newMLP(g, ws)
	if m.lily, err = port.Load(g, adapterDir, m.layers()...); err != nil {
		return 0, err
	}
	if err = m.fwd(x); err != nil {
		return 0, err
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err = vm.RunAll(); err != nil {
		return 0, err
	}
	return accuracy(m.out.Value().Data().([]float64), ys), nil
}

// accuracy compares the argmax of each row of logits with the labels.
func accuracy(logits []float64, ys []int) float64 {
	right := 0
	for i, label := range ys {
		row := logits[i*Classes : (i+1)*Classes]
		best := 0
		for c := range row {
			if row[c] > row[best] {
				best = c
			}
		}
		if best == label {
			right++
		}
	}
	return float64(right) / float64(len(ys))
}

// sample fills xb and the one-hot yb with examples drawn from (xs, ys).
func sample(xs *tensor.Dense, ys []int, xb, yb *tensor.Dense, rng *rand.Rand) {
	src, xd, yd := xs.Data().([]float64), xb.Data().([]float64), yb.Data().([]float64)
	clear(yd)
	for i := 0; i < xb.Shape()[0]; i++ {
		j := rng.IntN(len(ys))
		copy(xd[i*In:(i+1)*In], src[j*In:(j+1)*In])
		yd[i*Classes+ys[j]] = 1
	}
}

// fresh draws Glorot-uniform weights and zero biases.
func fresh(rng *rand.Rand) *weights {
	glorot := func(in, out int) *tensor.Dense {
		bound := math.Sqrt(6 / float64(in+out))
		v := make([]float64, in*out)
		for i := range v {
			v[i] = (2*rng.Float64() - 1) * bound
		}
		return tensor.New(tensor.WithShape(in, out), tensor.WithBacking(v))
	}
	zeros := func(n int) *tensor.Dense { return tensor.New(tensor.WithShape(1, n), tensor.Of(dt)) }
	return &weights{
		W0: glorot(In, Hidden), B0: zeros(Hidden),
		W1: glorot(Hidden, Hidden), B1: zeros(Hidden),
		W2: glorot(Hidden, Hidden), B2: zeros(Hidden),
		W3: glorot(Hidden, Classes), B3: zeros(Classes),
	}
}

// save writes the weights to path with encoding/gob.
func save(path string, ws *weights) error {
	f, err := os.Create(path)
	if err != nil {
		return errors.Wrap(err, "saving the model")
	}
	if err = gob.NewEncoder(f).Encode(ws); err != nil {
		f.Close()
		return errors.Wrapf(err, "saving the model to %s", path)
	}
	return errors.Wrapf(f.Close(), "saving the model to %s", path)
}

// load reads weights that save wrote.
func load(path string) (*weights, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errors.Wrap(err, "loading the model")
	}
	defer f.Close()
	ws := new(weights)
	if err = gob.NewDecoder(f).Decode(ws); err != nil {
		return nil, errors.Wrapf(err, "loading the model from %s", path)
	}
	return ws, nil
}
