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

// RMSNorm returns x·rsqrt(mean(x²) + eps)·weight over the last axis of
// x [..., d], with weight [d], as LLaMA and Mamba compute it. Every leading
// dimension is folded into rows; the node is one fused op with a
// hand-written gradient.
func RMSNorm(x, weight *G.Node, eps float64) (*G.Node, error) {
	if err := checkNormArgs("RMSNorm", x, eps, weight); err != nil {
		return nil, err
	}
	op := normOp{kind: rmsNorm, part: normForward, eps: eps, rank: x.Dims()}
	n, err := opkit.Apply(op, x, weight)
	return n, errors.Wrapf(err, "lilyop.RMSNorm(%v, %v)", x.Shape(), weight.Shape())
}

// LayerNorm returns (x − mean)/sqrt(var + eps)·gamma + beta over the last
// axis of x [..., d], with gamma and beta [d] and the biased variance, as
// torch.nn.LayerNorm computes it. Every leading dimension is folded into
// rows; the node is one fused op with a hand-written gradient.
func LayerNorm(x, gamma, beta *G.Node, eps float64) (*G.Node, error) {
	if err := checkNormArgs("LayerNorm", x, eps, gamma, beta); err != nil {
		return nil, err
	}
	op := normOp{kind: layerNorm, part: normForward, eps: eps, rank: x.Dims()}
	n, err := opkit.Apply(op, x, gamma, beta)
	return n, errors.Wrapf(err, "lilyop.LayerNorm(%v, %v, %v)", x.Shape(), gamma.Shape(), beta.Shape())
}

func checkNormArgs(name string, x *G.Node, eps float64, vecs ...*G.Node) error {
	if x == nil || x.Dims() < 1 {
		return errors.Errorf("lilyop.%s: need x of rank ≥ 1", name)
	}
	if !(eps >= 0) || math.IsInf(eps, 0) {
		return errors.Errorf("lilyop.%s: eps = %v; it must be a finite number ≥ 0", name, eps)
	}
	d := x.Shape()[x.Dims()-1]
	for _, v := range vecs {
		if v == nil || v.Dims() != 1 || v.Shape()[0] != d {
			return errors.Errorf("lilyop.%s: x is %v, every parameter must be a vector [%d]", name, x.Shape(), d)
		}
	}
	return nil
}

// normKind selects the normalisation.
type normKind int

const (
	rmsNorm normKind = iota
	layerNorm
)

// normPart selects what a normOp node computes: the forward pass or one of
// the gradients.
type normPart int

const (
	// normForward: (x, weight[, beta]) → y.
	normForward normPart = iota
	// normGradX: (x, weight, dy) → dx.
	normGradX
	// normGradWeight: (x, dy) → d weight [d].
	normGradWeight
	// normGradBias: (dy) → d beta [d].
	normGradBias
)

// normOp is RMSNorm or LayerNorm (or one of their gradients) over the last
// axis of an input of rank `rank`.
type normOp struct {
	opkit.Base
	kind normKind
	part normPart
	eps  float64
	rank int
}

func (op normOp) Arity() int {
	switch op.part {
	case normForward:
		if op.kind == layerNorm {
			return 3
		}
		return 2
	case normGradX:
		return 3
	case normGradWeight:
		return 2
	default:
		return 1
	}
}

func (op normOp) Type() hm.Type {
	r := op.rank
	switch op.part {
	case normForward:
		if op.kind == layerNorm {
			return opkit.FnType(r, 1, 1, r)
		}
		return opkit.FnType(r, 1, r)
	case normGradX:
		return opkit.FnType(r, 1, r, r)
	case normGradWeight:
		return opkit.FnType(r, r, 1)
	default:
		return opkit.FnType(r, 1)
	}
}

func (op normOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op normOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op normOp) String() string {
	kind := [...]string{"RMSNorm", "LayerNorm"}[op.kind]
	part := [...]string{"", "GradX", "GradWeight", "GradBias"}[op.part]
	return fmt.Sprintf("lilyop.%s%s{eps=%g,rank=%d}", kind, part, op.eps, op.rank)
}

func (op normOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, op.Arity(), in)
	if err != nil {
		return nil, err
	}
	x := s[0]
	if len(x) != op.rank {
		return nil, errors.Errorf("%v: input has shape %v", op, x)
	}
	d := x[len(x)-1]
	for i, v := range s[1:] {
		isVec := op.part == normForward || (op.part == normGradX && i == 0)
		if isVec && (len(v) != 1 || v[0] != d) {
			return nil, errors.Errorf("%v: parameter %v does not fit input %v", op, v, x)
		}
		if !isVec && !v.Eq(x) {
			return nil, errors.Errorf("%v: gradient %v does not match input %v", op, v, x)
		}
	}
	if op.part == normGradWeight || op.part == normGradBias {
		return tensor.Shape{d}, nil
	}
	return x.Clone(), nil
}

func (op normOp) Do(vs ...G.Value) (G.Value, error) {
	if len(vs) != op.Arity() {
		return nil, errors.Errorf("%v: expected %d inputs, got %d", op, op.Arity(), len(vs))
	}
	return opkit.Dispatch(op, vs, doNorm[float64], doNorm[float32])
}

func doNorm[T opkit.Float](op normOp, vs []G.Value) (G.Value, error) {
	in, shapes, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	out, o := opkit.Output[T](op.OutputSlot(), want, false) // every element is written
	d := shapes[0][len(shapes[0])-1]
	m := rows(shapes[0])
	grain := max(1, opkit.ElementGrain/(4*d))
	if op.part == normGradBias || op.part == normGradWeight {
		// Column sums over rows: each goroutine accumulates its own rows in
		// float64, and the partial sums are added in a fixed order.
		parts := opkit.Parts(m, grain)
		partial := make([][]float64, parts)
		opkit.Parallel(parts, 1, func(lo, hi int) {
			for p := lo; p < hi; p++ {
				acc := make([]float64, d)
				normRows(op, in, o, d, m*p/parts, m*(p+1)/parts, acc)
				partial[p] = acc
			}
		})
		for j := range o {
			var s float64
			for _, acc := range partial {
				s += acc[j]
			}
			o[j] = T(s)
		}
		return out, opkit.CheckOut(op, out, want)
	}
	opkit.Parallel(m, grain, func(lo, hi int) { normRows(op, in, o, d, lo, hi, nil) })
	return out, opkit.CheckOut(op, out, want)
}

// normRows computes rows [lo, hi) of the op's part: rows of o for the
// forward pass and the input gradient, or the column sums of those rows
// into acc for the weight and bias gradients.
func normRows[T opkit.Float](op normOp, in [][]T, o []T, d, lo, hi int, acc []float64) {
	x := in[0]
	if op.part == normGradBias {
		for r := lo; r < hi; r++ {
			for j, v := range x[r*d : (r+1)*d] {
				acc[j] += float64(v)
			}
		}
		return
	}
	n := float64(d)
	for r := lo; r < hi; r++ {
		row := x[r*d : (r+1)*d]
		// mean (0 for RMSNorm) and rstd = 1/√(variance (mean square for
		// RMSNorm) + eps) of the row in float64; x̂_j = (x_j − mean)·rstd is
		// recomputed where needed instead of being stored.
		var mean float64
		if op.kind == layerNorm {
			for _, v := range row {
				mean += float64(v)
			}
			mean /= n
		}
		var ss float64
		for _, v := range row {
			c := float64(v) - mean
			ss += c * c
		}
		rstd := 1 / math.Sqrt(ss/n+op.eps)
		switch op.part {
		case normForward:
			w := in[1][:d]
			y := o[r*d : (r+1)*d]
			if op.kind == layerNorm {
				b := in[2][:d]
				for j, v := range row {
					y[j] = T((float64(v)-mean)*rstd*float64(w[j])) + b[j]
				}
			} else {
				for j, v := range row {
					y[j] = T((float64(v) - mean) * rstd * float64(w[j]))
				}
			}
		case normGradX:
			w, dy := in[1][:d], in[2][r*d:(r+1)*d]
			// g = dy·w; dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), where the
			// mean(g) term exists only for LayerNorm (RMSNorm does not
			// centre).
			var sg, sgx float64
			for j, v := range row {
				g := float64(dy[j]) * float64(w[j])
				sg += g
				sgx += g * ((float64(v) - mean) * rstd)
			}
			sg /= n
			sgx /= n
			if op.kind == rmsNorm {
				sg = 0
			}
			dx := o[r*d : (r+1)*d]
			for j, v := range row {
				g := float64(dy[j]) * float64(w[j])
				dx[j] = T(rstd * (g - sg - (float64(v)-mean)*rstd*sgx))
			}
		case normGradWeight:
			dy := in[1][r*d : (r+1)*d]
			for j, v := range row {
				acc[j] += float64(dy[j]) * ((float64(v) - mean) * rstd)
			}
		}
	}
}

func (op normOp) DiffWRT(n int) []bool {
	d := make([]bool, n)
	if op.part == normForward {
		for i := range d {
			d[i] = true
		}
	}
	return d
}

// SymDiff returns the gradients of the forward op: dx through one fused
// node, the weight gradient Σ_rows dy·x̂ and, for LayerNorm, the bias
// gradient Σ_rows dy.
func (op normOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if op.part != normForward {
		return nil, errors.Errorf("%v: second-order gradients are not supported", op)
	}
	if len(in) != op.Arity() {
		return nil, errors.Errorf("%v: expected %d inputs, got %d", op, op.Arity(), len(in))
	}
	x, w := in[0], in[1]
	gop := op
	gop.part = normGradX
	dx, err := opkit.Apply(gop, x, w, grad)
	if err != nil {
		return nil, errors.Wrapf(err, "%v: input gradient", op)
	}
	gop.part = normGradWeight
	dw, err := opkit.Apply(gop, x, grad)
	if err != nil {
		return nil, errors.Wrapf(err, "%v: weight gradient", op)
	}
	if op.kind == rmsNorm {
		return G.Nodes{dx, dw}, nil
	}
	gop.part = normGradBias
	db, err := opkit.Apply(gop, grad)
	if err != nil {
		return nil, errors.Wrapf(err, "%v: bias gradient", op)
	}
	return G.Nodes{dx, dw, db}, nil
}
