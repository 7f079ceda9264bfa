package mamba

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	"github.com/lilygo/lily/internal/opkit"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Narrow returns a copy of x[..., lo:hi], the columns lo to hi−1 of the last
// axis of x: how the mixer splits in_proj's output into x and the gate z,
// and x_proj's into dt, B and C. Unlike gorgonia.Slice it never returns a
// view of x, so no later in-place op can write through it into x. The
// gradient is the output gradient zero-padded back to x's width.
func Narrow(x *G.Node, lo, hi int) (*G.Node, error) {
	if x.Dims() < 1 {
		return nil, errors.Errorf("mamba.Narrow: x has shape %v, want rank ≥ 1", x.Shape())
	}
	width := x.Shape()[x.Dims()-1]
	if lo < 0 || hi <= lo || hi > width {
		return nil, errors.Errorf("mamba.Narrow: columns [%d, %d) of a last axis of %d", lo, hi, width)
	}
	op := narrowOp{rank: x.Dims(), lo: lo, hi: hi, width: width}
	n, err := G.ApplyOp(op, x)
	return n, errors.Wrapf(err, "mamba.Narrow(%v, %d, %d)", x.Shape(), lo, hi)
}

// narrowOp copies columns [lo, hi) of a last axis of width columns; with pad
// set it does the adjoint: it places an input of hi−lo columns at [lo, hi)
// of a zero tensor of width columns.
type narrowOp struct {
	opkit.Base
	rank, lo, hi, width int
	pad                 bool
}

// Arity is 1.
func (op narrowOp) Arity() int { return 1 }

// Type keeps the rank.
func (op narrowOp) Type() hm.Type { return opkit.FnType(op.rank, op.rank) }

// InferShape replaces the width of the last axis.
func (op narrowOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, 1, in)
	if err != nil {
		return nil, err
	}
	x := s[0]
	from, to := op.width, op.hi-op.lo
	if op.pad {
		from, to = to, from
	}
	if len(x) != op.rank || x[len(x)-1] != from {
		return nil, errors.Errorf("%v: input shape %v", op, x)
	}
	x[len(x)-1] = to
	return x, nil
}

// Do copies the columns.
func (op narrowOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doNarrow[float64], doNarrow[float32])
}

func doNarrow[T opkit.Float](op narrowOp, vs []G.Value) (G.Value, error) {
	in, shapes, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	out, o := opkit.NewDense[T](want)
	x, n := in[0], op.hi-op.lo
	rows := len(x) / shapes[0][len(shapes[0])-1]
	for r := 0; r < rows; r++ {
		if op.pad {
			copy(o[r*op.width+op.lo:r*op.width+op.hi], x[r*n:(r+1)*n])
		} else {
			copy(o[r*n:(r+1)*n], x[r*op.width+op.lo:r*op.width+op.hi])
		}
	}
	return out, nil
}

// WriteHash writes the description, which names every parameter.
func (op narrowOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }

// Hashcode hashes the description.
func (op narrowOp) Hashcode() uint32 { return opkit.Hashcode(op) }

// String describes the op.
func (op narrowOp) String() string {
	return fmt.Sprintf("mamba.narrow{rank=%d,cols=%d:%d,width=%d,pad=%t}", op.rank, op.lo, op.hi, op.width, op.pad)
}

// DiffWRT: the input is differentiable.
func (op narrowOp) DiffWRT(int) []bool { return []bool{true} }

// SymDiff applies the adjoint: padding for a narrow, narrowing for a pad.
func (op narrowOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	adj := op
	adj.pad = !op.pad
	n, err := G.ApplyOp(adj, grad)
	if err != nil {
		return nil, errors.Wrapf(err, "%v: gradient", op)
	}
	return G.Nodes{n}, nil
}
