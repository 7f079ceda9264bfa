package lilyop

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	"github.com/lilygo/lily/internal/opkit"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// AddBias returns x + b for x [..., d] and a bias vector b [d], broadcasting
// b over every leading dimension of x without reshaping (Gorgonia's
// broadcasting needs equal ranks, and its Reshape aliases its input).
func AddBias(x, b *G.Node) (*G.Node, error) {
	if x.Dims() < 1 || b.Dims() != 1 {
		return nil, errors.Errorf("lilyop.AddBias: need x [..., d] and b [d], got %v and %v", x.Shape(), b.Shape())
	}
	op := biasOp{rank: x.Dims()}
	n, err := opkit.Apply(op, x, b)
	return n, errors.Wrapf(err, "lilyop.AddBias(%v, %v)", x.Shape(), b.Shape())
}

// biasOp adds a vector along the last axis; with sum set it instead reduces
// a gradient [..., d] to [d] (the bias gradient).
type biasOp struct {
	opkit.Base
	rank int
	sum  bool
}

func (op biasOp) Arity() int {
	if op.sum {
		return 1
	}
	return 2
}

func (op biasOp) Type() hm.Type {
	if op.sum {
		return opkit.FnType(op.rank, 1)
	}
	return opkit.FnType(op.rank, 1, op.rank)
}

func (op biasOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op biasOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op biasOp) String() string        { return fmt.Sprintf("lilyop.bias{rank=%d,sum=%t}", op.rank, op.sum) }

func (op biasOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, op.Arity(), in)
	if err != nil {
		return nil, err
	}
	x := s[0]
	if len(x) != op.rank {
		return nil, errors.Errorf("%v: input has shape %v", op, x)
	}
	if op.sum {
		return tensor.Shape{x[len(x)-1]}, nil
	}
	if len(s[1]) != 1 || s[1][0] != x[len(x)-1] {
		return nil, errors.Errorf("%v: bias %v does not fit %v", op, s[1], x)
	}
	return x.Clone(), nil
}

func (op biasOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doBias[float64], doBias[float32])
}

func doBias[T opkit.Float](op biasOp, vs []G.Value) (G.Value, error) {
	in, shapes, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	out, o := opkit.Output[T](op.OutputSlot(), want, op.sum) // the sum accumulates
	x := in[0]
	d := shapes[0][len(shapes[0])-1]
	rows := len(x) / d
	if op.sum {
		// Each goroutine sums its own rows; the partial sums are added in
		// a fixed order, so the result does not depend on scheduling.
		parts := opkit.Parts(rows, max(1, opkit.ElementGrain/d))
		partial := make([][]T, parts)
		opkit.Parallel(parts, 1, func(lo, hi int) {
			for p := lo; p < hi; p++ {
				acc := o
				if p > 0 {
					acc = make([]T, d)
				}
				for r := rows * p / parts; r < rows*(p+1)/parts; r++ {
					xr := x[r*d : (r+1)*d]
					for j, v := range xr {
						acc[j] += v
					}
				}
				partial[p] = acc
			}
		})
		for _, acc := range partial[1:] {
			for j, v := range acc {
				o[j] += v
			}
		}
		return out, opkit.CheckOut(op, out, want)
	}
	b := in[1][:d]
	opkit.Parallel(rows, max(1, opkit.ElementGrain/d), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, or := x[r*d:(r+1)*d], o[r*d:(r+1)*d]
			for j, v := range xr {
				or[j] = v + b[j]
			}
		}
	})
	return out, opkit.CheckOut(op, out, want)
}

func (op biasOp) DiffWRT(n int) []bool {
	if op.sum {
		return []bool{false}
	}
	return []bool{true, true}
}

// SymDiff passes the gradient through to x and sums it over rows for b.
func (op biasOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if op.sum || len(in) != 2 {
		return nil, errors.Errorf("%v: second-order gradients are not supported", op)
	}
	db, err := opkit.Apply(biasOp{rank: op.rank, sum: true}, grad)
	if err != nil {
		return nil, errors.Wrap(err, "bias gradient")
	}
	return G.Nodes{grad, db}, nil
}

// Add returns x + y for two tensors of one shape, as one node whose
// gradient passes to both inputs unchanged: gorgonia.Add without its
// reshape and broadcasting machinery, split across goroutines, and drawing
// its output from the node's slot so that a machine may recycle it (see
// opkit.EnableReuse). The adapters add their term to the frozen linear's
// output with it.
func Add(x, y *G.Node) (*G.Node, error) {
	if x == nil || y == nil || !x.Shape().Eq(y.Shape()) || x.Dims() < 1 {
		return nil, errors.New("lilyop.Add: need two tensors of one shape")
	}
	n, err := opkit.Apply(addOp{rank: x.Dims()}, x, y)
	return n, errors.Wrapf(err, "lilyop.Add(%v, %v)", x.Shape(), y.Shape())
}

// addOp is the elementwise sum of two tensors of one shape.
type addOp struct {
	opkit.Base
	rank int
}

func (op addOp) Arity() int            { return 2 }
func (op addOp) Type() hm.Type         { return opkit.FnType(op.rank, op.rank, op.rank) }
func (op addOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op addOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op addOp) String() string        { return fmt.Sprintf("lilyop.add{rank=%d}", op.rank) }
func (op addOp) DiffWRT(int) []bool    { return []bool{true, true} }

func (op addOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, 2, in)
	if err != nil {
		return nil, err
	}
	if len(s[0]) != op.rank || !s[0].Eq(s[1]) {
		return nil, errors.Errorf("%v: shapes %v and %v", op, s[0], s[1])
	}
	return s[0].Clone(), nil
}

func (op addOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doAdd[float64], doAdd[float32])
}

func doAdd[T opkit.Float](op addOp, vs []G.Value) (G.Value, error) {
	in, _, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	out, o := opkit.Output[T](op.OutputSlot(), want, false) // every element is written
	x, y := in[0], in[1]
	opkit.Parallel(len(o), opkit.ElementGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			o[i] = x[i] + y[i]
		}
	})
	return out, opkit.CheckOut(op, out, want)
}

// SymDiff passes the gradient to both inputs.
func (op addOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if len(in) != 2 {
		return nil, errors.Errorf("%v: expected 2 inputs, got %d", op, len(in))
	}
	return G.Nodes{grad, grad}, nil
}
