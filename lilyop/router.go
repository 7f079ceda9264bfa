package lilyop

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

// RouterWeights returns Lily's mixing weights for the low-rank activation
// h [..., r] and the router R [r, E]: the row-wise softmax of h·R, reduced
// according to mode:
//
//   - Batch: the mean over every row, shape [E] (the reference behaviour).
//   - Sequence: the mean over each sequence's rows, shape [batch, E]; h must
//     have rank ≥ 3 with the sequence index first.
//   - Token: no reduction, shape [..., E].
//
// mask may be nil. Otherwise it has h's leading shape (h.Shape()[:rank-1]),
// holds 1 for real tokens and 0 for padding, is not differentiated, and turns
// the mean of Batch and Sequence routing into a mean over real tokens only.
// A sequence (or batch) without any real token gets an all-zero mixing
// vector, so the adapter adds nothing to it. Token routing ignores the mask.
func RouterWeights(h, R, mask *G.Node, mode Routing) (*G.Node, error) {
	if h.Dims() < 2 || R.Dims() != 2 {
		return nil, errors.Errorf("lilyop.RouterWeights: need h of rank ≥ 2 and a matrix R, got %v and %v", h.Shape(), R.Shape())
	}
	if mode == Sequence && h.Dims() < 3 {
		return nil, errors.Errorf("lilyop.RouterWeights: sequence routing needs h as [batch, tokens, r], got %v", h.Shape())
	}
	if mode < Batch || mode > Token {
		return nil, errors.Errorf("lilyop.RouterWeights: invalid routing mode %d", int(mode))
	}
	op := routerOp{mode: mode, hRank: h.Dims()}
	in := G.Nodes{h, R}
	if mask != nil && mode != Token {
		op.masked = true
		in = append(in, mask)
	}
	n, err := opkit.Apply(op, in...)
	return n, errors.Wrapf(err, "lilyop.RouterWeights(%v, %v)", h.Shape(), R.Shape())
}

// routerOp is the forward router: softmax(h·R) reduced per routing mode.
type routerOp struct {
	opkit.Base
	mode   Routing
	hRank  int
	masked bool
}

func (op routerOp) outRank() int {
	switch op.mode {
	case Batch:
		return 1
	case Sequence:
		return 2
	}
	return op.hRank
}

func (op routerOp) Arity() int {
	if op.masked {
		return 3
	}
	return 2
}

func (op routerOp) Type() hm.Type {
	if op.masked {
		return opkit.FnType(op.hRank, 2, op.hRank-1, op.outRank())
	}
	return opkit.FnType(op.hRank, 2, op.outRank())
}

func (op routerOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op routerOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op routerOp) String() string {
	return fmt.Sprintf("lilyop.router{%v,rank=%d,masked=%t}", op.mode, op.hRank, op.masked)
}

// checkRouterShapes validates h, R and the optional mask.
func checkRouterShapes(op fmt.Stringer, hRank int, h, r tensor.Shape, mask tensor.Shape) error {
	if len(h) != hRank || len(r) != 2 || h[len(h)-1] != r[0] {
		return errors.Errorf("%v: h %v and router %v do not fit (want h [..., r], R [r, E])", op, h, r)
	}
	if mask != nil && !mask.Eq(h[:len(h)-1]) {
		return errors.Errorf("%v: mask %v must have h's leading shape %v", op, mask, h[:len(h)-1])
	}
	return nil
}

func (op routerOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, op.Arity(), in)
	if err != nil {
		return nil, err
	}
	var mask tensor.Shape
	if op.masked {
		mask = s[2]
	}
	if err := checkRouterShapes(op, op.hRank, s[0], s[1], mask); err != nil {
		return nil, err
	}
	h, e := s[0], s[1][1]
	switch op.mode {
	case Batch:
		return tensor.Shape{e}, nil
	case Sequence:
		return tensor.Shape{h[0], e}, nil
	}
	out := h.Clone()
	out[len(out)-1] = e
	return out, nil
}

func (op routerOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doRouter[float64], doRouter[float32])
}

// routerProbs computes the row-wise softmax of h·R into a new [m, e] slice.
func routerProbs[T opkit.Float](h, r []T, m, k, e int) []T {
	p := make([]T, m*e)
	opkit.Gemm(false, false, m, e, k, 1, h, k, r, e, 0, p, e)
	for i := 0; i < m; i++ {
		row := p[i*e : (i+1)*e]
		mx := row[0]
		for _, v := range row[1:] {
			if v > mx {
				mx = v
			}
		}
		var sum float64
		for j, v := range row {
			x := math.Exp(float64(v - mx))
			row[j] = T(x)
			sum += x
		}
		for j := range row {
			row[j] = T(float64(row[j]) / sum)
		}
	}
	return p
}

// rowWeights returns the weight c_m of every row in its group's mean: 1/n for
// n rows per group, or mask_m/Σmask over the group when a mask is given.
func rowWeights[T opkit.Float](mode Routing, mask []T, m, lead0 int) []T {
	s, per := groups(mode, m, lead0)
	c := make([]T, m)
	for g := 0; g < s; g++ {
		lo, hi := g*per, (g+1)*per
		if mask == nil {
			for i := lo; i < hi; i++ {
				c[i] = T(1 / float64(per))
			}
			continue
		}
		var tot float64
		for i := lo; i < hi; i++ {
			tot += float64(mask[i])
		}
		if tot == 0 {
			continue
		}
		for i := lo; i < hi; i++ {
			c[i] = T(float64(mask[i]) / tot)
		}
	}
	return c
}

func doRouter[T opkit.Float](op routerOp, vs []G.Value) (G.Value, error) {
	d, shapes, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	hs := shapes[0]
	m, k, e := rows(hs), hs[len(hs)-1], shapes[1][1]
	p := routerProbs(d[0], d[1], m, k, e)
	if op.mode == Token {
		out := tensor.New(tensor.WithShape(want...), tensor.WithBacking(p))
		return out, opkit.CheckOut(op, out, want)
	}
	var mask []T
	if op.masked {
		mask = d[2]
	}
	c := rowWeights(op.mode, mask, m, hs[0])
	out, w := opkit.NewDense[T](want)
	_, per := groups(op.mode, m, hs[0])
	for i := 0; i < m; i++ {
		g := i / per
		for j := 0; j < e; j++ {
			w[g*e+j] += c[i] * p[i*e+j]
		}
	}
	return out, opkit.CheckOut(op, out, want)
}

func (op routerOp) DiffWRT(n int) []bool {
	d := []bool{true, true}
	if op.masked {
		d = append(d, false)
	}
	return d
}

// SymDiff returns the gradients for h and R (nil for the mask). Both go
// through one node holding the gradient of the router logits.
func (op routerOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if len(in) != op.Arity() {
		return nil, errors.Errorf("%v: expected %d inputs, got %d", op, op.Arity(), len(in))
	}
	gop := routerGradOp{op}
	args := append(append(G.Nodes{}, in...), grad)
	dl, err := opkit.Apply(gop, args...)
	if err != nil {
		return nil, errors.Wrapf(err, "%v", gop)
	}
	h, r := in[0], in[1]
	dh, err := applyGemm(nt, 1, dl, r)
	if err != nil {
		return nil, err
	}
	dr, err := applyGemm(tn, 1, h, dl)
	if err != nil {
		return nil, err
	}
	res := G.Nodes{dh, dr}
	if op.masked {
		res = append(res, nil)
	}
	return res, nil
}

// routerGradOp computes the gradient of the router logits h·R, shape
// [..., E], from the gradient of the mixing weights:
// dlogits[m,e] = p[m,e]·(dp[m,e] − Σ_k p[m,k]·dp[m,k]) with dp[m,e] =
// c_m·dw[group(m), e] (Token routing: dp = dw).
type routerGradOp struct{ routerOp }

func (op routerGradOp) Arity() int { return op.routerOp.Arity() + 1 }

func (op routerGradOp) Type() hm.Type {
	if op.masked {
		return opkit.FnType(op.hRank, 2, op.hRank-1, op.outRank(), op.hRank)
	}
	return opkit.FnType(op.hRank, 2, op.outRank(), op.hRank)
}

func (op routerGradOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op routerGradOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op routerGradOp) String() string {
	return fmt.Sprintf("lilyop.routerGrad{%v,rank=%d,masked=%t}", op.mode, op.hRank, op.masked)
}

func (op routerGradOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	if len(in) != op.Arity() {
		return nil, errors.Errorf("%v: expected %d inputs, got %d", op, op.Arity(), len(in))
	}
	wShape, err := op.routerOp.InferShape(in[:len(in)-1]...)
	if err != nil {
		return nil, err
	}
	s, err := opkit.Shapes(op, op.Arity(), in)
	if err != nil {
		return nil, err
	}
	if !s[len(s)-1].Eq(wShape) {
		return nil, errors.Errorf("%v: weight gradient %v, want %v", op, s[len(s)-1], wShape)
	}
	out := s[0].Clone()
	out[len(out)-1] = s[1][1]
	return out, nil
}

func (op routerGradOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doRouterGrad[float64], doRouterGrad[float32])
}

func doRouterGrad[T opkit.Float](op routerGradOp, vs []G.Value) (G.Value, error) {
	d, shapes, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	hs := shapes[0]
	m, k, e := rows(hs), hs[len(hs)-1], shapes[1][1]
	p := routerProbs(d[0], d[1], m, k, e)
	dw := d[len(d)-1]
	var c []T
	if op.mode != Token {
		var mask []T
		if op.masked {
			mask = d[2]
		}
		c = rowWeights(op.mode, mask, m, hs[0])
	}
	_, per := groups(op.mode, m, hs[0])
	out, dl := opkit.NewDense[T](want)
	dp := make([]T, e)
	for i := 0; i < m; i++ {
		g := i / per
		for j := 0; j < e; j++ {
			if c == nil {
				dp[j] = dw[g*e+j]
			} else {
				dp[j] = c[i] * dw[g*e+j]
			}
		}
		var dot T
		for j := 0; j < e; j++ {
			dot += p[i*e+j] * dp[j]
		}
		for j := 0; j < e; j++ {
			dl[i*e+j] = p[i*e+j] * (dp[j] - dot)
		}
	}
	return out, opkit.CheckOut(op, out, want)
}
