package roberta

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	"github.com/lilygo/lily/internal/opkit"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// firstToken returns x[:, 0, :] ([batch, hidden]) of x [batch, tokens,
// hidden]: the <s> token the classification head reads. It copies, so no
// view of x escapes into the graph.
func firstToken(x *G.Node) (*G.Node, error) {
	if x.Dims() != 3 {
		return nil, errors.Errorf("first token: need [batch, tokens, hidden], got %v", x.Shape())
	}
	n, err := opkit.Apply(firstTokenOp{tokens: x.Shape()[1]}, x)
	return n, errors.Wrapf(err, "first token of %v", x.Shape())
}

// firstTokenOp selects token 0 of every sequence; with scatter set it is its
// gradient, placing a [batch, hidden] gradient at token 0 of a zero
// [batch, tokens, hidden] tensor.
type firstTokenOp struct {
	opkit.Base
	tokens  int
	scatter bool
}

func (op firstTokenOp) Arity() int { return 1 }
func (op firstTokenOp) Type() hm.Type {
	if op.scatter {
		return opkit.FnType(2, 3)
	}
	return opkit.FnType(3, 2)
}
func (op firstTokenOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op firstTokenOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op firstTokenOp) String() string {
	return fmt.Sprintf("roberta.firstToken{tokens=%d,scatter=%t}", op.tokens, op.scatter)
}
func (op firstTokenOp) DiffWRT(int) []bool { return []bool{!op.scatter} }

func (op firstTokenOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if op.scatter || len(in) != 1 {
		return nil, errors.Errorf("%v: second-order gradients are not supported", op)
	}
	g, err := opkit.Apply(firstTokenOp{tokens: op.tokens, scatter: true}, grad)
	return G.Nodes{g}, errors.Wrapf(err, "%v gradient", op)
}

func (op firstTokenOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, 1, in)
	if err != nil {
		return nil, err
	}
	x := s[0]
	if op.scatter {
		if len(x) != 2 {
			return nil, errors.Errorf("%v: gradient %v, want [batch, hidden]", op, x)
		}
		return tensor.Shape{x[0], op.tokens, x[1]}, nil
	}
	if len(x) != 3 || x[1] != op.tokens {
		return nil, errors.Errorf("%v: input %v, want [batch, %d, hidden]", op, x, op.tokens)
	}
	return tensor.Shape{x[0], x[2]}, nil
}

func (op firstTokenOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doFirstToken[float64], doFirstToken[float32])
}

func doFirstToken[T opkit.Float](op firstTokenOp, vs []G.Value) (G.Value, error) {
	d, _, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	out, o := opkit.NewDense[T](want)
	x := d[0]
	if op.scatter {
		b, h := want[0], want[2]
		for i := 0; i < b; i++ {
			copy(o[i*op.tokens*h:][:h], x[i*h:][:h])
		}
		return out, nil
	}
	b, h := want[0], want[1]
	for i := 0; i < b; i++ {
		copy(o[i*h:][:h], x[i*op.tokens*h:][:h])
	}
	return out, nil
}
