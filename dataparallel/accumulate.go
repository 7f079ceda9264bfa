package dataparallel

import (
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Gradient is a trainable parameter with a gradient held outside any graph.
// It is a gorgonia.ValueGrad (and Namer), so Reducer and solvers such as
// gorgoniafix.AdamW take it like a graph node: the solver updates the
// store's tensor and zeroes Sum.
type Gradient struct {
	// Param is the store parameter the gradient belongs to.
	Param *layers.Param
	// Sum is the gradient: the sum of the micro-batches' gradients.
	Sum *tensor.Dense
}

// Value returns the parameter's tensor, which every graph of the store
// shares.
func (g Gradient) Value() G.Value { return g.Param.Value }

// Grad returns the accumulated gradient.
func (g Gradient) Grad() (G.Value, error) { return g.Sum, nil }

// Name returns the parameter's name.
func (g Gradient) Name() string { return g.Param.Name }

// Accumulator sums the gradients of several micro-batches into one
// optimiser step (gradient accumulation). The micro-batches may run on
// different graphs bound to the same store, such as one graph per shape
// bucket: each graph's nodes hold their own gradients, which Gorgonia's
// BindDualValues keeps adding to across runs until something zeroes them,
// so Add moves them into the Accumulator's sums and zeroes them. An
// Accumulator must not be used from several goroutines at once.
type Accumulator struct {
	grads   []Gradient
	byValue map[*tensor.Dense]int
	// fresh[i]: the next Add copies into grads[i] instead of adding.
	fresh []bool
	micro int
}

// NewAccumulator returns an Accumulator for params (typically
// Store.Trainable()), with zero sums.
func NewAccumulator(params []*layers.Param) (*Accumulator, error) {
	a := &Accumulator{byValue: make(map[*tensor.Dense]int, len(params))}
	for i, p := range params {
		if p == nil || p.Value == nil {
			return nil, errors.Errorf("dataparallel.NewAccumulator: parameter #%d is nil or has no value", i)
		}
		if dt := p.Value.Dtype(); dt != tensor.Float32 && dt != tensor.Float64 {
			return nil, errors.Errorf("dataparallel.NewAccumulator: parameter %q is %v; only float32 and float64 parameters train", p.Name, dt)
		}
		if _, dup := a.byValue[p.Value]; dup {
			return nil, errors.Errorf("dataparallel.NewAccumulator: parameter %q is listed twice", p.Name)
		}
		a.byValue[p.Value] = i
		sum := tensor.New(tensor.WithShape(p.Value.Shape().Clone()...), tensor.Of(p.Value.Dtype()))
		a.grads = append(a.grads, Gradient{Param: p, Sum: sum})
		a.fresh = append(a.fresh, true)
	}
	return a, nil
}

// Add adds the gradients that the last run of a graph left in nodes (its
// Learnables) to the sums and zeroes them in the graph. Every node must hold
// one of the Accumulator's parameters; a parameter that no node of a
// micro-batch holds gets nothing from it.
func (a *Accumulator) Add(nodes G.Nodes) error {
	idx := make([]int, len(nodes))
	grads := make([]*tensor.Dense, len(nodes))
	seen := make(map[int]bool, len(nodes))
	for k, n := range nodes {
		i, g, err := a.nodeGrad(n)
		if err != nil {
			return errors.Wrap(err, "dataparallel.Accumulator.Add")
		}
		if seen[i] {
			return errors.Errorf("dataparallel.Accumulator.Add: node %q is listed twice", n.Name())
		}
		seen[i] = true
		idx[k], grads[k] = i, g
	}
	for k, i := range idx {
		switch sum := a.grads[i].Sum.Data().(type) {
		case []float32:
			accumulate(sum, grads[k].Data().([]float32), a.fresh[i])
		case []float64:
			accumulate(sum, grads[k].Data().([]float64), a.fresh[i])
		}
		a.fresh[i] = false
	}
	a.micro++
	return nil
}

// nodeGrad checks that node n holds one of the parameters and returns that
// parameter's index and the node's gradient.
func (a *Accumulator) nodeGrad(n *G.Node) (int, *tensor.Dense, error) {
	if n == nil {
		return 0, nil, errors.New("nil node")
	}
	v, _ := n.Value().(*tensor.Dense)
	i, ok := a.byValue[v]
	if !ok {
		return 0, nil, errors.Errorf("node %q does not hold one of the accumulator's parameters; pass the Learnables of a graph bound to the same store", n.Name())
	}
	gv, err := n.Grad()
	if err != nil {
		return 0, nil, errors.Wrapf(err, "node %q has no gradient (was the graph run by a machine from layers.Graph.Machine?)", n.Name())
	}
	g, ok := gv.(*tensor.Dense)
	if !ok {
		return 0, nil, errors.Errorf("node %q: its gradient is a %T, want *tensor.Dense", n.Name(), gv)
	}
	if g.Dtype() != v.Dtype() || !g.Shape().Eq(v.Shape()) || g.IsView() {
		return 0, nil, errors.Errorf("node %q: its gradient (%v %v) does not match its value (%v %v), or is a view", n.Name(), g.Dtype(), g.Shape(), v.Dtype(), v.Shape())
	}
	return i, g, nil
}

// accumulate adds g to sum, or copies it when fresh, and zeroes g.
func accumulate[T float32 | float64](sum, g []T, fresh bool) {
	if fresh {
		copy(sum, g)
	} else {
		for i, x := range g {
			sum[i] += x
		}
	}
	clear(g)
}

// MicroBatches is the number of Add calls summed since the last Gradients.
func (a *Accumulator) MicroBatches() int { return a.micro }

// Gradients returns the sums, one per parameter in the order given to
// NewAccumulator, for a Reducer and a solver step, and ends the
// accumulation: the next Add starts new sums (it overwrites them, so the
// next step never sees this one's gradients even if the solver does not
// zero them). Parameters that no micro-batch touched since the previous
// Gradients have a zero gradient.
func (a *Accumulator) Gradients() []G.ValueGrad {
	out := make([]G.ValueGrad, len(a.grads))
	for i, g := range a.grads {
		if a.fresh[i] {
			g.Sum.Zero()
		}
		a.fresh[i] = true
		out[i] = g
	}
	a.micro = 0
	return out
}
