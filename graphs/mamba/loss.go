package mamba

import (
	"fmt"
	"hash"
	"math"

	"github.com/chewxy/hm"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// IgnoreIndex marks a label that the loss skips, as PyTorch's
// cross_entropy and Hugging Face's causal-LM losses do (-100).
const IgnoreIndex = -100

// LMLoss returns the mean cross-entropy of logits [..., V] against labels
// (a tensor.Int node of the leading shape [...]), over the labels that are
// not IgnoreIndex: −mean log softmax(logits)[label]. With no label left the
// loss and its gradient are 0 (PyTorch returns NaN). The log-softmax is
// fused into the op, computed stably (max-shifted, in float64), and its
// gradient (softmax − one-hot)/count is recomputed in the backward pass, so
// the only activation of vocabulary size the loss adds is that gradient. A
// label outside [0, V) other than IgnoreIndex makes the run fail.
func LMLoss(logits, labels *G.Node) (*G.Node, error) {
	if logits.Dims() < 2 || labels.Dims() != logits.Dims()-1 {
		return nil, errors.Errorf("mamba.LMLoss: logits %v and labels %v; want [..., V] and [...]", logits.Shape(), labels.Shape())
	}
	if labels.Dtype() != tensor.Int {
		return nil, errors.Errorf("mamba.LMLoss: labels have dtype %v, want tensor.Int", labels.Dtype())
	}
	op := lossOp{rank: logits.Dims()}
	if _, err := op.InferShape(logits.Shape(), labels.Shape()); err != nil {
		return nil, errors.Wrap(err, "mamba.LMLoss")
	}
	n, err := G.ApplyOp(op, logits, labels)
	return n, errors.Wrapf(err, "mamba.LMLoss(%v, %v)", logits.Shape(), labels.Shape())
}

// lossOp is the loss, (logits, labels) → scalar; with grad set it is its
// gradient, (logits, labels, dloss) → dlogits.
type lossOp struct {
	rank int
	grad bool
}

// Arity is 2, or 3 for the gradient.
func (op lossOp) Arity() int {
	if op.grad {
		return 3
	}
	return 2
}

// Type is (logits, labels) → scalar or (logits, labels, scalar) → logits.
func (op lossOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	logits := G.TensorType{Dims: op.rank, Of: a}
	labels := G.TensorType{Dims: op.rank - 1, Of: tensor.Int}
	if op.grad {
		return hm.NewFnType(logits, labels, a, G.TensorType{Dims: op.rank, Of: a})
	}
	return hm.NewFnType(logits, labels, a)
}

// InferShape checks that labels match the leading shape of logits.
func (op lossOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	if len(in) != op.Arity() {
		return nil, errors.Errorf("%v: expected %d inputs, got %d", op, op.Arity(), len(in))
	}
	s, err := shapesOf(op, 2, in[:2])
	if err != nil {
		return nil, err
	}
	if len(s[0]) != op.rank || !sameShape(s[0][:op.rank-1], s[1]) {
		return nil, errors.Errorf("%v: logits %v and labels %v", op, s[0], s[1])
	}
	if op.grad {
		return s[0], nil
	}
	return tensor.ScalarShape(), nil
}

// Do computes the loss or its gradient.
func (op lossOp) Do(vs ...G.Value) (G.Value, error) {
	if len(vs) != op.Arity() {
		return nil, errors.Errorf("%v: expected %d inputs, got %d", op, op.Arity(), len(vs))
	}
	f64, err := isFloat64(op, vs[:1])
	if err != nil {
		return nil, err
	}
	if f64 {
		return doLoss[float64](op, vs)
	}
	return doLoss[float32](op, vs)
}

func doLoss[T float](op lossOp, vs []G.Value) (G.Value, error) {
	lg, shapes, err := slices[T](op, vs[:1])
	if err != nil {
		return nil, err
	}
	ld, ok := vs[1].(*tensor.Dense)
	if !ok {
		return nil, errors.Errorf("%v: labels are a %T", op, vs[1])
	}
	labels, ok := ld.Data().([]int)
	if !ok || !sameShape(ld.Shape(), shapes[0][:op.rank-1]) {
		return nil, errors.Errorf("%v: labels %v (%v) for logits %v", op, ld.Shape(), ld.Dtype(), shapes[0])
	}
	logits := lg[0]
	v := shapes[0][op.rank-1]
	count := 0
	for i, l := range labels {
		if l == IgnoreIndex {
			continue
		}
		if l < 0 || l >= v {
			return nil, errors.Errorf("%v: label %d at position %d is outside [0, %d)", op, l, i, v)
		}
		count++
	}
	var out *tensor.Dense
	var dl []T
	scale := 0.0
	if op.grad {
		out, dl = newDense[T](shapes[0])
		g, err := scalarOf(vs[2])
		if err != nil {
			return nil, errors.Wrapf(err, "%v", op)
		}
		if count > 0 {
			scale = g / float64(count)
		}
	}
	total := 0.0
	for i, l := range labels {
		if l == IgnoreIndex {
			continue
		}
		row := logits[i*v : (i+1)*v]
		m := math.Inf(-1)
		for _, x := range row {
			m = math.Max(m, float64(x))
		}
		sum := 0.0
		for _, x := range row {
			sum += math.Exp(float64(x) - m)
		}
		logZ := m + math.Log(sum)
		total += logZ - float64(row[l])
		if op.grad {
			drow := dl[i*v : (i+1)*v]
			for j, x := range row {
				drow[j] = T(scale * math.Exp(float64(x)-logZ))
			}
			drow[l] -= T(scale)
		}
	}
	if op.grad {
		return out, nil
	}
	if count > 0 {
		total /= float64(count)
	}
	if _, is64 := any(logits).([]float64); is64 {
		return G.NewF64(total), nil
	}
	return G.NewF32(float32(total)), nil
}

// scalarOf reads a float32 or float64 scalar value.
func scalarOf(v G.Value) (float64, error) {
	switch x := v.Data().(type) {
	case float64:
		return x, nil
	case float32:
		return float64(x), nil
	}
	return 0, errors.Errorf("the loss gradient is a %T, want a float scalar", v.Data())
}

// ReturnsPtr is false.
func (op lossOp) ReturnsPtr() bool { return false }

// CallsExtern is false.
func (op lossOp) CallsExtern() bool { return false }

// OverwritesInput is -1.
func (op lossOp) OverwritesInput() int { return -1 }

// WriteHash writes the description, which names every parameter.
func (op lossOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }

// Hashcode hashes the description.
func (op lossOp) Hashcode() uint32 { return hashOf(op) }

// String describes the op.
func (op lossOp) String() string {
	return fmt.Sprintf("mamba.lmLoss{rank=%d,grad=%t}", op.rank, op.grad)
}

// DiffWRT: the loss is differentiable in the logits only.
func (op lossOp) DiffWRT(n int) []bool {
	d := make([]bool, n)
	d[0] = !op.grad
	return d
}

// SymDiff returns the logits' gradient (none for the labels).
func (op lossOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if op.grad || len(in) != 2 {
		return nil, errors.Errorf("%v: second-order gradients are not supported", op)
	}
	d, err := G.ApplyOp(lossOp{rank: op.rank, grad: true}, in[0], in[1], grad)
	if err != nil {
		return nil, errors.Wrapf(err, "%v: gradient", op)
	}
	return G.Nodes{d, nil}, nil
}
