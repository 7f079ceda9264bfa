package bench

import (
	"fmt"
	"hash"
	"math/rand/v2"

	"github.com/chewxy/hm"
	"github.com/lilygo/lily/internal/opkit"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Probe returns the scalar Σ_i Σ x_i⊙p for tensors x_i of p's shape and a
// fixed p (an input node, not differentiated): the cheapest loss that gives
// every element of every x_i a non-trivial gradient, p times the loss
// gradient — one tensor, shared by all x_i, as if the gradient arriving at
// each of them were given. It costs one pass over each x_i forward and one
// fresh tensor backward, the same for every method compared.
func Probe(p *G.Node, xs ...*G.Node) (*G.Node, error) {
	if len(xs) == 0 {
		return nil, errors.New("bench.Probe: nothing to probe")
	}
	for _, x := range xs {
		if !x.Shape().Eq(p.Shape()) || x.Dims() < 1 {
			return nil, errors.Errorf("bench.Probe: x %v and p %v differ", x.Shape(), p.Shape())
		}
	}
	n, err := opkit.Apply(probeOp{rank: p.Dims(), n: len(xs)}, append(append(G.Nodes{}, xs...), p)...)
	return n, errors.Wrap(err, "bench.Probe")
}

// probeOp is (x_1, …, x_n, p) → Σ_i Σ x_i⊙p, or with grad set (p, dloss)
// → dloss·p.
type probeOp struct {
	opkit.Base
	rank, n int
	grad    bool
}

func (op probeOp) Arity() int {
	if op.grad {
		return 2
	}
	return op.n + 1
}

func (op probeOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	t := G.TensorType{Dims: op.rank, Of: a}
	if op.grad {
		return hm.NewFnType(t, a, G.TensorType{Dims: op.rank, Of: a})
	}
	ts := make([]hm.Type, 0, op.n+2)
	for i := 0; i <= op.n; i++ {
		ts = append(ts, G.TensorType{Dims: op.rank, Of: a})
	}
	return hm.NewFnType(append(ts, a)...)
}
func (op probeOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op probeOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op probeOp) String() string {
	return fmt.Sprintf("bench.probe{rank=%d,n=%d,grad=%t}", op.rank, op.n, op.grad)
}

func (op probeOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	if len(in) != op.Arity() {
		return nil, errors.Errorf("%v: expected %d inputs", op, op.Arity())
	}
	s, ok := in[0].(tensor.Shape)
	if !ok || len(s) != op.rank {
		return nil, errors.Errorf("%v: input %v", op, in[0])
	}
	if op.grad {
		return s.Clone(), nil
	}
	return tensor.ScalarShape(), nil
}

func (op probeOp) Do(vs ...G.Value) (G.Value, error) {
	if len(vs) != op.Arity() {
		return nil, errors.Errorf("%v: expected %d inputs, got %d", op, op.Arity(), len(vs))
	}
	return opkit.Dispatch(op, vs, doProbe[float64], doProbe[float32])
}

func doProbe[T opkit.Float](op probeOp, vs []G.Value) (G.Value, error) {
	if op.grad {
		d, shapes, err := opkit.Slices[T](op, vs[:1])
		if err != nil {
			return nil, err
		}
		g, ok := vs[1].Data().(T)
		if !ok {
			return nil, errors.Errorf("%v: loss gradient is a %T", op, vs[1].Data())
		}
		out, o := opkit.Output[T](op.OutputSlot(), shapes[0], false)
		opkit.Parallel(len(o), opkit.ElementGrain, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				o[i] = g * d[0][i]
			}
		})
		return out, nil
	}
	d, _, err := opkit.Slices[T](op, vs)
	if err != nil {
		return nil, err
	}
	p := d[len(d)-1]
	var s float64
	for _, x := range d[:len(d)-1] {
		if len(x) != len(p) {
			return nil, errors.Errorf("%v: sizes %d and %d differ", op, len(x), len(p))
		}
		s += dot(x, p)
	}
	// A Gorgonia scalar value, so that stock ops (Add) can sum losses.
	if _, is64 := any(T(0)).(float64); is64 {
		return G.NewF64(s), nil
	}
	return G.NewF32(float32(s)), nil
}

func (op probeOp) DiffWRT(n int) []bool {
	d := make([]bool, n)
	if !op.grad {
		for i := 0; i < op.n; i++ {
			d[i] = true
		}
	}
	return d
}

// SymDiff returns one node, dloss·p, as the gradient of every x_i.
func (op probeOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if op.grad || len(in) != op.Arity() {
		return nil, errors.Errorf("%v: second-order gradients are not supported", op)
	}
	d, err := opkit.Apply(probeOp{rank: op.rank, grad: true}, in[op.n], grad)
	if err != nil {
		return nil, errors.Wrap(err, "bench.Probe gradient")
	}
	grads := make(G.Nodes, len(in))
	for i := 0; i < op.n; i++ {
		grads[i] = d
	}
	return grads, nil
}

// dot returns Σ x⊙p with eight independent accumulators per goroutine (a
// single running sum would make the loop wait on each addition) and the
// partial sums added in a fixed order: as cheap as a pass over x can be.
func dot[T opkit.Float](x, p []T) float64 {
	parts := opkit.Parts(len(x), opkit.ElementGrain)
	partial := make([]float64, parts)
	opkit.Parallel(parts, 1, func(lo, hi int) {
		for q := lo; q < hi; q++ {
			a, b := len(x)*q/parts, len(x)*(q+1)/parts
			var acc [8]T
			i := a
			for ; i+8 <= b; i += 8 {
				xs, ps := x[i:i+8:i+8], p[i:i+8:i+8]
				acc[0] += xs[0] * ps[0]
				acc[1] += xs[1] * ps[1]
				acc[2] += xs[2] * ps[2]
				acc[3] += xs[3] * ps[3]
				acc[4] += xs[4] * ps[4]
				acc[5] += xs[5] * ps[5]
				acc[6] += xs[6] * ps[6]
				acc[7] += xs[7] * ps[7]
			}
			var sum float64
			for ; i < b; i++ {
				sum += float64(x[i] * p[i])
			}
			for _, v := range acc {
				sum += float64(v)
			}
			partial[q] = sum
		}
	})
	var s float64
	for _, v := range partial {
		s += v
	}
	return s
}

// randomInput adds a named input node of dtype dt and the given shape,
// filled with values uniform in [-1, 1) from rng.
func randomInput(g *G.ExprGraph, dt tensor.Dtype, name string, rng *rand.Rand, shape ...int) *G.Node {
	n := 1
	for _, d := range shape {
		n *= d
	}
	var v *tensor.Dense
	if dt == tensor.Float64 {
		data := make([]float64, n)
		for i := range data {
			data[i] = 2*rng.Float64() - 1
		}
		v = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
	} else {
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(2*rng.Float64() - 1)
		}
		v = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
	}
	return G.NewTensor(g, dt, len(shape), G.WithShape(shape...), G.WithName(name), G.WithValue(v))
}
