package lilyop

import (
	"fmt"
	"hash"
	"math"
	"reflect"
	"runtime"
	"sync"

	"github.com/chewxy/hm"
	"github.com/lilygo/lily/gemm"
	"github.com/lilygo/lily/internal/opkit"
	"github.com/pkg/errors"
	"gonum.org/v1/gonum/blas"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// BFloat16 is the tensor.Dtype of frozen weights kept in bfloat16: a
// *tensor.Dense of this dtype holds a []gemm.BF16 (tensor.New(
// tensor.WithBacking([]gemm.BF16{...}), ...) builds one), and a Gorgonia node
// of this dtype can be the weight of MatMul, MatMulScaled and MatMulNT, the
// table of Embed, or the input of Widen. Such a node is never differentiated
// (its ops give it no gradient), so it must not be a learnable; activations,
// gradients and trainable parameters stay float32 or float64. Its Name is
// "BF16".
var BFloat16 = tensor.Dtype{Type: reflect.TypeOf(gemm.BF16(0))}

// NewBF16 returns a tensor of dtype BFloat16 with the given shape holding
// data (not copied); len(data) must be the shape's size.
func NewBF16(shape []int, data []gemm.BF16) (*tensor.Dense, error) {
	n := 1
	for _, d := range shape {
		if d <= 0 {
			return nil, errors.Errorf("lilyop.NewBF16: shape %v", shape)
		}
		n *= d
	}
	if len(shape) == 0 || n != len(data) {
		return nil, errors.Errorf("lilyop.NewBF16: shape %v needs %d elements, got %d", shape, n, len(data))
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data)), nil
}

// ToBF16 returns a new BFloat16 tensor holding t's values rounded to the
// nearest bfloat16 (ties to even, as PyTorch's .to(torch.bfloat16)); t is a
// float32, float64 or BFloat16 tensor (the last is copied). A float64 value
// is first rounded to float32, as PyTorch does.
func ToBF16(t *tensor.Dense) (*tensor.Dense, error) {
	if t == nil {
		return nil, errors.New("lilyop.ToBF16: nil tensor")
	}
	var out []gemm.BF16
	switch d := t.Data().(type) {
	case []float32:
		out = make([]gemm.BF16, len(d))
		for i, v := range d {
			out[i] = gemm.ToBF16(v)
		}
	case []float64:
		out = make([]gemm.BF16, len(d))
		for i, v := range d {
			out[i] = gemm.ToBF16(float32(v))
		}
	case []gemm.BF16:
		out = append([]gemm.BF16(nil), d...)
	default:
		return nil, errors.Errorf("lilyop.ToBF16: dtype %v cannot be converted to bfloat16", t.Dtype())
	}
	return tensor.New(tensor.WithShape(t.Shape().Clone()...), tensor.WithBacking(out)), nil
}

// FromBF16 returns a new tensor of dtype dt (tensor.Float32 or
// tensor.Float64) holding the values of the BFloat16 tensor t, exactly.
func FromBF16(t *tensor.Dense, dt tensor.Dtype) (*tensor.Dense, error) {
	if t == nil {
		return nil, errors.New("lilyop.FromBF16: nil tensor")
	}
	h, ok := t.Data().([]gemm.BF16)
	if !ok {
		return nil, errors.Errorf("lilyop.FromBF16: tensor has dtype %v, want %v", t.Dtype(), BFloat16)
	}
	shape := t.Shape().Clone()
	switch dt {
	case tensor.Float32:
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(widen[float32](h))), nil
	case tensor.Float64:
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(widen[float64](h))), nil
	}
	return nil, errors.Errorf("lilyop.FromBF16: dtype %v is not supported; use tensor.Float32 or tensor.Float64", dt)
}

// widen returns h's values as a new []T.
func widen[T opkit.Float](h []gemm.BF16) []T {
	out := make([]T, len(h))
	widenInto(out, h)
	return out
}

// widenInto writes h's values into dst (len(dst) == len(h)).
func widenInto[T opkit.Float](dst []T, h []gemm.BF16) {
	for i, v := range h {
		dst[i] = T(v.Float32())
	}
}

// halfData returns the []gemm.BF16 backing of a BFloat16 value, materialised
// when it is a view.
func halfData(op fmt.Stringer, i int, v G.Value) ([]gemm.BF16, tensor.Shape, error) {
	d, ok := v.(*tensor.Dense)
	if !ok {
		return nil, nil, errors.Errorf("%v: input %d is a %T, want *tensor.Dense", op, i, v)
	}
	if d.IsView() {
		m, ok := d.Materialize().(*tensor.Dense)
		if !ok {
			return nil, nil, errors.Errorf("%v: input %d cannot be materialized", op, i)
		}
		d = m
	}
	h, ok := d.Data().([]gemm.BF16)
	if !ok {
		return nil, nil, errors.Errorf("%v: input %d has dtype %v, want %v", op, i, d.Dtype(), BFloat16)
	}
	return h, d.Shape().Clone(), nil
}

// IsBF16 reports whether n is a node of dtype BFloat16.
func IsBF16(n *G.Node) bool { return n != nil && n.Dtype() == BFloat16 }

// Widen returns a node of dtype dt (tensor.Float32 or tensor.Float64)
// holding the values of the BFloat16 node x, converted exactly on every
// run: for a small frozen tensor stored in bfloat16 (a norm's gain, a bias)
// that feeds an op without a bfloat16 path. It is not differentiated (x is
// frozen). A node that is not BFloat16 is returned unchanged when it already
// has dtype dt, and is an error otherwise.
func Widen(x *G.Node, dt tensor.Dtype) (*G.Node, error) {
	if x == nil {
		return nil, errors.New("lilyop.Widen: nil node")
	}
	if dt != tensor.Float32 && dt != tensor.Float64 {
		return nil, errors.Errorf("lilyop.Widen: dtype %v is not supported; use tensor.Float32 or tensor.Float64", dt)
	}
	if x.Dtype() == dt {
		return x, nil
	}
	if !IsBF16(x) {
		return nil, errors.Errorf("lilyop.Widen: node %s has dtype %v, want %v or %v", x.Name(), x.Dtype(), BFloat16, dt)
	}
	op := widenOp{rank: x.Dims(), to: dt}
	n, err := opkit.Apply(op, x)
	return n, errors.Wrapf(err, "lilyop.Widen(%v)", x.Shape())
}

// widenOp converts a BFloat16 tensor to float32 or float64.
type widenOp struct {
	opkit.Base
	rank int
	to   tensor.Dtype
}

func (op widenOp) Arity() int { return 1 }
func (op widenOp) Type() hm.Type {
	return hm.NewFnType(G.TensorType{Dims: op.rank, Of: BFloat16}, G.TensorType{Dims: op.rank, Of: op.to})
}
func (op widenOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op widenOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op widenOp) String() string {
	return fmt.Sprintf("lilyop.Widen{rank=%d,to=%v}", op.rank, op.to)
}

func (op widenOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, 1, in)
	if err != nil {
		return nil, err
	}
	if len(s[0]) != op.rank {
		return nil, errors.Errorf("%v: input has shape %v", op, s[0])
	}
	return s[0], nil
}

func (op widenOp) Do(vs ...G.Value) (G.Value, error) {
	if len(vs) != 1 {
		return nil, errors.Errorf("%v: expected 1 input, got %d", op, len(vs))
	}
	h, shape, err := halfData(op, 0, vs[0])
	if err != nil {
		return nil, err
	}
	want, err := op.InferShape(shape)
	if err != nil {
		return nil, err
	}
	if op.to == tensor.Float64 {
		out, d := opkit.Output[float64](op.OutputSlot(), want, false)
		widenInto(d, h)
		return out, opkit.CheckOut(op, out, want)
	}
	out, d := opkit.Output[float32](op.OutputSlot(), want, false)
	widenInto(d, h)
	return out, opkit.CheckOut(op, out, want)
}

func (op widenOp) DiffWRT(int) []bool { return []bool{false} }

// SymDiff is never called: the input is not differentiated.
func (op widenOp) SymDiff(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) {
	return nil, errors.Errorf("%v: a bfloat16 tensor is frozen and has no gradient", op)
}

// blasTrans converts a transposition flag.
func blasTrans(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

// sgemmBF16Gemm is the mixed GEMM on package gemm, which widens b while
// packing it: no extra memory, the speed of gemm's Sgemm.
func sgemmBF16Gemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []gemm.BF16, ldb int, beta float32, c []float32, ldc int) {
	gemm.SgemmBF16(blasTrans(tA), blasTrans(tB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// convBuf recycles the float32 copies of bfloat16 matrices that
// sgemmBF16Convert makes.
var convBuf sync.Pool

// sgemmBF16Convert is the mixed GEMM on gorgonia.WhichBLAS's Sgemm: b (its
// stored rows, ldb apart) is widened into a float32 buffer for the call.
func sgemmBF16Convert(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []gemm.BF16, ldb int, beta float32, c []float32, ldc int) {
	rowsB, colsB := k, n
	if tB {
		rowsB, colsB = n, k
	}
	size := (rowsB-1)*ldb + colsB
	var buf []float32
	if p, ok := convBuf.Get().(*[]float32); ok && cap(*p) >= size {
		buf = (*p)[:size]
	} else {
		buf = make([]float32, size)
	}
	parallelRows(rowsB, colsB, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			widenInto(buf[r*ldb:r*ldb+colsB], b[r*ldb:r*ldb+colsB])
		}
	})
	G.WhichBLAS().Sgemm(blasTrans(tA), blasTrans(tB), m, n, k, alpha, a, lda, buf, ldb, beta, c, ldc)
	convBuf.Put(&buf)
}

// parallelRows runs f over [0, rows) in up to GOMAXPROCS contiguous ranges
// when the work (rows·cols elements) is large enough to pay for goroutines.
func parallelRows(rows, cols int, f func(r0, r1 int)) {
	p := runtime.GOMAXPROCS(0)
	if rows*cols < 1<<18 || p < 2 || rows < 2 {
		f(0, rows)
		return
	}
	p = min(p, rows)
	var wg sync.WaitGroup
	for i := 0; i < p; i++ {
		r0, r1 := i*rows/p, (i+1)*rows/p
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(r0, r1)
		}()
	}
	wg.Wait()
}

// smallRows is the most rows of x for which x·Wᵀ with a bfloat16 W runs as
// dot products (gemvBF16T) instead of a GEMM: a decoding step's product
// with a tied language-model head or the transposed weight of a backward
// pass, where a GEMM would transpose and pack all of W to use it once.
const smallRows = 4

// gemvBF16T computes c = alpha·a·bᵀ (beta 0: c is only written) for a
// float32 a [m, k] (row stride lda) with few rows and a bfloat16 b [n, k]
// (row stride ldb): each of b's rows is widened once and dotted with every
// row of a, the rows of b split across goroutines.
func gemvBF16T(m, n, k int, alpha float32, a []float32, lda int, b []gemm.BF16, ldb int, c []float32, ldc int) {
	parallelRows(n, m*k, func(j0, j1 int) {
		for j := j0; j < j1; j++ {
			w := b[j*ldb : j*ldb+k]
			for i := 0; i < m; i++ {
				c[i*ldc+j] = alpha * dotBF16(a[i*lda:i*lda+k], w)
			}
		}
	})
}

// dotBF16 returns Σ x[p]·w[p] over len(w) elements, in four interleaved
// float32 sums.
func dotBF16(x []float32, w []gemm.BF16) float32 {
	x = x[:len(w)]
	var s0, s1, s2, s3 float32
	p := 0
	for ; p+4 <= len(w); p += 4 {
		xs, ws := x[p:p+4:p+4], w[p:p+4:p+4]
		s0 += xs[0] * math.Float32frombits(uint32(ws[0])<<16)
		s1 += xs[1] * math.Float32frombits(uint32(ws[1])<<16)
		s2 += xs[2] * math.Float32frombits(uint32(ws[2])<<16)
		s3 += xs[3] * math.Float32frombits(uint32(ws[3])<<16)
	}
	for ; p < len(w); p++ {
		s0 += x[p] * math.Float32frombits(uint32(w[p])<<16)
	}
	return (s0 + s1) + (s2 + s3)
}
