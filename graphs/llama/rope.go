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

// rope applies rotary position embeddings to x [batch, seq, heads·headDim]
// at the positions pos (an int node [seq]): the pair (a, b) of frequency
// index i in each head turns by the angle pos·theta^(−2i/headDim).
func rope(x, pos *G.Node, heads, headDim int, theta float64, layout RopeLayout) (*G.Node, error) {
	return ropeScaled(x, pos, heads, headDim, theta, layout, RopeScaling{})
}

// ropeScaled is rope with the frequencies scaled as sc says (the zero
// value: not scaled).
func ropeScaled(x, pos *G.Node, heads, headDim int, theta float64, layout RopeLayout, sc RopeScaling) (*G.Node, error) {
	op := ropeOp{heads: heads, headDim: headDim, theta: theta, layout: layout, scaling: sc}
	n, err := G.ApplyOp(op, x, pos)
	return n, errors.Wrapf(err, "applying %v to %v", op, x.Shape())
}

// ropeOp is the rotation; inverse turns by the opposite angle, which is the
// rotation's transpose and therefore its gradient.
type ropeOp struct {
	opkit.Base
	heads, headDim int
	theta          float64
	layout         RopeLayout
	scaling        RopeScaling
	inverse        bool
}

func (op ropeOp) Arity() int { return 2 }
func (op ropeOp) Type() hm.Type {
	return hm.NewFnType(floatTensor(3), intTensor(1), floatTensor(3))
}
func (op ropeOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op ropeOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op ropeOp) String() string {
	sc := ""
	if op.scaling.Enabled() {
		sc = fmt.Sprintf(",%+v", op.scaling)
	}
	return fmt.Sprintf("llama.RoPE{heads=%d,headDim=%d,theta=%g,%v%s,inverse=%t}", op.heads, op.headDim, op.theta, op.layout, sc, op.inverse)
}

func (op ropeOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, 2, in)
	if err != nil {
		return nil, err
	}
	x, pos := s[0], s[1]
	if len(x) != 3 || x[2] != op.heads*op.headDim || len(pos) != 1 || pos[0] != x[1] {
		return nil, errors.Errorf("%v: got x %v and positions %v", op, x, pos)
	}
	return x.Clone(), nil
}

func (op ropeOp) Do(vs ...G.Value) (G.Value, error) {
	if len(vs) != 2 {
		return nil, errors.Errorf("%v: expected 2 inputs, got %d", op, len(vs))
	}
	f64, err := opkit.IsFloat64(op, vs[:1])
	if err != nil {
		return nil, err
	}
	if f64 {
		return doRope[float64](op, vs)
	}
	return doRope[float32](op, vs)
}

// angles returns cos and sin of pos[t]·freq[i] for every position t and
// frequency index i < headDim/2. With single set the product is rounded to
// float32, as llama2.c and Hugging Face compute it for float32 models.
func (op ropeOp) angles(pos []int, single bool) (cos, sin []float64) {
	half := op.headDim / 2
	cos, sin = make([]float64, len(pos)*half), make([]float64, len(pos)*half)
	for i := 0; i < half; i++ {
		freq := op.scaling.Apply(1 / math.Pow(op.theta, float64(2*i)/float64(op.headDim)))
		for t, p := range pos {
			a := float64(p) * freq
			if single {
				a = float64(float32(p) * float32(freq))
			}
			cos[t*half+i], sin[t*half+i] = math.Cos(a), math.Sin(a)
		}
	}
	if op.inverse {
		for i := range sin {
			sin[i] = -sin[i]
		}
	}
	return cos, sin
}

func doRope[T opkit.Float](op ropeOp, vs []G.Value) (G.Value, error) {
	in, ss, err := opkit.Slices[T](op, vs[:1])
	if err != nil {
		return nil, err
	}
	x, xs := in[0], ss[0]
	pos, ps, err := opkit.Ints(op, 1, vs[1])
	if err != nil {
		return nil, err
	}
	want, err := op.InferShape(xs, ps)
	if err != nil {
		return nil, err
	}
	for _, p := range pos {
		if p < 0 {
			return nil, errors.Errorf("%v: negative position %d", op, p)
		}
	}
	_, single := any(x).([]float32)
	cos, sin := op.angles(pos, single)
	out, o := opkit.NewDense[T](want)
	seq, width, half := xs[1], xs[2], op.headDim/2
	// stride is the distance between the two elements of a pair, step the
	// distance between consecutive pairs.
	stride, step := 1, 2
	if op.layout == Halves {
		stride, step = half, 1
	}
	for r := 0; r < xs[0]*seq; r++ {
		t := r % seq
		c, s := cos[t*half:(t+1)*half], sin[t*half:(t+1)*half]
		for h := 0; h < op.heads; h++ {
			base := r*width + h*op.headDim
			for i := 0; i < half; i++ {
				ia := base + i*step
				a, b := float64(x[ia]), float64(x[ia+stride])
				o[ia] = T(a*c[i] - b*s[i])
				o[ia+stride] = T(a*s[i] + b*c[i])
			}
		}
	}
	return out, opkit.CheckOut(op, out, want)
}

func (op ropeOp) DiffWRT(int) []bool { return []bool{true, false} }

// SymDiff rotates the gradient back: the rotation is orthogonal.
func (op ropeOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if len(in) != 2 {
		return nil, errors.Errorf("%v: expected 2 inputs, got %d", op, len(in))
	}
	inv := op
	inv.inverse = !op.inverse
	dx, err := G.ApplyOp(inv, grad, in[1])
	if err != nil {
		return nil, errors.Wrapf(err, "%v: gradient", op)
	}
	return G.Nodes{dx, nil}, nil
}
