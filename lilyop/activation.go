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

// SiLU returns x·σ(x) elementwise (also called swish), as LLaMA's MLP and
// Mamba use it. It is one fused node with a hand-written gradient.
func SiLU(x *G.Node) (*G.Node, error) { return applyAct(silu, x) }

// GELU returns the exact GELU x·Φ(x) = x·(1 + erf(x/√2))/2 elementwise, as
// torch.nn.GELU() (approximate="none") and BERT/RoBERTa compute it. It is one
// fused node with a hand-written gradient.
func GELU(x *G.Node) (*G.Node, error) { return applyAct(gelu, x) }

func applyAct(kind actKind, x *G.Node) (*G.Node, error) {
	if x == nil || x.Dims() < 1 {
		return nil, errors.Errorf("lilyop.%v: need a tensor of rank ≥ 1", kind)
	}
	n, err := opkit.Apply(actOp{kind: kind, rank: x.Dims()}, x)
	return n, errors.Wrapf(err, "lilyop.%v(%v)", kind, x.Shape())
}

// actKind selects the activation function.
type actKind int

const (
	silu actKind = iota
	gelu
)

func (k actKind) String() string { return [...]string{"SiLU", "GELU"}[k] }

// f returns the activation and its derivative at v.
func (k actKind) f(v float64) (y, dy float64) { return k.y(v), k.dy(v) }

// y returns the activation at v.
func (k actKind) y(v float64) float64 {
	if k == silu {
		return v / (1 + math.Exp(-v))
	}
	return 0.5 * v * (1 + math.Erf(v*(1/math.Sqrt2)))
}

// dy returns the activation's derivative at v.
func (k actKind) dy(v float64) float64 {
	if k == silu {
		s := 1 / (1 + math.Exp(-v))
		return s * (1 + v*(1-s))
	}
	phi := 0.5 * (1 + math.Erf(v*(1/math.Sqrt2)))
	return phi + v*math.Exp(-0.5*v*v)*(1/math.Sqrt(2*math.Pi))
}

// actOp applies an activation elementwise; with grad set it maps (x, dy) to
// dx = dy·f'(x).
type actOp struct {
	opkit.Base
	kind actKind
	grad bool
	rank int
}

func (op actOp) Arity() int {
	if op.grad {
		return 2
	}
	return 1
}

func (op actOp) Type() hm.Type {
	if op.grad {
		return opkit.FnType(op.rank, op.rank, op.rank)
	}
	return opkit.FnType(op.rank, op.rank)
}

func (op actOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op actOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op actOp) String() string {
	return fmt.Sprintf("lilyop.%v{grad=%t,rank=%d}", op.kind, op.grad, op.rank)
}

func (op actOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, op.Arity(), in)
	if err != nil {
		return nil, err
	}
	if len(s[0]) != op.rank {
		return nil, errors.Errorf("%v: input has shape %v", op, s[0])
	}
	if op.grad && !s[1].Eq(s[0]) {
		return nil, errors.Errorf("%v: gradient %v does not match input %v", op, s[1], s[0])
	}
	return s[0].Clone(), nil
}

func (op actOp) Do(vs ...G.Value) (G.Value, error) {
	if len(vs) != op.Arity() {
		return nil, errors.Errorf("%v: expected %d inputs, got %d", op, op.Arity(), len(vs))
	}
	return opkit.Dispatch(op, vs, doAct[float64], doAct[float32])
}

func doAct[T opkit.Float](op actOp, vs []G.Value) (G.Value, error) {
	in, _, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	out, o := opkit.Output[T](op.OutputSlot(), want, false) // every element is written
	x := in[0]
	// Forward computes only the activation, backward only its derivative;
	// the elements are split across goroutines.
	x32, is32 := any(x).([]float32)
	opkit.Parallel(len(x), opkit.ElementGrain/16, func(lo, hi int) {
		if is32 && op.kind == gelu {
			// float32: Φ and φ from tables (normtable.go).
			o32 := any(o).([]float32)
			if op.grad {
				gelu32GradRows(o32[lo:hi], x32[lo:hi], any(in[1]).([]float32)[lo:hi])
				return
			}
			gelu32Rows(o32[lo:hi], x32[lo:hi])
			return
		}
		if op.grad {
			g := in[1]
			for i := lo; i < hi; i++ {
				o[i] = T(op.kind.dy(float64(x[i])) * float64(g[i]))
			}
			return
		}
		for i := lo; i < hi; i++ {
			o[i] = T(op.kind.y(float64(x[i])))
		}
	})
	return out, opkit.CheckOut(op, out, want)
}

func (op actOp) DiffWRT(n int) []bool {
	d := make([]bool, n)
	if !op.grad && n == 1 {
		d[0] = true
	}
	return d
}

// SymDiff returns dy·f'(x) as one fused node.
func (op actOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if op.grad || len(in) != 1 {
		return nil, errors.Errorf("%v: second-order gradients are not supported", op)
	}
	dx, err := opkit.Apply(actOp{kind: op.kind, grad: true, rank: op.rank}, in[0], grad)
	if err != nil {
		return nil, errors.Wrapf(err, "%v: gradient", op)
	}
	return G.Nodes{dx}, nil
}
