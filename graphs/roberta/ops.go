package roberta

import (
	"fmt"
	"hash"
	"hash/fnv"

	"github.com/chewxy/hm"
	"github.com/pkg/errors"
	"gonum.org/v1/gonum/blas"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// This file holds the helpers the package's custom ops (attention, the
// first-token selection and the tied MLM decoder) share. They follow the
// recipe of GORGONIA.md: a fresh function type per call, every parameter in
// the hash, fresh output tensors, and shapes checked by hand.

// float is the set of element types the ops compute in.
type float interface{ float32 | float64 }

// opBase implements the Op methods that are the same for every op here;
// an op embeds it and supplies String (which must name every parameter).
type opBase struct{}

func (opBase) ReturnsPtr() bool     { return false }
func (opBase) CallsExtern() bool    { return false }
func (opBase) OverwritesInput() int { return -1 }

// fnType builds a fresh function type for an op whose inputs and output have
// the given ranks (Gorgonia's inference recycles the types it is given).
func fnType(ranks ...int) hm.Type {
	a := hm.TypeVariable('a')
	ts := make([]hm.Type, len(ranks))
	for i, r := range ranks {
		ts[i] = G.TensorType{Dims: r, Of: a}
	}
	return hm.NewFnType(ts...)
}

// writeHash writes the op's full description, which names every parameter.
func writeHash(h hash.Hash, op fmt.Stringer) { fmt.Fprint(h, op.String()) }

// hashOf returns the 32-bit FNV hash of the op's description.
func hashOf(op fmt.Stringer) uint32 {
	h := fnv.New32a()
	writeHash(h, op)
	return h.Sum32()
}

// shapesOf converts InferShape's arguments into shapes, checking the count.
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
		out[i] = s
	}
	return out, nil
}

// inputs returns the backing slices and shapes of vs, which must all be
// contiguous tensors of element type T.
func inputs[T float](op fmt.Stringer, vs []G.Value) ([][]T, []G.DimSizer, error) {
	data := make([][]T, len(vs))
	shapes := make([]G.DimSizer, len(vs))
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
			return nil, nil, errors.Errorf("%v: input %d has dtype %v, mixed with another dtype", op, i, d.Dtype())
		}
		data[i] = s
		shapes[i] = d.Shape().Clone()
	}
	return data, shapes, nil
}

// isFloat64 reports whether the op runs in float64 (true) or float32, and
// rejects other element types.
func isFloat64(op fmt.Stringer, vs []G.Value) (bool, error) {
	if len(vs) == 0 {
		return false, errors.Errorf("%v: no inputs", op)
	}
	switch dt := vs[0].Dtype(); dt {
	case tensor.Float64:
		return true, nil
	case tensor.Float32:
		return false, nil
	default:
		return false, errors.Errorf("%v: dtype %v is not supported; use float32 or float64", op, dt)
	}
}

// newDense allocates a zeroed tensor of the given shape.
func newDense[T float](shape tensor.Shape) (*tensor.Dense, []T) {
	data := make([]T, shape.TotalSize())
	return tensor.New(tensor.WithShape(shape.Clone()...), tensor.WithBacking(data)), data
}

func trans(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

// gemm computes c = alpha·op(a)·op(b) + beta·c for row-major operands with
// leading dimensions lda, ldb, ldc, through the BLAS Gorgonia uses, so
// gorgonia.Use speeds these ops too. Strided leading dimensions let the
// attention op address one head's columns of a [tokens, hidden] matrix.
func gemm[T float](tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	switch av := any(a).(type) {
	case []float64:
		G.WhichBLAS().Dgemm(trans(tA), trans(tB), m, n, k, float64(alpha), av, lda,
			any(b).([]float64), ldb, float64(beta), any(c).([]float64), ldc)
	case []float32:
		G.WhichBLAS().Sgemm(trans(tA), trans(tB), m, n, k, float32(alpha), av, lda,
			any(b).([]float32), ldb, float32(beta), any(c).([]float32), ldc)
	}
}
