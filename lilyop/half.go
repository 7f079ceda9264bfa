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

// Float16 is the tensor.Dtype of frozen weights kept in IEEE float16, as
// BFloat16 is for bfloat16: a *tensor.Dense of this dtype holds a
// []gemm.F16, and a node of it may be used wherever a BFloat16 node may
// (the weight of MatMul, MatMulScaled and MatMulNT, the table of Embed, the
// input of Widen), under the same rule: it is frozen, never differentiated.
// Its Name is "F16".
var Float16 = tensor.Dtype{Type: reflect.TypeOf(gemm.F16(0))}

// NewBF16 returns a tensor of dtype BFloat16 with the given shape holding
// data (not copied); len(data) must be the shape's size.
func NewBF16(shape []int, data []gemm.BF16) (*tensor.Dense, error) {
	return newHalf("lilyop.NewBF16", shape, data)
}

// NewF16 returns a tensor of dtype Float16 with the given shape holding
// data (not copied); len(data) must be the shape's size.
func NewF16(shape []int, data []gemm.F16) (*tensor.Dense, error) {
	return newHalf("lilyop.NewF16", shape, data)
}

// newHalf is NewBF16 or NewF16, named fn in errors.
func newHalf[H half](fn string, shape []int, data []H) (*tensor.Dense, error) {
	n := 1
	for _, d := range shape {
		if d <= 0 {
			return nil, errors.Errorf("%s: shape %v", fn, shape)
		}
		n *= d
	}
	if len(shape) == 0 || n != len(data) {
		return nil, errors.Errorf("%s: shape %v needs %d elements, got %d", fn, shape, n, len(data))
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data)), nil
}

// ToBF16 returns a new BFloat16 tensor holding t's values rounded to the
// nearest bfloat16 (ties to even, as PyTorch's .to(torch.bfloat16)); t is a
// float32, float64, BFloat16 (copied) or Float16 tensor. A float64 value is
// first rounded to float32, as PyTorch does.
func ToBF16(t *tensor.Dense) (*tensor.Dense, error) {
	return toHalf("lilyop.ToBF16", t, gemm.ToBF16)
}

// ToF16 returns a new Float16 tensor holding t's values rounded to the
// nearest float16 (ties to even, magnitudes from 65520 up to infinity, as
// PyTorch's .to(torch.float16)); t is a float32, float64, Float16 (copied)
// or BFloat16 tensor. A float64 value is first rounded to float32.
func ToF16(t *tensor.Dense) (*tensor.Dense, error) {
	return toHalf("lilyop.ToF16", t, gemm.ToF16)
}

// toHalf is ToBF16 or ToF16, rounding with round.
func toHalf[H half](fn string, t *tensor.Dense, round func(float32) H) (*tensor.Dense, error) {
	if t == nil {
		return nil, errors.Errorf("%s: nil tensor", fn)
	}
	var out []H
	switch d := t.Data().(type) {
	case []float32:
		out = make([]H, len(d))
		for i, v := range d {
			out[i] = round(v)
		}
	case []float64:
		out = make([]H, len(d))
		for i, v := range d {
			out[i] = round(float32(v))
		}
	case []H:
		out = append([]H(nil), d...)
	case []gemm.BF16, []gemm.F16:
		w := widen[float32](halfOf(d))
		out = make([]H, len(w))
		for i, v := range w {
			out[i] = round(v)
		}
	default:
		return nil, errors.Errorf("%s: dtype %v cannot be converted", fn, t.Dtype())
	}
	return tensor.New(tensor.WithShape(t.Shape().Clone()...), tensor.WithBacking(out)), nil
}

// FromBF16 returns a new tensor of dtype dt (tensor.Float32 or
// tensor.Float64) holding the values of the BFloat16 tensor t, exactly.
func FromBF16(t *tensor.Dense, dt tensor.Dtype) (*tensor.Dense, error) {
	return fromHalf[gemm.BF16]("lilyop.FromBF16", t, BFloat16, dt)
}

// FromF16 returns a new tensor of dtype dt (tensor.Float32 or
// tensor.Float64) holding the values of the Float16 tensor t, exactly.
func FromF16(t *tensor.Dense, dt tensor.Dtype) (*tensor.Dense, error) {
	return fromHalf[gemm.F16]("lilyop.FromF16", t, Float16, dt)
}

// fromHalf is FromBF16 or FromF16 for t of dtype from.
func fromHalf[H half](fn string, t *tensor.Dense, from, dt tensor.Dtype) (*tensor.Dense, error) {
	if t == nil {
		return nil, errors.Errorf("%s: nil tensor", fn)
	}
	h, ok := t.Data().([]H)
	if !ok {
		return nil, errors.Errorf("%s: tensor has dtype %v, want %v", fn, t.Dtype(), from)
	}
	shape := t.Shape().Clone()
	switch dt {
	case tensor.Float32:
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(widen[float32](halfOf(h)))), nil
	case tensor.Float64:
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(widen[float64](halfOf(h)))), nil
	}
	return nil, errors.Errorf("%s: dtype %v is not supported; use tensor.Float32 or tensor.Float64", fn, dt)
}

// halfOf wraps a []gemm.BF16 or []gemm.F16 (any other value gives an empty
// halfVals).
func halfOf(d any) halfVals {
	switch h := d.(type) {
	case []gemm.BF16:
		return halfVals{bf: h}
	case []gemm.F16:
		return halfVals{f: h}
	}
	return halfVals{}
}

// half is a half-precision element type of a frozen tensor.
type half interface{ gemm.BF16 | gemm.F16 }

// widen returns h's values as a new []T.
func widen[T opkit.Float](h halfVals) []T {
	out := make([]T, h.len())
	widenVals(out, h, 0)
	return out
}

// widenInto writes h's values into dst (len(dst) == len(h)). The type switch
// is made once per call, so the loops convert with concrete, inlined code.
func widenInto[T opkit.Float, H half](dst []T, h []H) {
	switch s := any(h).(type) {
	case []gemm.BF16:
		for i, v := range s {
			dst[i] = T(v.Float32())
		}
	case []gemm.F16:
		for i, v := range s {
			dst[i] = T(v.Float32())
		}
	}
}

// halfVals is the backing of a BFloat16 (bf set) or Float16 (f set)
// tensor.
type halfVals struct {
	bf []gemm.BF16
	f  []gemm.F16
}

// len is the number of values.
func (h halfVals) len() int { return len(h.bf) + len(h.f) }

// widenVals writes the values h[off : off+len(dst)] into dst.
func widenVals[T opkit.Float](dst []T, h halfVals, off int) {
	if h.f != nil {
		widenInto(dst, h.f[off:off+len(dst)])
		return
	}
	widenInto(dst, h.bf[off:off+len(dst)])
}

// halfData returns the backing of a BFloat16 or Float16 value, materialised
// when it is a view.
func halfData(op fmt.Stringer, i int, v G.Value) (halfVals, tensor.Shape, error) {
	d, ok := v.(*tensor.Dense)
	if !ok {
		return halfVals{}, nil, errors.Errorf("%v: input %d is a %T, want *tensor.Dense", op, i, v)
	}
	if d.IsView() {
		m, ok := d.Materialize().(*tensor.Dense)
		if !ok {
			return halfVals{}, nil, errors.Errorf("%v: input %d cannot be materialized", op, i)
		}
		d = m
	}
	if h := halfOf(d.Data()); h.bf != nil || h.f != nil {
		return h, d.Shape().Clone(), nil
	}
	return halfVals{}, nil, errors.Errorf("%v: input %d has dtype %v, want %v or %v", op, i, d.Dtype(), BFloat16, Float16)
}

// IsBF16 reports whether n is a node of dtype BFloat16.
func IsBF16(n *G.Node) bool { return n != nil && n.Dtype() == BFloat16 }

// IsF16 reports whether n is a node of dtype Float16.
func IsF16(n *G.Node) bool { return n != nil && n.Dtype() == Float16 }

// IsHalf reports whether n is a node of a half-precision frozen dtype,
// BFloat16 or Float16.
func IsHalf(n *G.Node) bool { return n != nil && IsHalfDtype(n.Dtype()) }

// IsHalfDtype reports whether dt is BFloat16 or Float16.
func IsHalfDtype(dt tensor.Dtype) bool { return dt == BFloat16 || dt == Float16 }

// halfTag names a half dtype in an op's String (and so its hash).
func halfTag(dt tensor.Dtype) string {
	if dt == Float16 {
		return "f16"
	}
	return "bf16"
}

// Widen returns a node of dtype dt (tensor.Float32 or tensor.Float64)
// holding the values of the BFloat16 or Float16 node x, converted exactly
// on every run: for a small frozen tensor stored in half precision (a
// norm's gain, a bias) that feeds an op without a half-precision path. It
// is not differentiated (x is frozen). A node that is not half precision is
// returned unchanged when it already has dtype dt, and is an error
// otherwise.
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
	if !IsHalf(x) {
		return nil, errors.Errorf("lilyop.Widen: node %s has dtype %v, want %v, %v or %v", x.Name(), x.Dtype(), BFloat16, Float16, dt)
	}
	op := widenOp{rank: x.Dims(), from: x.Dtype(), to: dt}
	n, err := opkit.Apply(op, x)
	return n, errors.Wrapf(err, "lilyop.Widen(%v)", x.Shape())
}

// widenOp converts a BFloat16 or Float16 tensor to float32 or float64.
type widenOp struct {
	opkit.Base
	rank     int
	from, to tensor.Dtype
}

func (op widenOp) Arity() int { return 1 }
func (op widenOp) Type() hm.Type {
	return hm.NewFnType(G.TensorType{Dims: op.rank, Of: op.from}, G.TensorType{Dims: op.rank, Of: op.to})
}
func (op widenOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op widenOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op widenOp) String() string {
	if op.from == Float16 {
		return fmt.Sprintf("lilyop.Widen{rank=%d,f16,to=%v}", op.rank, op.to)
	}
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
		widenVals(d, h, 0)
		return out, opkit.CheckOut(op, out, want)
	}
	out, d := opkit.Output[float32](op.OutputSlot(), want, false)
	widenVals(d, h, 0)
	return out, opkit.CheckOut(op, out, want)
}

func (op widenOp) DiffWRT(int) []bool { return []bool{false} }

// SymDiff is never called: the input is not differentiated.
func (op widenOp) SymDiff(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) {
	return nil, errors.Errorf("%v: a half-precision tensor is frozen and has no gradient", op)
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
