package llama

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

// attention returns causal grouped-query self-attention of the rotated
// queries q [batch, seq, heads·headDim] over keys and values k, v
// [batch, seq, kvHeads·headDim]: query head h reads key/value head
// h/(heads/kvHeads), and position t attends to positions ≤ t. The result,
// [batch, seq, heads·headDim], holds the heads side by side, ready for
// o_proj. The backward pass recomputes the probabilities and produces the
// three gradients in one node.
func attention(q, k, v *G.Node, heads, kvHeads, headDim int) (*G.Node, error) {
	op := attnOp{heads: heads, kvHeads: kvHeads, headDim: headDim}
	n, err := G.ApplyOp(op, q, k, v)
	return n, errors.Wrapf(err, "applying %v", op)
}

// cachedAttention is attention for incremental decoding: it first stores
// k and v at the positions pos (an int node [seq] of consecutive positions
// starting at most at the number already cached) in cache, then lets each
// query at position p attend to every cached position ≤ p. It is not
// differentiable.
func cachedAttention(q, k, v, pos *G.Node, heads, kvHeads, headDim int, cache *kvCache) (*G.Node, error) {
	op := attnOp{heads: heads, kvHeads: kvHeads, headDim: headDim, cache: cache}
	n, err := G.ApplyOp(op, q, k, v, pos)
	return n, errors.Wrapf(err, "applying %v", op)
}

// kvCache holds the keys and values of one layer for decoding,
// [batch, maxSeq, width] each, and how many positions are valid.
type kvCache struct {
	batch, maxSeq, width int
	k, v                 any // []float32 or []float64, allocated on first use
	filled               int
}

// buffers returns the cache's arrays as []T, allocating them on first use.
func buffers[T opkit.Float](c *kvCache) (k, v []T) {
	k, ok := c.k.([]T)
	if !ok {
		n := c.batch * c.maxSeq * c.width
		k, v = make([]T, n), make([]T, n)
		c.k, c.v, c.filled = k, v, 0
		return k, v
	}
	return k, c.v.([]T)
}

// attnOp is the attention forward pass, its packed gradient (grad set:
// (q, k, v, dOut) → [batch, seq, (heads + 2·kvHeads)·headDim] holding dq,
// dk and dv side by side), or the cached forward pass (cache set).
type attnOp struct {
	opkit.Base
	heads, kvHeads, headDim int
	grad                    bool
	cache                   *kvCache
}

func (op attnOp) Arity() int {
	if op.grad || op.cache != nil {
		return 4
	}
	return 3
}

func (op attnOp) Type() hm.Type {
	t := floatTensor(3)
	switch {
	case op.cache != nil:
		return hm.NewFnType(t, t, t, intTensor(1), t)
	case op.grad:
		return hm.NewFnType(t, t, t, t, t)
	}
	return hm.NewFnType(t, t, t, t)
}

func (op attnOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op attnOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op attnOp) String() string {
	kind := "CausalAttention"
	switch {
	case op.grad:
		kind = "CausalAttentionGrad"
	case op.cache != nil:
		kind = fmt.Sprintf("CachedAttention[%p]", op.cache)
	}
	return fmt.Sprintf("llama.%s{heads=%d,kv=%d,headDim=%d}", kind, op.heads, op.kvHeads, op.headDim)
}

func (op attnOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, op.Arity(), in)
	if err != nil {
		return nil, err
	}
	q, k, v := s[0], s[1], s[2]
	wq, wk := op.heads*op.headDim, op.kvHeads*op.headDim
	if len(q) != 3 || q[2] != wq || !k.Eq(tensor.Shape{q[0], q[1], wk}) || !v.Eq(k) {
		return nil, errors.Errorf("%v: got q %v, k %v, v %v", op, q, k, v)
	}
	switch {
	case op.cache != nil:
		if !s[3].Eq(tensor.Shape{q[1]}) || q[0] != op.cache.batch || k[2] != op.cache.width {
			return nil, errors.Errorf("%v: positions %v or batch %d do not fit the cache", op, s[3], q[0])
		}
	case op.grad:
		if !s[3].Eq(q) {
			return nil, errors.Errorf("%v: output gradient %v, want %v", op, s[3], q)
		}
		return tensor.Shape{q[0], q[1], wq + 2*wk}, nil
	}
	return q.Clone(), nil
}

func (op attnOp) Do(vs ...G.Value) (G.Value, error) {
	if len(vs) != op.Arity() {
		return nil, errors.Errorf("%v: expected %d inputs, got %d", op, op.Arity(), len(vs))
	}
	nf := 3
	if op.grad {
		nf = 4
	}
	f64, err := opkit.IsFloat64(op, vs[:nf])
	if err != nil {
		return nil, err
	}
	if f64 {
		return doAttn[float64](op, vs)
	}
	return doAttn[float32](op, vs)
}

// causalSoftmax turns each row t of the scores s [rows, n] into
// probabilities over the columns ≤ off + t; later columns get zero.
func causalSoftmax[T opkit.Float](s []T, rows, n, off int) {
	for t := 0; t < rows; t++ {
		row := s[t*n : (t+1)*n]
		lim := off + t + 1
		mx := row[0]
		for _, v := range row[:lim] {
			if v > mx {
				mx = v
			}
		}
		var z float64
		for j, v := range row[:lim] {
			e := math.Exp(float64(v - mx))
			row[j] = T(e)
			z += e
		}
		inv := T(1 / z)
		for j := range row[:lim] {
			row[j] *= inv
		}
		for j := lim; j < n; j++ {
			row[j] = 0
		}
	}
}

func doAttn[T opkit.Float](op attnOp, vs []G.Value) (G.Value, error) {
	nf := 3
	if op.grad {
		nf = 4
	}
	in, ss, err := opkit.Slices[T](op, vs[:nf])
	if err != nil {
		return nil, err
	}
	var pos []int
	if op.cache != nil {
		var ps tensor.Shape
		if pos, ps, err = opkit.Ints(op, 3, vs[3]); err != nil {
			return nil, err
		}
		ss = append(ss, ps)
	}
	want, err := op.InferShape(G.ShapesToDimSizers(ss)...)
	if err != nil {
		return nil, err
	}
	q, k, v := in[0], in[1], in[2]
	batch, seq := ss[0][0], ss[0][1]
	wq, wk := op.heads*op.headDim, op.kvHeads*op.headDim
	// keys and vals hold the attended positions of every sequence, stride
	// apart; query t attends to the first off + t + 1 of them.
	keys, vals, stride, total, off := k, v, seq*wk, seq, 0
	if op.cache != nil {
		if off, err = op.store(k, v, pos, batch, seq); err != nil {
			return nil, err
		}
		keys, vals = buffers[T](op.cache)
		stride, total = op.cache.maxSeq*wk, off+seq
	}
	out, o := opkit.NewDense[T](want)
	scale := T(1 / math.Sqrt(float64(op.headDim)))
	hd, group := op.headDim, op.heads/op.kvHeads
	p := make([]T, seq*total)
	var dp []T
	wp := wq + 2*wk
	if op.grad {
		dp = make([]T, seq*seq)
	}
	for b := 0; b < batch; b++ {
		for h := 0; h < op.heads; h++ {
			g := h / group
			qh := q[b*seq*wq+h*hd:]
			kg := keys[b*stride+g*hd:]
			vg := vals[b*stride+g*hd:]
			opkit.Gemm(false, true, seq, total, hd, scale, qh, wq, kg, wk, 0, p, total)
			causalSoftmax(p, seq, total, off)
			if !op.grad {
				opkit.Gemm(false, false, seq, hd, total, 1, p, total, vg, wk, 0, o[b*seq*wq+h*hd:], wq)
				continue
			}
			// dP = dO·vᵀ; dS = P⊙(dP − rowsum(dP⊙P)); dq = scale·dS·k;
			// dk += scale·dSᵀ·q; dv += Pᵀ·dO.
			dout := in[3][b*seq*wq+h*hd:]
			opkit.Gemm(false, true, seq, seq, hd, 1, dout, wq, vg, wk, 0, dp, seq)
			for t := 0; t < seq; t++ {
				pr, dr := p[t*seq:(t+1)*seq], dp[t*seq:(t+1)*seq]
				var dot float64
				for j := range pr {
					dot += float64(pr[j]) * float64(dr[j])
				}
				for j := range pr {
					dr[j] = T(float64(pr[j]) * (float64(dr[j]) - dot))
				}
			}
			base := b * seq * wp
			opkit.Gemm(false, false, seq, hd, seq, scale, dp, seq, kg, wk, 0, o[base+h*hd:], wp)
			opkit.Gemm(true, false, seq, hd, seq, scale, dp, seq, qh, wq, 1, o[base+wq+g*hd:], wp)
			opkit.Gemm(true, false, seq, hd, seq, 1, p, seq, dout, wq, 1, o[base+wq+wk+g*hd:], wp)
		}
	}
	return out, opkit.CheckOut(op, out, want)
}

// store writes k and v [batch, seq, width] into the cache at the positions
// pos and returns the first position.
func (op attnOp) store(k, v any, pos []int, batch, seq int) (int, error) {
	c := op.cache
	first := pos[0]
	for t, p := range pos {
		if p != first+t {
			return 0, errors.Errorf("%v: positions %v are not consecutive", op, pos)
		}
	}
	if first < 0 || first > c.filled || first+seq > c.maxSeq {
		return 0, errors.Errorf("%v: positions %d..%d do not continue the %d cached ones within %d", op, first, first+seq-1, c.filled, c.maxSeq)
	}
	switch kk := k.(type) {
	case []float32:
		storeRows(c, kk, v.([]float32), first, batch, seq)
	case []float64:
		storeRows(c, kk, v.([]float64), first, batch, seq)
	}
	c.filled = first + seq
	return first, nil
}

func storeRows[T opkit.Float](c *kvCache, k, v []T, first, batch, seq int) {
	ck, cv := buffers[T](c)
	w := c.width
	for b := 0; b < batch; b++ {
		dst := (b*c.maxSeq + first) * w
		copy(ck[dst:dst+seq*w], k[b*seq*w:(b+1)*seq*w])
		copy(cv[dst:dst+seq*w], v[b*seq*w:(b+1)*seq*w])
	}
}

func (op attnOp) DiffWRT(n int) []bool {
	d := make([]bool, n)
	if !op.grad && op.cache == nil {
		for i := range d {
			d[i] = true
		}
	}
	return d
}

// SymDiff computes the three gradients in one packed node and splits them.
func (op attnOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if op.grad || op.cache != nil || len(in) != 3 {
		return nil, errors.Errorf("%v: cannot be differentiated", op)
	}
	gop := op
	gop.grad = true
	packed, err := G.ApplyOp(gop, in[0], in[1], in[2], grad)
	if err != nil {
		return nil, errors.Wrapf(err, "%v: gradient", op)
	}
	wq, wk := op.heads*op.headDim, op.kvHeads*op.headDim
	bounds := [4]int{0, wq, wq + wk, wq + 2*wk}
	res := make(G.Nodes, 3)
	for i := range res {
		if res[i], err = G.ApplyOp(columnsOp{from: bounds[i], to: bounds[i+1], width: bounds[3]}, packed); err != nil {
			return nil, errors.Wrapf(err, "%v: splitting the gradient", op)
		}
	}
	return res, nil
}

// columnsOp copies the columns [from, to) of the last axis of a
// [batch, seq, width] tensor. It splits the packed attention gradient and is
// never differentiated itself.
type columnsOp struct {
	opkit.Base
	from, to, width int
}

func (op columnsOp) Arity() int            { return 1 }
func (op columnsOp) Type() hm.Type         { return opkit.FnType(3, 3) }
func (op columnsOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op columnsOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op columnsOp) String() string {
	return fmt.Sprintf("llama.Columns{%d:%d of %d}", op.from, op.to, op.width)
}

func (op columnsOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, 1, in)
	if err != nil {
		return nil, err
	}
	x := s[0]
	if len(x) != 3 || x[2] != op.width || op.from < 0 || op.from >= op.to || op.to > op.width {
		return nil, errors.Errorf("%v: input %v", op, x)
	}
	return tensor.Shape{x[0], x[1], op.to - op.from}, nil
}

func (op columnsOp) Do(vs ...G.Value) (G.Value, error) {
	if len(vs) != 1 {
		return nil, errors.Errorf("%v: expected 1 input, got %d", op, len(vs))
	}
	f64, err := opkit.IsFloat64(op, vs)
	if err != nil {
		return nil, err
	}
	if f64 {
		return doColumns[float64](op, vs[0])
	}
	return doColumns[float32](op, vs[0])
}

func doColumns[T opkit.Float](op columnsOp, v G.Value) (G.Value, error) {
	in, ss, err := opkit.Slices[T](op, []G.Value{v})
	if err != nil {
		return nil, err
	}
	x, xs := in[0], ss[0]
	want, err := op.InferShape(xs)
	if err != nil {
		return nil, err
	}
	out, o := opkit.NewDense[T](want)
	w := op.to - op.from
	for r := 0; r < xs[0]*xs[1]; r++ {
		copy(o[r*w:(r+1)*w], x[r*op.width+op.from:r*op.width+op.to])
	}
	return out, opkit.CheckOut(op, out, want)
}

func (op columnsOp) DiffWRT(int) []bool { return []bool{false} }

// SymDiff is never needed: the op only appears inside gradients.
func (op columnsOp) SymDiff(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) {
	return nil, errors.Errorf("%v: second-order gradients are not supported", op)
}
