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

// ExpertMix returns scale·h·Σ_e w[e]·B[e]: Lily's up-projection through the
// router-weighted mixture of the shared experts B [E, r, d].
//
// h has any rank ≥ 2 ([..., r]); the result has shape [..., d]. The mixing
// weights w must match mode: [E] for Batch, [batch, E] for Sequence (h's
// first dimension is the sequence index), h's leading shape plus E for
// Token. Batch and Sequence routing mix the experts first and then run one
// GEMM per mixing vector; Token routing runs one GEMM per expert.
//
// The op is differentiable in h, w and B.
func ExpertMix(h, w, B *G.Node, mode Routing, scale float64) (*G.Node, error) {
	if h.Dims() < 2 || B.Dims() != 3 {
		return nil, errors.Errorf("lilyop.ExpertMix: need h of rank ≥ 2 and B [E, r, d], got %v and %v", h.Shape(), B.Shape())
	}
	if mode < Batch || mode > Token {
		return nil, errors.Errorf("lilyop.ExpertMix: invalid routing mode %d", int(mode))
	}
	op := mixOp{mode: mode, scale: scale, hRank: h.Dims()}
	if w.Dims() != op.wRank() {
		return nil, errors.Errorf("lilyop.ExpertMix: %v routing needs mixing weights of rank %d, got %v", mode, op.wRank(), w.Shape())
	}
	n, err := opkit.Apply(op, h, w, B)
	return n, errors.Wrapf(err, "lilyop.ExpertMix(%v, %v, %v)", h.Shape(), w.Shape(), B.Shape())
}

// mixOp is the forward expert mixture.
type mixOp struct {
	opkit.Base
	mode  Routing
	scale float64
	hRank int
}

func (op mixOp) wRank() int {
	switch op.mode {
	case Batch:
		return 1
	case Sequence:
		return 2
	}
	return op.hRank
}

func (op mixOp) Arity() int            { return 3 }
func (op mixOp) Type() hm.Type         { return opkit.FnType(op.hRank, op.wRank(), 3, op.hRank) }
func (op mixOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op mixOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op mixOp) DiffWRT(int) []bool    { return []bool{true, true, true} }
func (op mixOp) String() string {
	return fmt.Sprintf("lilyop.mix{%v,scale=%g,rank=%d}", op.mode, op.scale, op.hRank)
}

// wantW returns the mixing-weight shape that h's shape and E call for.
func (op mixOp) wantW(h tensor.Shape, e int) tensor.Shape {
	switch op.mode {
	case Batch:
		return tensor.Shape{e}
	case Sequence:
		return tensor.Shape{h[0], e}
	}
	w := h.Clone()
	w[len(w)-1] = e
	return w
}

// check validates h [..., r], w and B [E, r, d].
func (op mixOp) check(h, w, b tensor.Shape) error {
	if len(h) != op.hRank || len(b) != 3 || h[len(h)-1] != b[1] {
		return errors.Errorf("%v: h %v and B %v do not fit (want h [..., r], B [E, r, d])", op, h, b)
	}
	if op.mode == Sequence && len(h) < 3 {
		return errors.Errorf("%v: sequence routing needs h as [batch, tokens, r], got %v", op, h)
	}
	if want := op.wantW(h, b[0]); !w.Eq(want) {
		return errors.Errorf("%v: mixing weights %v, want %v for h %v and B %v", op, w, want, h, b)
	}
	return nil
}

func (op mixOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, 3, in)
	if err != nil {
		return nil, err
	}
	if err := op.check(s[0], s[1], s[2]); err != nil {
		return nil, err
	}
	out := s[0].Clone()
	out[len(out)-1] = s[2][2]
	return out, nil
}

func (op mixOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doMix[float64], doMix[float32])
}

// mixExperts writes Σ_e w[e]·B[e] into dst ([r·d]).
func mixExperts[T opkit.Float](dst []T, w []T, b []T) {
	n := len(dst)
	for i := range dst {
		dst[i] = 0
	}
	for e, we := range w {
		be := b[e*n : (e+1)*n]
		for i, v := range be {
			dst[i] += we * v
		}
	}
}

func doMix[T opkit.Float](op mixOp, vs []G.Value) (G.Value, error) {
	in, shapes, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	h, w, b := in[0], in[1], in[2]
	hs, bs := shapes[0], shapes[2]
	m, r, e, d := rows(hs), bs[1], bs[0], bs[2]
	out, y := opkit.Output[T](op.OutputSlot(), want, op.mode == Token) // token routing accumulates
	s := T(op.scale)
	if op.mode == Token {
		tmp := make([]T, m*d)
		for x := 0; x < e; x++ {
			opkit.Gemm(false, false, m, d, r, 1, h, r, b[x*r*d:(x+1)*r*d], d, 0, tmp, d)
			for i := 0; i < m; i++ {
				wi := s * w[i*e+x]
				yi, ti := y[i*d:(i+1)*d], tmp[i*d:(i+1)*d]
				for j := range yi {
					yi[j] += wi * ti[j]
				}
			}
		}
		return out, opkit.CheckOut(op, out, want)
	}
	groupsN, per := groups(op.mode, m, hs[0])
	bmix := make([]T, r*d)
	for g := 0; g < groupsN; g++ {
		mixExperts(bmix, w[g*e:(g+1)*e], b)
		opkit.Gemm(false, false, per, d, r, s, h[g*per*r:], r, bmix, d, 0, y[g*per*d:], d)
	}
	return out, opkit.CheckOut(op, out, want)
}

// SymDiff builds the gradient nodes for h, w and B. For Batch and Sequence
// routing the gradients of w and B share one node dBmix = scale·hᵀ·grad per
// mixing vector, so the O(M·r·d) product runs once.
func (op mixOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if len(in) != 3 {
		return nil, errors.Errorf("%v: expected 3 inputs, got %d", op, len(in))
	}
	h, w, b := in[0], in[1], in[2]
	apply := func(kind mixGradKind, args ...*G.Node) (*G.Node, error) {
		g := mixGradOp{mixOp: op, kind: kind}
		n, err := opkit.Apply(g, args...)
		return n, errors.Wrapf(err, "%v", g)
	}
	dh, err := apply(gradH, w, b, grad)
	if err != nil {
		return nil, err
	}
	var dw, db *G.Node
	if op.mode == Token {
		if db, err = apply(tokGradB, h, w, grad); err != nil {
			return nil, err
		}
		if dw, err = apply(tokGradW, h, b, grad); err != nil {
			return nil, err
		}
		return G.Nodes{dh, dw, db}, nil
	}
	outer, err := apply(gradOuter, h, grad)
	if err != nil {
		return nil, err
	}
	if db, err = apply(gradB, w, outer); err != nil {
		return nil, err
	}
	if dw, err = apply(gradW, b, outer); err != nil {
		return nil, err
	}
	return G.Nodes{dh, dw, db}, nil
}

// mixGradKind names the pieces of the expert mixture's gradient.
type mixGradKind int

const (
	gradH     mixGradKind = iota // (w, B, grad) → dh [..., r]
	gradOuter                    // (h, grad) → dBmix [S, r, d] = scale·h_sᵀ·grad_s
	gradB                        // (w, dBmix) → dB[e] = Σ_s w[s,e]·dBmix[s]
	gradW                        // (B, dBmix) → dw[s,e] = ⟨B[e], dBmix[s]⟩
	tokGradB                     // (h, w, grad) → dB[e] = scale·hᵀ·(w[:,e]⊙grad)
	tokGradW                     // (h, B, grad) → dw[m,e] = scale·⟨h[m]·B[e], grad[m]⟩
)

func (k mixGradKind) String() string {
	return [...]string{"dh", "dBmix", "dB", "dw", "tokdB", "tokdw"}[k]
}

// mixGradOp computes one piece of the expert mixture's gradient.
type mixGradOp struct {
	mixOp
	kind mixGradKind
}

func (op mixGradOp) ranks() []int {
	h, w := op.hRank, op.wRank()
	switch op.kind {
	case gradH:
		return []int{w, 3, h, h}
	case gradOuter:
		return []int{h, h, 3}
	case gradB:
		return []int{w, 3, 3}
	case gradW:
		return []int{3, 3, w}
	case tokGradB:
		return []int{h, w, h, 3}
	default:
		return []int{h, 3, h, h}
	}
}

func (op mixGradOp) Arity() int            { return len(op.ranks()) - 1 }
func (op mixGradOp) Type() hm.Type         { return opkit.FnType(op.ranks()...) }
func (op mixGradOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op mixGradOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op mixGradOp) DiffWRT(n int) []bool  { return make([]bool, n) }
func (op mixGradOp) String() string {
	return fmt.Sprintf("lilyop.mixGrad{%v,%v,scale=%g,rank=%d}", op.kind, op.mode, op.scale, op.hRank)
}

// SymDiff is not supported: gradients of gradients are never needed here.
func (op mixGradOp) SymDiff(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) {
	return nil, errors.Errorf("%v: second-order gradients are not supported", op)
}

func (op mixGradOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, op.Arity(), in)
	if err != nil {
		return nil, err
	}
	for i, r := range op.ranks()[:op.Arity()] {
		if len(s[i]) != r {
			return nil, errors.Errorf("%v: input %d has shape %v, want rank %d", op, i, s[i], r)
		}
	}
	bad := func() (tensor.Shape, error) {
		return nil, errors.Errorf("%v: inputs %v do not fit", op, s)
	}
	switch op.kind {
	case gradH: // w, B, grad
		h := s[2].Clone()
		h[len(h)-1] = s[1][1]
		if s[2][len(s[2])-1] != s[1][2] || op.check(h, s[0], s[1]) != nil {
			return bad()
		}
		return h, nil
	case gradOuter: // h, grad
		if rows(s[0]) != rows(s[1]) || (op.mode == Sequence && s[0][0] != s[1][0]) {
			return bad()
		}
		n := 1
		if op.mode == Sequence {
			n = s[0][0]
		}
		return tensor.Shape{n, s[0][len(s[0])-1], s[1][len(s[1])-1]}, nil
	case gradB: // w, dBmix
		groupsN := 1
		if op.mode == Sequence {
			groupsN = s[0][0]
		}
		if s[1][0] != groupsN {
			return bad()
		}
		return tensor.Shape{s[0][len(s[0])-1], s[1][1], s[1][2]}, nil
	case gradW: // B, dBmix
		if s[0][1] != s[1][1] || s[0][2] != s[1][2] {
			return bad()
		}
		if op.mode == Sequence {
			return tensor.Shape{s[1][0], s[0][0]}, nil
		}
		if s[1][0] != 1 {
			return bad()
		}
		return tensor.Shape{s[0][0]}, nil
	case tokGradB: // h, w, grad
		e := s[1][len(s[1])-1]
		if rows(s[2]) != rows(s[0]) || op.check(s[0], s[1], tensor.Shape{e, s[0][len(s[0])-1], s[2][len(s[2])-1]}) != nil {
			return bad()
		}
		return tensor.Shape{e, s[0][len(s[0])-1], s[2][len(s[2])-1]}, nil
	default: // tokGradW: h, B, grad
		g := s[2]
		if rows(g) != rows(s[0]) || g[len(g)-1] != s[1][2] || s[0][len(s[0])-1] != s[1][1] {
			return bad()
		}
		w := s[0].Clone()
		w[len(w)-1] = s[1][0]
		return w, nil
	}
}

func (op mixGradOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doMixGrad[float64], doMixGrad[float32])
}

func doMixGrad[T opkit.Float](op mixGradOp, vs []G.Value) (G.Value, error) {
	in, shapes, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	out, o := opkit.Output[T](op.OutputSlot(), want, true)
	s := T(op.scale)
	switch op.kind {
	case gradH:
		w, b, g := in[0], in[1], in[2]
		e, r, d := shapes[1][0], shapes[1][1], shapes[1][2]
		m := rows(shapes[2])
		if op.mode == Token {
			tmp := make([]T, m*r)
			for x := 0; x < e; x++ {
				opkit.Gemm(false, true, m, r, d, 1, g, d, b[x*r*d:(x+1)*r*d], d, 0, tmp, r)
				for i := 0; i < m; i++ {
					wi := s * w[i*e+x]
					oi, ti := o[i*r:(i+1)*r], tmp[i*r:(i+1)*r]
					for j := range oi {
						oi[j] += wi * ti[j]
					}
				}
			}
			break
		}
		groupsN, per := groups(op.mode, m, shapes[2][0])
		bmix := make([]T, r*d)
		for x := 0; x < groupsN; x++ {
			mixExperts(bmix, w[x*e:(x+1)*e], b)
			opkit.Gemm(false, true, per, r, d, s, g[x*per*d:], d, bmix, d, 0, o[x*per*r:], r)
		}
	case gradOuter:
		h, g := in[0], in[1]
		r, d := want[1], want[2]
		per := rows(shapes[0]) / want[0]
		for x := 0; x < want[0]; x++ {
			opkit.Gemm(true, false, r, d, per, s, h[x*per*r:], r, g[x*per*d:], d, 0, o[x*r*d:], d)
		}
	case gradB:
		w, dm := in[0], in[1]
		e, n := want[0], want[1]*want[2]
		for x := 0; x < shapes[1][0]; x++ {
			dmx := dm[x*n : (x+1)*n]
			for y := 0; y < e; y++ {
				wy := w[x*e+y]
				oy := o[y*n : (y+1)*n]
				for j, v := range dmx {
					oy[j] += wy * v
				}
			}
		}
	case gradW:
		b, dm := in[0], in[1]
		e, n := shapes[0][0], shapes[0][1]*shapes[0][2]
		for x := 0; x < shapes[1][0]; x++ {
			dmx := dm[x*n : (x+1)*n]
			for y := 0; y < e; y++ {
				var dot T
				for j, v := range b[y*n : (y+1)*n] {
					dot += v * dmx[j]
				}
				o[x*e+y] = dot
			}
		}
	case tokGradB:
		h, w, g := in[0], in[1], in[2]
		e, r, d := want[0], want[1], want[2]
		m := rows(shapes[0])
		tmp := make([]T, m*d)
		for x := 0; x < e; x++ {
			for i := 0; i < m; i++ {
				wi := w[i*e+x]
				for j := 0; j < d; j++ {
					tmp[i*d+j] = wi * g[i*d+j]
				}
			}
			opkit.Gemm(true, false, r, d, m, s, h, r, tmp, d, 0, o[x*r*d:], d)
		}
	case tokGradW:
		h, b, g := in[0], in[1], in[2]
		e, r, d := shapes[1][0], shapes[1][1], shapes[1][2]
		m := rows(shapes[0])
		tmp := make([]T, m*r)
		for x := 0; x < e; x++ {
			opkit.Gemm(false, true, m, r, d, 1, g, d, b[x*r*d:(x+1)*r*d], d, 0, tmp, r)
			for i := 0; i < m; i++ {
				var dot T
				for j := 0; j < r; j++ {
					dot += h[i*r+j] * tmp[i*r+j]
				}
				o[i*e+x] = s * dot
			}
		}
	}
	return out, opkit.CheckOut(op, out, want)
}
