package lilyop

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

// float is the set of element types the ops compute in.
type float interface{ float32 | float64 }

// fnType builds a fresh function type for an op whose inputs and output have
// the given ranks. Gorgonia's type inference recycles the types it is given,
// so a cached hm.FnType must never be returned twice.
func fnType(ranks ...int) hm.Type {
	a := hm.TypeVariable('a')
	ts := make([]hm.Type, len(ranks))
	for i, r := range ranks {
		ts[i] = G.TensorType{Dims: r, Of: a}
	}
	return hm.NewFnType(ts...)
}

// hashOf returns the 32-bit FNV hash of what w writes.
func hashOf(w interface{ WriteHash(hash.Hash) }) uint32 {
	h := fnv.New32a()
	w.WriteHash(h)
	return h.Sum32()
}

// writeHash writes an op's full description (which must include every
// parameter) into h, so that ops differing in any parameter hash apart.
func writeHash(h hash.Hash, s fmt.Stringer) {
	fmt.Fprint(h, s.String())
}

// rows returns the product of all dimensions of s but the last.
func rows(s tensor.Shape) int {
	m := 1
	for _, d := range s[:len(s)-1] {
		m *= d
	}
	return m
}

// shapesOf converts the DimSizers that InferShape receives into shapes.
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

// dense returns v as a contiguous *tensor.Dense.
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

// slices extracts the backing arrays of the inputs as []T, checking that all
// share the element type T.
func slices[T float](op fmt.Stringer, vs []G.Value) ([][]T, []tensor.Shape, error) {
	out := make([][]T, len(vs))
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
		out[i] = s
		shapes[i] = d.Shape().Clone()
	}
	return out, shapes, nil
}

// newDense allocates a zeroed tensor of the given shape.
func newDense[T float](shape tensor.Shape) (*tensor.Dense, []T) {
	data := make([]T, shape.TotalSize())
	return tensor.New(tensor.WithShape(shape.Clone()...), tensor.WithBacking(data)), data
}

// dtypeOf reports the element type of the first input.
func dtypeOf(op fmt.Stringer, vs []G.Value) (tensor.Dtype, error) {
	if len(vs) == 0 {
		return tensor.Dtype{}, errors.Errorf("%v: no inputs", op)
	}
	dt := vs[0].Dtype()
	if dt != tensor.Float32 && dt != tensor.Float64 {
		return dt, errors.Errorf("%v: dtype %v is not supported; use float32 or float64", op, dt)
	}
	return dt, nil
}

// trans maps a bool to a BLAS transpose flag.
func trans(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

// gemm computes c = alpha·op(a)·op(b) + beta·c for row-major operands through
// the BLAS that Gorgonia currently uses, so gorgonia.Use speeds these ops too.
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

// checkOut verifies that a computed tensor has the shape InferShape promised;
// Gorgonia itself never checks this.
func checkOut(op fmt.Stringer, got *tensor.Dense, want tensor.Shape) error {
	if !got.Shape().Eq(want) {
		return errors.Errorf("%v: computed shape %v, inferred %v", op, got.Shape(), want)
	}
	return nil
}
