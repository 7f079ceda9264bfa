package lilyop

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	"github.com/lilygo/lily/gemm"
	"github.com/lilygo/lily/internal/opkit"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// gemmMode names the three folded matrix products the ops need.
type gemmMode int

const (
	// nn: a[..., k]·b[k, n] → [..., n].
	nn gemmMode = iota
	// nt: a[..., n]·b[k, n]ᵀ → [..., k].
	nt
	// tn: a[..., k]ᵀ·b[..., n] → [k, n], summing over every leading row.
	tn
)

func (m gemmMode) String() string { return [...]string{"NN", "NT", "TN"}[m] }

// gemmOp is a matrix product in which every leading dimension of the
// operands of rank ≥ 2 is folded into rows, so the whole product is a single
// GEMM call. alpha scales the result. With half set (BFloat16 or Float16),
// b is a frozen matrix of that dtype (nn and nt only) and gets no gradient.
type gemmOp struct {
	opkit.Base
	mode   gemmMode
	alpha  float64
	aRank  int
	bRank  int
	outRnk int
	half   tensor.Dtype
}

// MatMul returns x·w for x of any rank ≥ 2 ([..., k]) and a matrix w [k, n];
// the result has shape [..., n]. All leading dimensions of x are folded into
// rows and multiplied with one GEMM through gorgonia.WhichBLAS(). Unlike
// composing gorgonia.Reshape and gorgonia.Mul, it never aliases its input.
//
// w may be a frozen BFloat16 or Float16 matrix with x float32 or float64:
// the product (and x's gradient g·wᵀ) then widens w's values exactly on the
// fly (gemm.SgemmBF16 or gemm.SgemmF16 for float32), so it equals the
// product with w's values in x's dtype up to summation order, and w gets no
// gradient.
func MatMul(x, w *G.Node) (*G.Node, error) {
	if x.Dims() < 2 || w.Dims() != 2 {
		return nil, errors.Errorf("lilyop.MatMul: need x of rank ≥ 2 and a matrix w, got %v and %v", x.Shape(), w.Shape())
	}
	return applyGemm(nn, 1, x, w)
}

// MatMulScaled returns alpha·x·w with the same folding as MatMul; the scale
// costs nothing extra because it is the GEMM's alpha.
func MatMulScaled(x, w *G.Node, alpha float64) (*G.Node, error) {
	if x.Dims() < 2 || w.Dims() != 2 {
		return nil, errors.Errorf("lilyop.MatMulScaled: need x of rank ≥ 2 and a matrix w, got %v and %v", x.Shape(), w.Shape())
	}
	return applyGemm(nn, alpha, x, w)
}

// MatMulNT returns x·wᵀ for x [..., k] and a matrix w [n, k], shape [..., n],
// without materialising the transpose: a language-model head tied to an
// embedding table [vocab, d] is MatMulNT(hidden, table). Like MatMul's, w
// may be a frozen BFloat16 or Float16 matrix.
func MatMulNT(x, w *G.Node) (*G.Node, error) {
	if x.Dims() < 2 || w.Dims() != 2 {
		return nil, errors.Errorf("lilyop.MatMulNT: need x of rank ≥ 2 and a matrix w, got %v and %v", x.Shape(), w.Shape())
	}
	return applyGemm(nt, 1, x, w)
}

func applyGemm(mode gemmMode, alpha float64, a, b *G.Node) (*G.Node, error) {
	op := gemmOp{mode: mode, alpha: alpha, aRank: a.Dims(), bRank: b.Dims()}
	if IsHalf(b) {
		op.half = b.Dtype()
	}
	if IsHalf(a) || (op.isHalf() && mode == tn) {
		return nil, errors.Errorf("%v: only the weight of x·w or x·wᵀ may be bfloat16 or float16, got %v and %v", op, a.Dtype(), b.Dtype())
	}
	switch mode {
	case nn, nt:
		op.outRnk = a.Dims()
	case tn:
		op.outRnk = 2
	}
	n, err := opkit.Apply(op, a, b)
	return n, errors.Wrapf(err, "applying %v to %v and %v", op, a.Shape(), b.Shape())
}

// isHalf reports whether b is a half-precision frozen matrix.
func (op gemmOp) isHalf() bool { return op.half != (tensor.Dtype{}) }

func (op gemmOp) Arity() int { return 2 }
func (op gemmOp) Type() hm.Type {
	if op.isHalf() {
		a := hm.TypeVariable('a')
		return hm.NewFnType(G.TensorType{Dims: op.aRank, Of: a}, G.TensorType{Dims: op.bRank, Of: op.half}, G.TensorType{Dims: op.outRnk, Of: a})
	}
	return opkit.FnType(op.aRank, op.bRank, op.outRnk)
}
func (op gemmOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op gemmOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op gemmOp) String() string {
	half := ""
	if op.isHalf() {
		half = "," + halfTag(op.half)
	}
	return fmt.Sprintf("lilyop.gemm{%v,alpha=%g,ranks=%d,%d%s}", op.mode, op.alpha, op.aRank, op.bRank, half)
}

func (op gemmOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, 2, in)
	if err != nil {
		return nil, err
	}
	a, b := s[0], s[1]
	if len(a) != op.aRank || len(b) != op.bRank || len(a) < 2 {
		return nil, errors.Errorf("%v: got shapes %v and %v", op, a, b)
	}
	last := a[len(a)-1]
	switch op.mode {
	case nn:
		if len(b) != 2 || b[0] != last {
			return nil, errors.Errorf("%v: cannot multiply %v by %v", op, a, b)
		}
		out := a.Clone()
		out[len(out)-1] = b[1]
		return out, nil
	case nt:
		if len(b) != 2 || b[1] != last {
			return nil, errors.Errorf("%v: cannot multiply %v by the transpose of %v", op, a, b)
		}
		out := a.Clone()
		out[len(out)-1] = b[0]
		return out, nil
	default:
		if rows(a) != rows(b) {
			return nil, errors.Errorf("%v: %v and %v have different row counts", op, a, b)
		}
		return tensor.Shape{last, b[len(b)-1]}, nil
	}
}

func (op gemmOp) Do(vs ...G.Value) (G.Value, error) {
	if len(vs) != 2 {
		return nil, errors.Errorf("%v: expected 2 inputs, got %d", op, len(vs))
	}
	if op.isHalf() {
		return doGemmHalf(op, vs)
	}
	return opkit.Dispatch(op, vs, doGemm[float64], doGemm[float32])
}

func doGemm[T opkit.Float](op gemmOp, vs []G.Value) (G.Value, error) {
	d, shapes, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	out, c := opkit.Output[T](op.OutputSlot(), want, false) // beta = 0 writes all of c
	a, b := d[0], d[1]
	sa, sb := shapes[0], shapes[1]
	k := sa[len(sa)-1]
	m := rows(sa)
	switch op.mode {
	case nn:
		n := sb[1]
		opkit.Gemm(false, false, m, n, k, T(op.alpha), a, k, b, n, 0, c, n)
	case nt:
		n := sb[0]
		opkit.Gemm(false, true, m, n, k, T(op.alpha), a, k, b, k, 0, c, n)
	case tn:
		n := sb[len(sb)-1]
		opkit.Gemm(true, false, k, n, m, T(op.alpha), a, k, b, n, 0, c, n)
	}
	return out, opkit.CheckOut(op, out, want)
}

func (op gemmOp) DiffWRT(int) []bool { return []bool{true, !op.isHalf()} }

// SymDiff differentiates x·w (nn) and x·wᵀ (nt). The tn mode appears only
// inside gradients and is not differentiated again.
func (op gemmOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if len(in) != 2 {
		return nil, errors.Errorf("%v: expected 2 inputs, got %d", op, len(in))
	}
	x, w := in[0], in[1]
	var dx, dw *G.Node
	var err error
	switch op.mode {
	case nn: // dx = g·wᵀ, dw = xᵀ·g
		if dx, err = applyGemm(nt, op.alpha, grad, w); err != nil || op.isHalf() {
			return G.Nodes{dx, nil}, err
		}
		dw, err = applyGemm(tn, op.alpha, x, grad)
	case nt: // dx = g·w, dw = gᵀ·x
		if dx, err = applyGemm(nn, op.alpha, grad, w); err != nil || op.isHalf() {
			return G.Nodes{dx, nil}, err
		}
		dw, err = applyGemm(tn, op.alpha, grad, x)
	default:
		return nil, errors.Errorf("%v: second-order gradients are not supported", op)
	}
	if err != nil {
		return nil, err
	}
	return G.Nodes{dx, dw}, nil
}

// rows returns the product of all dimensions of s but the last: the number
// of rows a folded GEMM sees.
func rows(s tensor.Shape) int {
	m := 1
	for _, d := range s[:len(s)-1] {
		m *= d
	}
	return m
}

// doGemmHalf is Do for a BFloat16 or Float16 b: float32 a through
// sgemmBF16 (this build's fastest mixed GEMM; dot products for x·Wᵀ with at
// most smallRows rows, see gemvBF16T) or gemm.SgemmF16, float64 a through
// Dgemm on b widened to float64 (for gradient checks; no model runs in
// float64 with half-precision weights for speed).
func doGemmHalf(op gemmOp, vs []G.Value) (G.Value, error) {
	h, sb, err := halfData(op, 1, vs[1])
	if err != nil {
		return nil, err
	}
	x := vs[0].Dtype()
	if x != tensor.Float32 && x != tensor.Float64 {
		return nil, errors.Errorf("%v: input 0 has dtype %v; use float32 or float64", op, x)
	}
	d, err := opkit.DenseOf(op, 0, vs[0])
	if err != nil {
		return nil, err
	}
	sa := d.Shape().Clone()
	want, err := op.InferShape(sa, sb)
	if err != nil {
		return nil, err
	}
	k := sa[len(sa)-1]
	m := rows(sa)
	n, ldb, tB := sb[1], sb[1], false
	if op.mode == nt {
		n, ldb, tB = sb[0], k, true
	}
	if x == tensor.Float64 {
		out, c := opkit.Output[float64](op.OutputSlot(), want, false)
		opkit.Gemm(false, tB, m, n, k, op.alpha, d.Data().([]float64), k, widen[float64](h), ldb, 0, c, n)
		return out, opkit.CheckOut(op, out, want)
	}
	out, c := opkit.Output[float32](op.OutputSlot(), want, false)
	switch {
	case h.f != nil:
		gemm.SgemmF16(blasTrans(false), blasTrans(tB), m, n, k, float32(op.alpha), d.Data().([]float32), k, h.f, ldb, 0, c, n)
	case tB && m <= smallRows:
		gemvBF16T(m, n, k, float32(op.alpha), d.Data().([]float32), k, h.bf, ldb, c, n)
	default:
		sgemmBF16(false, tB, m, n, k, float32(op.alpha), d.Data().([]float32), k, h.bf, ldb, 0, c, n)
	}
	return out, opkit.CheckOut(op, out, want)
}
