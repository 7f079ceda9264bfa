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

// IgnoreIndex is the target id that CrossEntropy skips (PyTorch's
// ignore_index default): padding, unmasked MLM positions, the last position
// of a sequence.
const IgnoreIndex = -100

// CrossEntropy returns the mean over rows of −log softmax(logits)[target]
// for logits [..., classes] and an int node (tensor.Int) of targets [...],
// skipping rows whose target is IgnoreIndex; the mean is over the other rows
// and is 0 when there are none. It is one fused node (log-softmax and NLL)
// whose gradient, (softmax − onehot)/rows, is one more. A target outside
// [0, classes) other than IgnoreIndex makes the run fail with an error.
func CrossEntropy(logits, targets *G.Node) (*G.Node, error) {
	if logits == nil || targets == nil || logits.Dims() < 2 || targets.Dims() != logits.Dims()-1 {
		return nil, errors.New("lilyop.CrossEntropy: need logits [..., classes] and targets [...]")
	}
	if targets.Dtype() != tensor.Int {
		return nil, errors.Errorf("lilyop.CrossEntropy: targets have dtype %v, want tensor.Int", targets.Dtype())
	}
	op := xentOp{rank: logits.Dims()}
	n, err := opkit.Apply(op, logits, targets)
	return n, errors.Wrapf(err, "lilyop.CrossEntropy(%v, %v)", logits.Shape(), targets.Shape())
}

// xentOp is the loss (logits, targets) → scalar, or with grad set its
// gradient (logits, targets, dloss) → dlogits.
type xentOp struct {
	opkit.Base
	rank int
	grad bool
}

func (op xentOp) Arity() int {
	if op.grad {
		return 3
	}
	return 2
}

func (op xentOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	logits := G.TensorType{Dims: op.rank, Of: a}
	targets := G.TensorType{Dims: op.rank - 1, Of: tensor.Int}
	if op.grad {
		return hm.NewFnType(logits, targets, a, G.TensorType{Dims: op.rank, Of: a})
	}
	return hm.NewFnType(logits, targets, a)
}

func (op xentOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op xentOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op xentOp) String() string {
	return fmt.Sprintf("lilyop.CrossEntropy{rank=%d,ignore=%d,grad=%t}", op.rank, IgnoreIndex, op.grad)
}

func (op xentOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	if len(in) != op.Arity() {
		return nil, errors.Errorf("%v: expected %d inputs, got %d", op, op.Arity(), len(in))
	}
	l, lok := in[0].(tensor.Shape)
	t, tok := in[1].(tensor.Shape)
	if !lok || !tok || len(l) != op.rank || len(t) != op.rank-1 || !t.Eq(l[:op.rank-1]) {
		return nil, errors.Errorf("%v: logits %v do not fit targets %v", op, in[0], in[1])
	}
	if op.grad {
		return l.Clone(), nil
	}
	return tensor.ScalarShape(), nil
}

func (op xentOp) Do(vs ...G.Value) (G.Value, error) {
	if len(vs) != op.Arity() {
		return nil, errors.Errorf("%v: expected %d inputs, got %d", op, op.Arity(), len(vs))
	}
	f64, err := opkit.IsFloat64(op, vs[:1])
	if err != nil {
		return nil, err
	}
	if f64 {
		return doXent[float64](op, vs)
	}
	return doXent[float32](op, vs)
}

func doXent[T opkit.Float](op xentOp, vs []G.Value) (G.Value, error) {
	lg, ls, err := opkit.Slices[T](op, vs[:1])
	if err != nil {
		return nil, err
	}
	targets, ts, err := opkit.Ints(op, 1, vs[1])
	if err != nil {
		return nil, err
	}
	logits := lg[0]
	dims := []G.DimSizer{ls[0], ts}
	if op.grad {
		dims = append(dims, vs[2].Shape())
	}
	want, err := op.InferShape(dims...)
	if err != nil {
		return nil, err
	}
	var scale float64
	if op.grad {
		d, ok := vs[2].Data().(T)
		if !ok {
			return nil, errors.Errorf("%v: loss gradient is a %T", op, vs[2].Data())
		}
		scale = float64(d)
	}
	classes := ls[0][op.rank-1]
	count := 0
	for i, t := range targets {
		switch {
		case t == IgnoreIndex:
		case t < 0 || t >= classes:
			return nil, errors.Errorf("%v: target %d at row %d is outside [0, %d)", op, t, i, classes)
		default:
			count++
		}
	}
	var out *tensor.Dense
	var dl []T
	if op.grad {
		out, dl = opkit.NewDense[T](want)
	}
	var loss float64
	for r, t := range targets {
		if t == IgnoreIndex {
			continue
		}
		row := logits[r*classes : (r+1)*classes]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, float64(v))
		}
		var z float64
		for _, v := range row {
			z += math.Exp(float64(v) - mx)
		}
		loss += mx + math.Log(z) - float64(row[t])
		if op.grad {
			g := scale / float64(count)
			d := dl[r*classes : (r+1)*classes]
			for j, v := range row {
				d[j] = T(g * math.Exp(float64(v)-mx) / z)
			}
			d[t] -= T(g)
		}
	}
	if op.grad {
		return out, opkit.CheckOut(op, out, want)
	}
	if count > 0 {
		loss /= float64(count)
	}
	return tensor.New(tensor.FromScalar(T(loss))), nil
}

func (op xentOp) DiffWRT(n int) []bool {
	d := make([]bool, n)
	d[0] = !op.grad
	return d
}

// SymDiff returns the logits' gradient as one fused node; the targets get
// none.
func (op xentOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if op.grad || len(in) != 2 {
		return nil, errors.Errorf("%v: second-order gradients are not supported", op)
	}
	dl, err := opkit.Apply(xentOp{rank: op.rank, grad: true}, in[0], in[1], grad)
	if err != nil {
		return nil, errors.Wrapf(err, "%v: gradient", op)
	}
	return G.Nodes{dl, nil}, nil
}
