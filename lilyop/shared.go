package lilyop

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	"github.com/lilygo/lily/internal/opkit"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// MatMulShared returns x·w_i for every matrix w_i [k, n_i], for x of any
// rank ≥ 2 ([..., k]); result i has shape [..., n_i]. All the products are
// one GEMM of x with the matrices side by side ([k, Σn_i]), so x is read
// once, and the backward pass is one GEMM for x's gradient (summing every
// product's contribution, with no separate addition) and one for the
// matrices' gradients. Adapters whose down-projections read the same input
// (Lily's or LoRA's A on query, key and value of one layer) use it.
func MatMulShared(x *G.Node, ws ...*G.Node) (G.Nodes, error) {
	if x == nil || x.Dims() < 2 || len(ws) == 0 {
		return nil, errors.New("lilyop.MatMulShared: need x of rank ≥ 2 and at least one matrix")
	}
	k := x.Shape()[x.Dims()-1]
	widths := make([]int, len(ws))
	for i, w := range ws {
		if w == nil || w.Dims() != 2 || w.Shape()[0] != k {
			return nil, errors.Errorf("lilyop.MatMulShared: matrix %d does not fit x %v", i, x.Shape())
		}
		widths[i] = w.Shape()[1]
	}
	if len(ws) == 1 {
		h, err := MatMul(x, ws[0])
		return G.Nodes{h}, err
	}
	all, err := opkit.Apply(catGemmOp{m: len(ws), rank: x.Dims()}, append(G.Nodes{x}, ws...)...)
	if err != nil {
		return nil, errors.Wrapf(err, "lilyop.MatMulShared(%v)", x.Shape())
	}
	return splitColumns(all, widths)
}

// splitColumns returns consecutive column blocks of the given widths of
// t [..., Σwidths].
func splitColumns(t *G.Node, widths []int) (G.Nodes, error) {
	out := make(G.Nodes, len(widths))
	off := 0
	for i, n := range widths {
		var err error
		if out[i], err = opkit.Apply(colsOp{off: off, n: n, total: t.Shape()[t.Dims()-1], rank: t.Dims()}, t); err != nil {
			return nil, errors.Wrapf(err, "column block %d", i)
		}
		off += n
	}
	return out, nil
}

// catGemmOp is (x, w_1, …, w_m) → x·[w_1|…|w_m] [..., Σn]; with dx set it
// is (g [..., Σn], w_1, …, w_m) → g·[w_1|…|w_m]ᵀ [..., k].
type catGemmOp struct {
	opkit.Base
	m, rank int
	dx      bool
}

func (op catGemmOp) Arity() int { return 1 + op.m }
func (op catGemmOp) Type() hm.Type {
	ranks := []int{op.rank}
	for i := 0; i < op.m; i++ {
		ranks = append(ranks, 2)
	}
	return opkit.FnType(append(ranks, op.rank)...)
}
func (op catGemmOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op catGemmOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op catGemmOp) String() string {
	return fmt.Sprintf("lilyop.catGemm{m=%d,rank=%d,dx=%t}", op.m, op.rank, op.dx)
}

func (op catGemmOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, op.Arity(), in)
	if err != nil {
		return nil, err
	}
	a := s[0]
	if len(a) != op.rank || op.rank < 2 {
		return nil, errors.Errorf("%v: input %v", op, a)
	}
	k, total := s[1][0], 0
	for i, w := range s[1:] {
		if len(w) != 2 || w[0] != k {
			return nil, errors.Errorf("%v: matrix %d is %v, matrix 0 %v", op, i, w, s[1])
		}
		total += w[1]
	}
	out := a.Clone()
	if op.dx {
		if a[len(a)-1] != total {
			return nil, errors.Errorf("%v: gradient %v, want %d columns", op, a, total)
		}
		out[len(out)-1] = k
		return out, nil
	}
	if a[len(a)-1] != k {
		return nil, errors.Errorf("%v: cannot multiply %v by [%d, %d]", op, a, k, total)
	}
	out[len(out)-1] = total
	return out, nil
}

func (op catGemmOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doCatGemm[float64], doCatGemm[float32])
}

func doCatGemm[T opkit.Float](op catGemmOp, vs []G.Value) (G.Value, error) {
	d, shapes, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	k := shapes[1][0]
	total := 0
	for _, s := range shapes[1:] {
		total += s[1]
	}
	// The matrices side by side, [k, total].
	cat := make([]T, k*total)
	off := 0
	for i, s := range shapes[1:] {
		n, w := s[1], d[1+i]
		for r := 0; r < k; r++ {
			copy(cat[r*total+off:r*total+off+n], w[r*n:(r+1)*n])
		}
		off += n
	}
	out, c := opkit.Output[T](op.OutputSlot(), want, false) // beta = 0 writes all of c
	m := rows(shapes[0])
	if op.dx {
		opkit.Gemm(false, true, m, k, total, 1, d[0], total, cat, total, 0, c, k)
	} else {
		opkit.Gemm(false, false, m, total, k, 1, d[0], k, cat, total, 0, c, total)
	}
	return out, opkit.CheckOut(op, out, want)
}

func (op catGemmOp) DiffWRT(n int) []bool {
	d := make([]bool, n)
	if !op.dx {
		for i := range d {
			d[i] = true
		}
	}
	return d
}

// SymDiff: dx = g·[w_1|…|w_m]ᵀ as one GEMM, and the matrices' gradients
// are the column blocks of xᵀ·g, also one GEMM.
func (op catGemmOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if op.dx || len(in) != op.Arity() {
		return nil, errors.Errorf("%v: second-order gradients are not supported", op)
	}
	x, ws := in[0], in[1:]
	dop := op
	dop.dx = true
	dx, err := opkit.Apply(dop, append(G.Nodes{grad}, ws...)...)
	if err != nil {
		return nil, errors.Wrapf(err, "%v: input gradient", op)
	}
	dcat, err := applyGemm(tn, 1, x, grad)
	if err != nil {
		return nil, err
	}
	widths := make([]int, len(ws))
	for i, w := range ws {
		widths[i] = w.Shape()[1]
	}
	dws, err := splitColumns(dcat, widths)
	if err != nil {
		return nil, err
	}
	return append(G.Nodes{dx}, dws...), nil
}

// colsOp copies columns [off, off+n) of x [..., total]; with place set it
// is its gradient, putting g [..., n] into those columns of a zero
// [..., total] tensor.
type colsOp struct {
	opkit.Base
	off, n, total, rank int
	place               bool
}

func (op colsOp) Arity() int            { return 1 }
func (op colsOp) Type() hm.Type         { return opkit.FnType(op.rank, op.rank) }
func (op colsOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op colsOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op colsOp) String() string {
	return fmt.Sprintf("lilyop.cols{off=%d,n=%d,total=%d,rank=%d,place=%t}", op.off, op.n, op.total, op.rank, op.place)
}
func (op colsOp) DiffWRT(int) []bool { return []bool{!op.place} }

func (op colsOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if op.place || len(in) != 1 {
		return nil, errors.Errorf("%v: second-order gradients are not supported", op)
	}
	p := op
	p.place = true
	g, err := opkit.Apply(p, grad)
	return G.Nodes{g}, errors.Wrapf(err, "%v gradient", op)
}

func (op colsOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, 1, in)
	if err != nil {
		return nil, err
	}
	x := s[0]
	from, to := op.total, op.n
	if op.place {
		from, to = op.n, op.total
	}
	if len(x) != op.rank || x[len(x)-1] != from || op.off < 0 || op.off+op.n > op.total {
		return nil, errors.Errorf("%v: input %v", op, x)
	}
	out := x.Clone()
	out[len(out)-1] = to
	return out, nil
}

func (op colsOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doCols[float64], doCols[float32])
}

func doCols[T opkit.Float](op colsOp, vs []G.Value) (G.Value, error) {
	d, shapes, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	out, o := opkit.Output[T](op.OutputSlot(), want, op.place) // place leaves other columns zero
	x, m := d[0], rows(shapes[0])
	for r := 0; r < m; r++ {
		if op.place {
			copy(o[r*op.total+op.off:][:op.n], x[r*op.n:][:op.n])
		} else {
			copy(o[r*op.n:][:op.n], x[r*op.total+op.off:][:op.n])
		}
	}
	return out, opkit.CheckOut(op, out, want)
}
