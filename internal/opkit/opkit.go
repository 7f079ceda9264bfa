// Package opkit holds the pieces every custom Gorgonia op in this module
// needs, written once the way shared/GORGONIA.md prescribes: a fresh
// function type per Type call, a hash of the op's full description, input
// shapes and values checked by hand, fresh outputs whose shape is checked
// against the inferred one, and one GEMM through gorgonia.WhichBLAS() for
// row-major operands. An op built on it looks like
//
//	type myOp struct {
//		opkit.Base // ReturnsPtr, CallsExtern, OverwritesInput
//		rank int
//	}
//
//	func (op myOp) Type() hm.Type         { return opkit.FnType(op.rank, op.rank) }
//	func (op myOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
//	func (op myOp) Hashcode() uint32      { return opkit.Hashcode(op) }
//	func (op myOp) String() string        { return fmt.Sprintf("my{rank=%d}", op.rank) } // every parameter
//	func (op myOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
//		s, err := opkit.Shapes(op, 1, in)
//		...
//	}
//	func (op myOp) Do(vs ...G.Value) (G.Value, error) {
//		return opkit.Dispatch(op, vs, doMy[float64], doMy[float32])
//	}
//
//	func doMy[T opkit.Float](op myOp, vs []G.Value) (G.Value, error) {
//		in, shapes, want, err := opkit.Inputs[T](op, vs)
//		...
//		out, o := opkit.NewDense[T](want)
//		...
//		return out, opkit.CheckOut(op, out, want)
//	}
package opkit

import (
	"fmt"
	"hash"
	"hash/fnv"
	"slices"

	"github.com/chewxy/hm"
	"github.com/pkg/errors"
	"gonum.org/v1/gonum/blas"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Float is the set of element types the ops compute in.
type Float interface{ float32 | float64 }

// Base implements the gorgonia.Op methods that are the same for every op of
// this module: the result is a fresh tensor (ReturnsPtr false), computed in
// Go (CallsExtern false), and no input is ever written (OverwritesInput
// -1). An op embeds it and supplies the other methods. It also carries the
// op's output Slot when Apply created the node (see slot.go); the slot is
// not part of the op's description, so it never affects hashing.
type Base struct{ slot *Slot }

// ReturnsPtr is false: Do returns a fresh tensor, never a view of an input.
func (Base) ReturnsPtr() bool { return false }

// CallsExtern is false: the op runs in Go on the CPU.
func (Base) CallsExtern() bool { return false }

// OverwritesInput is -1: no input is modified.
func (Base) OverwritesInput() int { return -1 }

// FnType builds a fresh function type over tensors of the given ranks, the
// last being the output's, all of one element type. Gorgonia's type
// inference recycles the types it is given, so a cached hm.FnType must never
// be returned twice: call FnType on every Type call.
func FnType(ranks ...int) hm.Type {
	a := hm.TypeVariable('a')
	ts := make([]hm.Type, len(ranks))
	for i, r := range ranks {
		ts[i] = G.TensorType{Dims: r, Of: a}
	}
	return hm.NewFnType(ts...)
}

// WriteHash writes the op's description into h. The description must name
// every parameter of the op: Gorgonia merges nodes whose ops hash alike and
// whose inputs are the same.
func WriteHash(h hash.Hash, op fmt.Stringer) { fmt.Fprint(h, op.String()) }

// Hashcode returns the 32-bit FNV-1a hash of what WriteHash writes.
func Hashcode(op fmt.Stringer) uint32 {
	h := fnv.New32a()
	WriteHash(h, op)
	return h.Sum32()
}

// Shapes converts the arguments of InferShape into shapes (copies, which
// the caller may modify), checking that there are want of them, that each
// is a tensor.Shape and that none has an empty dimension.
func Shapes(op fmt.Stringer, want int, in []G.DimSizer) ([]tensor.Shape, error) {
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

// IsFloat64 reports whether the values, which must all have one element
// type, are float64 (true) or float32 (false); any other element type, a mix
// of types or no value at all is an error. Pass only the float inputs of an
// op that also takes ints.
func IsFloat64(op fmt.Stringer, vs []G.Value) (bool, error) {
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

// Dispatch runs an op's kernel in the inputs' element type: f64 when
// IsFloat64 says float64, f32 when float32; its errors are returned as they
// are. A Do method is then
//
//	return opkit.Dispatch(op, vs, doMyOp[float64], doMyOp[float32])
func Dispatch[O fmt.Stringer](op O, vs []G.Value, f64, f32 func(O, []G.Value) (G.Value, error)) (G.Value, error) {
	is64, err := IsFloat64(op, vs)
	if err != nil {
		return nil, err
	}
	if is64 {
		return f64(op, vs)
	}
	return f32(op, vs)
}

// DenseOf returns input i of an op (v) as a contiguous *tensor.Dense,
// materialising a view, for an op whose inputs have different dtypes.
func DenseOf(op fmt.Stringer, i int, v G.Value) (*tensor.Dense, error) { return dense(op, i, v) }

// dense returns input i as a contiguous *tensor.Dense, materialising a view.
func dense(op fmt.Stringer, i int, v G.Value) (*tensor.Dense, error) {
	d, ok := v.(*tensor.Dense)
	if !ok {
		return nil, errors.Errorf("%v: input %d is a %T, want *tensor.Dense", op, i, v)
	}
	if d.IsView() {
		m, ok := d.Materialize().(*tensor.Dense)
		if !ok {
			return nil, errors.Errorf("%v: input %d cannot be materialized", op, i)
		}
		d = m
	}
	return d, nil
}

// Slices returns the contiguous backing arrays of the values as []T, which
// Do may read but must not modify, with copies of their shapes. A value
// that is not a *tensor.Dense of element type T is an error naming its
// input index.
func Slices[T Float](op fmt.Stringer, vs []G.Value) ([][]T, []tensor.Shape, error) {
	data := make([][]T, len(vs))
	shapes := make([]tensor.Shape, len(vs))
	for i, v := range vs {
		d, err := dense(op, i, v)
		if err != nil {
			return nil, nil, err
		}
		s, ok := d.Data().([]T)
		if !ok {
			return nil, nil, errors.Errorf("%v: input %d has dtype %v, mixed with another dtype", op, i, d.Dtype())
		}
		data[i] = s
		shapes[i] = d.Shape().Clone()
	}
	return data, shapes, nil
}

// Inputs is Slices followed by op.InferShape on the shapes the inputs
// actually have: it returns the inputs' data and shapes and the shape Do's
// result must have, so that Do checks its inputs as graph construction did.
func Inputs[T Float](op G.Op, vs []G.Value) ([][]T, []tensor.Shape, tensor.Shape, error) {
	data, shapes, err := Slices[T](op, vs)
	if err != nil {
		return nil, nil, nil, err
	}
	want, err := op.InferShape(G.ShapesToDimSizers(shapes)...)
	if err != nil {
		return nil, nil, nil, err
	}
	return data, shapes, want, nil
}

// Ints returns the contiguous backing array of input i, which must be a
// *tensor.Dense of tensor.Int (token ids, targets), and a copy of its shape.
// Do may read the slice but must not modify it.
func Ints(op fmt.Stringer, i int, v G.Value) ([]int, tensor.Shape, error) {
	d, err := dense(op, i, v)
	if err != nil {
		return nil, nil, err
	}
	s, ok := d.Data().([]int)
	if !ok {
		return nil, nil, errors.Errorf("%v: input %d has dtype %v, want int", op, i, d.Dtype())
	}
	return s, d.Shape().Clone(), nil
}

// NewDense allocates a zeroed tensor of the given shape (copied) and returns
// it with its backing array.
func NewDense[T Float](shape tensor.Shape) (*tensor.Dense, []T) {
	data := make([]T, shape.TotalSize())
	return tensor.New(tensor.WithShape(shape.Clone()...), tensor.WithBacking(data)), data
}

// CheckOut verifies that a computed tensor has exactly the shape InferShape
// promised (unlike tensor.Shape.Eq, it tells [n] from [n, 1]); Gorgonia
// itself never checks this.
func CheckOut(op fmt.Stringer, got *tensor.Dense, want tensor.Shape) error {
	if !slices.Equal(got.Shape(), want) {
		return errors.Errorf("%v: computed shape %v, inferred %v", op, got.Shape(), want)
	}
	return nil
}

func transpose(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

// Gemm computes c = alpha·op(a)·op(b) + beta·c for row-major operands, where
// op(x) is x transposed when tA (tB) is set, op(a) is m×k, op(b) is k×n and
// lda, ldb, ldc are the row strides of a, b and c as stored. It runs through
// the BLAS Gorgonia currently uses (gorgonia.WhichBLAS), so gorgonia.Use of a
// faster BLAS speeds every op built on it. Row strides larger than the
// stored width address column blocks of a wider matrix (one attention head's
// columns of a [tokens, hidden] matrix).
func Gemm[T Float](tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	switch av := any(a).(type) {
	case []float64:
		G.WhichBLAS().Dgemm(transpose(tA), transpose(tB), m, n, k, float64(alpha), av, lda,
			any(b).([]float64), ldb, float64(beta), any(c).([]float64), ldc)
	case []float32:
		G.WhichBLAS().Sgemm(transpose(tA), transpose(tB), m, n, k, float32(alpha), av, lda,
			any(b).([]float32), ldb, float32(beta), any(c).([]float32), ldc)
	}
}
