package mamba

import (
	"fmt"
	"hash"
	"hash/fnv"

	"github.com/chewxy/hm"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// float is the set of element types the ops of this package compute in.
type float interface{ float32 | float64 }

// fnType builds a fresh function type over tensors of the given ranks (the
// last is the output). Gorgonia recycles the types it is given, so a cached
// hm.FnType must never be handed out twice.
func fnType(ranks ...int) hm.Type {
	a := hm.TypeVariable('a')
	ts := make([]hm.Type, len(ranks))
	for i, r := range ranks {
		ts[i] = G.TensorType{Dims: r, Of: a}
	}
	return hm.NewFnType(ts...)
}

// hashOf returns the FNV-1a hash of an op's description, which must name
// every parameter of the op: Gorgonia merges nodes whose ops hash alike.
func hashOf(op fmt.Stringer) uint32 {
	h := fnv.New32a()
	fmt.Fprint(h, op.String())
	return h.Sum32()
}

// shapesOf converts the DimSizers that InferShape receives into shapes with
// no empty dimension.
func shapesOf(op fmt.Stringer, want int, in []G.DimSizer) ([]tensor.Shape, error) {
	if len(in) != want {
		return nil, errors.Errorf("%v: expected %d inputs, got %d", op, want, len(in))
	}
	out := make([]tensor.Shape, len(in))
	for i, d := range in {
		s, ok := d.(tensor.Shape)
		if !ok {
			return nil, errors.Errorf("%v: input %d has no shape (%T)", op, i, d)
		}
		for _, n := range s {
			if n <= 0 {
				return nil, errors.Errorf("%v: input %d has shape %v with an empty dimension", op, i, s)
			}
		}
		out[i] = s.Clone()
	}
	return out, nil
}

// dimSizers turns shapes back into the argument list of InferShape.
func dimSizers(s []tensor.Shape) []G.DimSizer {
	out := make([]G.DimSizer, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// isFloat64 reports whether the op runs in float64 (true) or float32
// (false), rejecting any other dtype or a mix of dtypes.
func isFloat64(op fmt.Stringer, vs []G.Value) (bool, error) {
	if len(vs) == 0 {
		return false, errors.Errorf("%v: no inputs", op)
	}
	dt := vs[0].Dtype()
	if dt != tensor.Float32 && dt != tensor.Float64 {
		return false, errors.Errorf("%v: dtype %v is not supported; use float32 or float64", op, dt)
	}
	for i, v := range vs {
		if v.Dtype() != dt {
			return false, errors.Errorf("%v: input %d is %v, input 0 is %v", op, i, v.Dtype(), dt)
		}
	}
	return dt == tensor.Float64, nil
}

// slices returns the contiguous backing arrays of the inputs as []T, with
// their shapes.
func slices[T float](op fmt.Stringer, vs []G.Value) ([][]T, []tensor.Shape, error) {
	data := make([][]T, len(vs))
	shapes := make([]tensor.Shape, len(vs))
	for i, v := range vs {
		d, ok := v.(*tensor.Dense)
		if !ok {
			return nil, nil, errors.Errorf("%v: input %d is a %T, want *tensor.Dense", op, i, v)
		}
		if d.IsView() {
			if d, ok = d.Materialize().(*tensor.Dense); !ok {
				return nil, nil, errors.Errorf("%v: input %d cannot be materialized", op, i)
			}
		}
		s, ok := d.Data().([]T)
		if !ok {
			return nil, nil, errors.Errorf("%v: input %d has dtype %v", op, i, d.Dtype())
		}
		data[i] = s
		shapes[i] = d.Shape().Clone()
	}
	return data, shapes, nil
}

// newDense allocates a zeroed tensor of the given shape.
func newDense[T float](shape tensor.Shape) (*tensor.Dense, []T) {
	data := make([]T, shape.TotalSize())
	return tensor.New(tensor.WithShape(shape.Clone()...), tensor.WithBacking(data)), data
}

// sameShape compares shapes exactly (tensor.Shape.Eq treats [n] and [n, 1]
// as equal).
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
	offset, total int
	shape         tensor.Shape
}

// Arity is 1.
func (op unpackOp) Arity() int { return 1 }

// Type maps a vector to a tensor of the target rank.
func (op unpackOp) Type() hm.Type { return fnType(1, len(op.shape)) }

// InferShape returns the target shape after checking the input's length.
func (op unpackOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(op, 1, in)
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
	f64, err := isFloat64(op, vs)
	if err != nil {
		return nil, err
	}
	if f64 {
		return doUnpack[float64](op, vs)
	}
	return doUnpack[float32](op, vs)
}

func doUnpack[T float](op unpackOp, vs []G.Value) (G.Value, error) {
	in, shapes, err := slices[T](op, vs)
	if err != nil {
		return nil, err
	}
	if _, err := op.InferShape(shapes[0]); err != nil {
		return nil, err
	}
	out, o := newDense[T](op.shape)
	copy(o, in[0][op.offset:])
	return out, nil
}

// ReturnsPtr is false: the result is a copy.
func (op unpackOp) ReturnsPtr() bool { return false }

// CallsExtern is false.
func (op unpackOp) CallsExtern() bool { return false }

// OverwritesInput is -1: the input is never written.
func (op unpackOp) OverwritesInput() int { return -1 }

// WriteHash writes the description, which names every parameter.
func (op unpackOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }

// Hashcode hashes the description.
func (op unpackOp) Hashcode() uint32 { return hashOf(op) }

// String describes the op with all its parameters.
func (op unpackOp) String() string {
	return fmt.Sprintf("mamba.unpack{at=%d,of=%d,shape=%v}", op.offset, op.total, []int(op.shape))
}
