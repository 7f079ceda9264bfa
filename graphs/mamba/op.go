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

// packedGrads is implemented by the backward ops of this package: one Do
// computes the gradients of every input at once and returns them packed,
// one after the other, in a flat vector; unpackOp then cuts out each one.
type packedGrads interface {
	G.Op
	// gradShapes lists the shapes of the packed gradients, in order.
	gradShapes() []tensor.Shape
}

// unpackGrads applies the packed backward op to in and returns one node per
// gradient, each with exactly the shape of the corresponding input.
func unpackGrads(op packedGrads, in ...*G.Node) (G.Nodes, error) {
	packed, err := G.ApplyOp(op, in...)
	if err != nil {
		return nil, errors.Wrapf(err, "applying %v", op)
	}
	out := make(G.Nodes, 0, len(op.gradShapes()))
	off := 0
	for _, s := range op.gradShapes() {
		u := unpackOp{offset: off, total: packed.Shape().TotalSize(), shape: s.Clone()}
		n, err := G.ApplyOp(u, packed)
		if err != nil {
			return nil, errors.Wrapf(err, "applying %v", u)
		}
		out = append(out, n)
		off += s.TotalSize()
	}
	return out, nil
}

// unpackOp copies shape.TotalSize() elements starting at offset out of a
// flat vector of total elements and gives them the shape. It only appears
// in backward graphs and is not differentiable.
type unpackOp struct {
	opkit.Base
	offset, total int
	shape         tensor.Shape
}

// Arity is 1.
func (op unpackOp) Arity() int { return 1 }

// Type maps a vector to a tensor of the target rank.
func (op unpackOp) Type() hm.Type { return opkit.FnType(1, len(op.shape)) }

// InferShape returns the target shape after checking the input's length.
func (op unpackOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, 1, in)
	if err != nil {
		return nil, err
	}
	if len(s[0]) != 1 || s[0][0] != op.total || op.offset+op.shape.TotalSize() > op.total {
		return nil, errors.Errorf("%v: input shape %v", op, s[0])
	}
	return op.shape.Clone(), nil
}

// Do copies the segment into a fresh tensor.
func (op unpackOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doUnpack[float64], doUnpack[float32])
}

func doUnpack[T opkit.Float](op unpackOp, vs []G.Value) (G.Value, error) {
	in, _, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	out, o := opkit.NewDense[T](want)
	copy(o, in[0][op.offset:])
	return out, nil
}

// WriteHash writes the description, which names every parameter.
func (op unpackOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }

// Hashcode hashes the description.
func (op unpackOp) Hashcode() uint32 { return opkit.Hashcode(op) }

// String describes the op with all its parameters.
func (op unpackOp) String() string {
	return fmt.Sprintf("mamba.unpack{at=%d,of=%d,shape=%v}", op.offset, op.total, []int(op.shape))
}
