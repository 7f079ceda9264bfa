package roberta

import (
	"fmt"
	"hash"
	"math"

	"github.com/chewxy/hm"
	"github.com/lilygo/lily/internal/opkit"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// selfAttention returns multi-head scaled dot-product attention computed as
// one node: for every sequence b and head h,
//
//	out[b, :, head h] = dropout(softmax(Q_bh·K_bhᵀ/√d + bias_b))·V_bh
//
// where q, k and v are [batch, tokens, heads·d] exactly as the query, key and
// value linears produce them (head h owns columns h·d … h·d+d−1, as Hugging
// Face's view/transpose splits them), and the output has the same layout, so
// no reshape or transpose appears in the graph. mask [batch, tokens] holds 1
// for real tokens and 0 for padding; like Hugging Face, the additive bias is
// (1 − mask)·min, with min the most negative finite value of the dtype, so a
// padding key gets probability 0 and a row whose keys are all padding
// becomes uniform (and, since the bias swamps the scores, has zero
// gradient with respect to q and k). drop is nil or a [batch, heads, tokens, tokens] mask
// multiplied into the probabilities (0 or 1/(1−p) per element: attention
// dropout). q, k and v are differentiated; mask and drop are not.
//
// The backward pass recomputes the probabilities from q and k instead of
// storing them, and yields the three gradients from one node.
func selfAttention(q, k, v, mask, drop *G.Node, heads int) (*G.Node, error) {
	if q.Dims() != 3 || heads < 1 {
		return nil, errors.Errorf("attention: need q, k, v as [batch, tokens, hidden] and heads ≥ 1, got %v and %d heads", q.Shape(), heads)
	}
	op := attnOp{heads: heads, dropout: drop != nil}
	in := G.Nodes{q, k, v, mask}
	if drop != nil {
		in = append(in, drop)
	}
	n, err := opkit.Apply(op, in...)
	return n, errors.Wrapf(err, "attention over %v with %d heads", q.Shape(), heads)
}

// attnOp is the forward attention; see selfAttention.
type attnOp struct {
	opkit.Base
	heads   int
	dropout bool
}

func (op attnOp) Arity() int {
	if op.dropout {
		return 5
	}
	return 4
}

func (op attnOp) Type() hm.Type {
	if op.dropout {
		return opkit.FnType(3, 3, 3, 2, 4, 3)
	}
	return opkit.FnType(3, 3, 3, 2, 3)
}

func (op attnOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op attnOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op attnOp) String() string {
	return fmt.Sprintf("roberta.attention{heads=%d,dropout=%t}", op.heads, op.dropout)
}

// checkShapes validates q, k, v, mask and the optional dropout mask.
func (op attnOp) checkShapes(s []tensor.Shape) error {
	q := s[0]
	if len(q) != 3 || !s[1].Eq(q) || !s[2].Eq(q) {
		return errors.Errorf("%v: q, k, v must share one [batch, tokens, hidden] shape, got %v, %v, %v", op, q, s[1], s[2])
	}
	if q[2]%op.heads != 0 {
		return errors.Errorf("%v: hidden size %d is not divisible by %d heads", op, q[2], op.heads)
	}
	if !s[3].Eq(q[:2]) {
		return errors.Errorf("%v: mask %v must be [batch, tokens] = %v", op, s[3], q[:2])
	}
	if op.dropout {
		if want := (tensor.Shape{q[0], op.heads, q[1], q[1]}); !s[4].Eq(want) {
			return errors.Errorf("%v: dropout mask %v, want %v", op, s[4], want)
		}
	}
	return nil
}

func (op attnOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, op.Arity(), in)
	if err != nil {
		return nil, err
	}
	if err := op.checkShapes(s); err != nil {
		return nil, err
	}
	return s[0].Clone(), nil
}

func (op attnOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doAttn[float64], doAttn[float32])
}

func doAttn[T opkit.Float](op attnOp, vs []G.Value) (G.Value, error) {
	d, _, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	out, o := opkit.Output[T](op.OutputSlot(), want, false) // every head writes its columns
	a := newAttnKernel[T](op, want, d)
	// Heads are independent: each goroutine takes a range of (sequence,
	// head) pairs with its own scratch buffers.
	opkit.Parallel(a.b*op.heads, 1, func(lo, hi int) {
		w := a.worker()
		for i := lo; i < hi; i++ {
			off := w.probs(i/op.heads, i%op.heads)
			opkit.Gemm(false, false, w.t, w.d, w.t, 1, w.pd, w.t, w.v[off:], w.hd, 0, o[off:], w.hd)
		}
	})
	return out, nil
}

func (op attnOp) DiffWRT(int) []bool {
	d := []bool{true, true, true, false}
	if op.dropout {
		d = append(d, false)
	}
	return d
}

// SymDiff computes the gradients of q, k and v in one node ([3, batch,
// tokens, hidden]) and picks them apart with three copying slices.
func (op attnOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if len(in) != op.Arity() {
		return nil, errors.Errorf("%v: expected %d inputs, got %d", op, op.Arity(), len(in))
	}
	all, err := opkit.Apply(attnGradOp{fwd: op}, append(append(G.Nodes{}, in...), grad)...)
	if err != nil {
		return nil, errors.Wrapf(err, "%v gradient", op)
	}
	grads := make(G.Nodes, len(in))
	for i := 0; i < 3; i++ {
		if grads[i], err = opkit.Apply(pickOp{part: i, rank: 3}, all); err != nil {
			return nil, errors.Wrapf(err, "%v gradient part %d", op, i)
		}
	}
	return grads, nil
}

// attnKernel holds one run's operands and the per-head scratch buffers.
type attnKernel[T opkit.Float] struct {
	q, k, v, mask, drop []T
	b, t, hd, d         int
	heads               int
	scale, min          T
	p, pd               []T  // probabilities before and after dropout (pd aliases p without dropout)
	fast                bool // float32: exponentials to float32 accuracy (opkit.Exp32)
}

func newAttnKernel[T opkit.Float](op attnOp, shape tensor.Shape, d [][]T) *attnKernel[T] {
	a := &attnKernel[T]{q: d[0], k: d[1], v: d[2], mask: d[3], b: shape[0], t: shape[1], hd: shape[2], heads: op.heads}
	a.d = a.hd / a.heads
	a.scale = T(1 / math.Sqrt(float64(a.d)))
	lowest := -math.MaxFloat64
	if _, ok := any(a.scale).(float32); ok {
		lowest = -math.MaxFloat32
		a.fast = true
	}
	a.min = T(lowest)
	if op.dropout {
		a.drop = d[4]
	}
	return a
}

// worker returns a copy of the kernel with its own scratch buffers, for one
// goroutine.
func (a *attnKernel[T]) worker() *attnKernel[T] {
	w := *a
	w.p = make([]T, a.t*a.t)
	w.pd = w.p
	if a.drop != nil {
		w.pd = make([]T, a.t*a.t)
	}
	return &w
}

// probs fills a.p with the attention probabilities of sequence bi, head h
// (and a.pd with them after dropout) and returns the offset of that head's
// first element in the [batch, tokens, hidden] operands.
func (a *attnKernel[T]) probs(bi, h int) int {
	t := a.t
	off := bi*t*a.hd + h*a.d
	opkit.Gemm(false, true, t, t, a.d, a.scale, a.q[off:], a.hd, a.k[off:], a.hd, 0, a.p, t)
	mask := a.mask[bi*t : (bi+1)*t]
	for i := 0; i < t; i++ {
		row := a.p[i*t : (i+1)*t]
		mx := T(math.Inf(-1))
		for j := range row {
			row[j] += (1 - mask[j]) * a.min
			mx = max(mx, row[j])
		}
		var sum float64
		if r32, ok := any(row).([]float32); ok && a.fast {
			sum = opkit.ExpShift32(r32, float32(mx))
		} else {
			for j, s := range row {
				e := math.Exp(float64(s - mx))
				row[j] = T(e)
				sum += e
			}
		}
		inv := 1 / sum
		for j := range row {
			row[j] = T(float64(row[j]) * inv)
		}
	}
	if a.drop != nil {
		dm := a.drop[(bi*a.heads+h)*t*t:][:t*t]
		for i, p := range a.p {
			a.pd[i] = p * dm[i]
		}
	}
	return off
}

// attnGradOp computes the gradients of attnOp's q, k and v from its inputs
// and the output gradient, stacked as [3, batch, tokens, hidden].
type attnGradOp struct {
	opkit.Base
	fwd attnOp
}

func (op attnGradOp) Arity() int { return op.fwd.Arity() + 1 }
func (op attnGradOp) Type() hm.Type {
	if op.fwd.dropout {
		return opkit.FnType(3, 3, 3, 2, 4, 3, 4)
	}
	return opkit.FnType(3, 3, 3, 2, 3, 4)
}
func (op attnGradOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op attnGradOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op attnGradOp) String() string        { return fmt.Sprintf("%v.grad", op.fwd) }
func (op attnGradOp) DiffWRT(n int) []bool  { return make([]bool, n) }
func (op attnGradOp) SymDiff(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) {
	return nil, errors.Errorf("%v: second-order gradients are not supported", op)
}

func (op attnGradOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, op.Arity(), in)
	if err != nil {
		return nil, err
	}
	if err := op.fwd.checkShapes(s); err != nil {
		return nil, err
	}
	if g := s[len(s)-1]; !g.Eq(s[0]) {
		return nil, errors.Errorf("%v: output gradient %v, want %v", op, g, s[0])
	}
	return append(tensor.Shape{3}, s[0]...), nil
}

func (op attnGradOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doAttnGrad[float64], doAttnGrad[float32])
}

func doAttnGrad[T opkit.Float](op attnGradOp, vs []G.Value) (G.Value, error) {
	d, _, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	out, all := opkit.Output[T](op.OutputSlot(), want, false) // every head writes its columns of dq, dk, dv
	a := newAttnKernel[T](op.fwd, want[1:], d[:len(d)-1])
	dout := d[len(d)-1]
	n := want[1:].TotalSize()
	dq, dk, dv := all[:n], all[n:2*n], all[2*n:]
	t := a.t
	opkit.Parallel(a.b*a.heads, 1, func(lo, hi int) {
		w := a.worker()
		ds := make([]T, t*t)
		for i := lo; i < hi; i++ {
			w.headGrad(i/a.heads, i%a.heads, dout, dq, dk, dv, ds)
		}
	})
	return out, nil
}

// headGrad writes the gradients of sequence bi, head h into dq, dk and dv,
// using ds [t, t] as scratch.
func (a *attnKernel[T]) headGrad(bi, h int, dout, dq, dk, dv, ds []T) {
	t := a.t
	off := a.probs(bi, h)
	// dV = P'ᵀ·dO and dP' = dO·Vᵀ.
	opkit.Gemm(true, false, t, a.d, t, 1, a.pd, t, dout[off:], a.hd, 0, dv[off:], a.hd)
	opkit.Gemm(false, true, t, t, a.d, 1, dout[off:], a.hd, a.v[off:], a.hd, 0, ds, t)
	if a.drop != nil {
		dm := a.drop[(bi*a.heads+h)*t*t:][:t*t]
		for i := range ds {
			ds[i] *= dm[i]
		}
	}
	// Softmax backward: dS = P⊙(dP − rowsum(P⊙dP)). A padding key's
	// score is swamped by the bias, so its derivative is zero; this
	// only matters in rows whose keys are all padding, where P is
	// uniform rather than zero.
	mask := a.mask[bi*t : (bi+1)*t]
	for i := 0; i < t; i++ {
		p, g := a.p[i*t:(i+1)*t], ds[i*t:(i+1)*t]
		var dot float64
		for j := range p {
			dot += float64(p[j]) * float64(g[j])
		}
		for j := range p {
			g[j] = p[j] * (g[j] - T(dot))
			if mask[j] != 1 {
				g[j] = 0
			}
		}
	}
	// S = scale·Q·Kᵀ: dQ = scale·dS·K, dK = scale·dSᵀ·Q.
	opkit.Gemm(false, false, t, a.d, t, a.scale, ds, t, a.k[off:], a.hd, 0, dq[off:], a.hd)
	opkit.Gemm(true, false, t, a.d, t, a.scale, ds, t, a.q[off:], a.hd, 0, dk[off:], a.hd)
}

// pickOp copies part `part` of a stacked tensor [n, ...] of rank rank+1 into
// a tensor of rank rank. It only appears inside gradients.
type pickOp struct {
	opkit.Base
	part, rank int
}

func (op pickOp) Arity() int            { return 1 }
func (op pickOp) Type() hm.Type         { return opkit.FnType(op.rank+1, op.rank) }
func (op pickOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op pickOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op pickOp) String() string {
	return fmt.Sprintf("roberta.pick{part=%d,rank=%d}", op.part, op.rank)
}
func (op pickOp) DiffWRT(int) []bool { return []bool{false} }
func (op pickOp) SymDiff(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) {
	return nil, errors.Errorf("%v: second-order gradients are not supported", op)
}

func (op pickOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, 1, in)
	if err != nil {
		return nil, err
	}
	if len(s[0]) != op.rank+1 || op.part < 0 || op.part >= s[0][0] {
		return nil, errors.Errorf("%v: cannot take part %d of %v", op, op.part, s[0])
	}
	return s[0][1:].Clone(), nil
}

func (op pickOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doPick[float64], doPick[float32])
}

func doPick[T opkit.Float](op pickOp, vs []G.Value) (G.Value, error) {
	d, _, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	out, o := opkit.Output[T](op.OutputSlot(), want, false) // a full copy
	n := len(o)
	copy(o, d[0][op.part*n:(op.part+1)*n])
	return out, nil
}
