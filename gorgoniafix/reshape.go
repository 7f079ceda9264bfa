package gorgoniafix

import (
	"fmt"
	"hash"
	"hash/fnv"

	"github.com/chewxy/hm"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Reshape returns a node holding a copy of x's value in the given shape. It
// replaces G.Reshape, whose output shares x's backing array: when the
// reshaped node is the left operand of an elementwise op, the TapeMachine
// lets that op work in place and so overwrites x itself (gorgonia#511; see
// TestUpstreamReshapeDefect). Our op always allocates, so x is never touched.
//
// One entry of shape may be -1; it is inferred from x's size. x must be a
// tensor node of known shape with at least one dimension, and shape must
// describe the same number of elements with at least one dimension. The
// gradient flows back through the same copying reshape, in x's shape.
func Reshape(x *G.Node, shape ...int) (*G.Node, error) {
	if x == nil {
		return nil, errors.New("gorgoniafix.Reshape: nil node")
	}
	from := x.Shape()
	if from.Dims() == 0 || from.TotalSize() <= 0 {
		return nil, errors.Errorf("gorgoniafix.Reshape: %v has shape %v; want a tensor of known shape", x.Name(), from)
	}
	to, err := resolveShape(from.TotalSize(), shape)
	if err != nil {
		return nil, errors.Wrapf(err, "gorgoniafix.Reshape: %v of shape %v", x.Name(), from)
	}
	op := &reshapeOp{from: from.Clone(), to: to}
	out, err := G.ApplyOp(op, x)
	if err != nil {
		return nil, errors.Wrapf(err, "gorgoniafix.Reshape: applying %v to %v", op, x.Name())
	}
	return out, nil
}

// resolveShape validates shape against size elements and fills in one -1.
func resolveShape(size int, shape []int) (tensor.Shape, error) {
	if len(shape) == 0 {
		return nil, errors.New("target shape has no dimensions")
	}
	to := make(tensor.Shape, len(shape))
	infer, prod := -1, 1
	for i, d := range shape {
		switch {
		case d == -1 && infer < 0:
			infer = i
			continue
		case d == -1:
			return nil, errors.Errorf("target shape %v has more than one -1", shape)
		case d <= 0:
			return nil, errors.Errorf("target shape %v has non-positive dimension %d", shape, d)
		}
		to[i] = d
		prod *= d
	}
	if infer >= 0 {
		if size%prod != 0 {
			return nil, errors.Errorf("cannot infer the -1 in %v from %d elements", shape, size)
		}
		to[infer] = size / prod
		prod = size
	}
	if prod != size {
		return nil, errors.Errorf("target shape %v has %d elements, want %d", shape, prod, size)
	}
	return to, nil
}

// sameShape compares shapes exactly; tensor.Shape.Eq treats (n), (n,1) and
// (1,n) as equal.
func sameShape(a, b tensor.Shape) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// reshapeOp is the copying reshape from shape from to shape to.
type reshapeOp struct {
	from, to tensor.Shape
}

// Arity is 1.
func (op *reshapeOp) Arity() int { return 1 }

// Type is TensorType{len(from)} → TensorType{len(to)}. It builds a fresh
// FnType on every call: a cached one poisons hm's pool.
func (op *reshapeOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	in := G.TensorType{Dims: op.from.Dims(), Of: a}
	out := G.TensorType{Dims: op.to.Dims(), Of: a}
	return hm.NewFnType(in, out)
}

// InferShape returns the target shape.
func (op *reshapeOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	if len(ds) != 1 {
		return nil, errors.Errorf("%v: want 1 input shape, got %d", op, len(ds))
	}
	if s, ok := ds[0].(tensor.Shape); ok && !sameShape(s, op.from) {
		return nil, errors.Errorf("%v: input shape %v, want %v", op, s, op.from)
	}
	return op.to.Clone(), nil
}

// Do returns a fresh dense copy of the input in the target shape.
func (op *reshapeOp) Do(vals ...G.Value) (G.Value, error) {
	if len(vals) != 1 {
		return nil, errors.Errorf("%v: want 1 input, got %d", op, len(vals))
	}
	in, ok := vals[0].(*tensor.Dense)
	if !ok {
		return nil, errors.Errorf("%v: input is %T, want *tensor.Dense", op, vals[0])
	}
	if !sameShape(in.Shape(), op.from) {
		return nil, errors.Errorf("%v: input shape %v, want %v", op, in.Shape(), op.from)
	}
	var out *tensor.Dense
	if in.IsView() {
		m, ok := in.Materialize().(*tensor.Dense)
		if !ok {
			return nil, errors.Errorf("%v: materialising a view gave %T", op, in.Materialize())
		}
		out = m
	} else {
		out = in.Clone().(*tensor.Dense)
	}
	if err := out.Reshape(op.to...); err != nil {
		return nil, errors.Wrapf(err, "%v", op)
	}
	if !sameShape(out.Shape(), op.to) {
		return nil, errors.Errorf("%v: produced shape %v", op, out.Shape())
	}
	return out, nil
}

// ReturnsPtr is false: the result never shares memory with the input.
func (op *reshapeOp) ReturnsPtr() bool { return false }

// CallsExtern is false.
func (op *reshapeOp) CallsExtern() bool { return false }

// OverwritesInput is -1: the input is never written.
func (op *reshapeOp) OverwritesInput() int { return -1 }

// WriteHash writes the op's name and both shapes.
func (op *reshapeOp) WriteHash(h hash.Hash) {
	fmt.Fprintf(h, "gorgoniafix.copyReshape from %v to %v", op.from, op.to)
}

// Hashcode is the FNV-1a hash of WriteHash.
func (op *reshapeOp) Hashcode() uint32 {
	h := fnv.New32a()
	op.WriteHash(h)
	return h.Sum32()
}

// String names the op.
func (op *reshapeOp) String() string { return fmt.Sprintf("CopyReshape%v→%v", op.from, op.to) }

// DiffWRT says the single input is differentiable.
func (op *reshapeOp) DiffWRT(inputs int) []bool {
	ret := make([]bool, inputs)
	if inputs > 0 {
		ret[0] = true
	}
	return ret
}

// SymDiff reshapes (copying) the output gradient back to the input's shape.
func (op *reshapeOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	if len(inputs) != 1 {
		return nil, errors.Errorf("%v: SymDiff wants 1 input, got %d", op, len(inputs))
	}
	if grad == nil {
		return nil, errors.Errorf("%v: SymDiff got a nil gradient", op)
	}
	back := &reshapeOp{from: op.to.Clone(), to: op.from.Clone()}
	dx, err := G.ApplyOp(back, grad)
	if err != nil {
		return nil, errors.Wrapf(err, "%v: gradient", op)
	}
	return G.Nodes{dx}, nil
}

var (
	_ G.Op   = (*reshapeOp)(nil)
	_ G.SDOp = (*reshapeOp)(nil)
)
