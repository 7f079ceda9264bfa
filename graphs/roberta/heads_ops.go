package roberta

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	"github.com/lilygo/lily/lilyop"
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
	n, err := G.ApplyOp(firstTokenOp{tokens: x.Shape()[1]}, x)
	return n, errors.Wrapf(err, "first token of %v", x.Shape())
}

// firstTokenOp selects token 0 of every sequence; with scatter set it is its
// gradient, placing a [batch, hidden] gradient at token 0 of a zero
// [batch, tokens, hidden] tensor.
type firstTokenOp struct {
	opBase
	tokens  int
	scatter bool
}

func (op firstTokenOp) Arity() int { return 1 }
func (op firstTokenOp) Type() hm.Type {
	if op.scatter {
		return fnType(2, 3)
	}
	return fnType(3, 2)
}
func (op firstTokenOp) WriteHash(h hash.Hash) { writeHash(h, op) }
func (op firstTokenOp) Hashcode() uint32      { return hashOf(op) }
func (op firstTokenOp) String() string {
	return fmt.Sprintf("roberta.firstToken{tokens=%d,scatter=%t}", op.tokens, op.scatter)
}
func (op firstTokenOp) DiffWRT(int) []bool { return []bool{!op.scatter} }

func (op firstTokenOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if op.scatter || len(in) != 1 {
		return nil, errors.Errorf("%v: second-order gradients are not supported", op)
	}
	g, err := G.ApplyOp(firstTokenOp{tokens: op.tokens, scatter: true}, grad)
	return G.Nodes{g}, errors.Wrapf(err, "%v gradient", op)
}

func (op firstTokenOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(op, 1, in)
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
	f64, err := isFloat64(op, vs)
	if err != nil {
		return nil, err
	}
	if f64 {
		return doFirstToken[float64](op, vs)
	}
	return doFirstToken[float32](op, vs)
}

func doFirstToken[T float](op firstTokenOp, vs []G.Value) (G.Value, error) {
	d, dims, err := inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	want, err := op.InferShape(dims...)
	if err != nil {
		return nil, err
	}
	out, o := newDense[T](want)
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

// tiedDecoder returns x·Eᵀ + bias for x [..., hidden], the word-embedding
// table E [vocab, hidden] and bias [vocab]: the MLM decoder whose weight is
// tied to the input embeddings, as one GEMM over every leading row. x, E and
// bias are differentiated (E receives the decoder's gradient on top of the
// embedding lookup's).
func tiedDecoder(x, table, bias *G.Node) (*G.Node, error) {
	if x.Dims() < 2 || table.Dims() != 2 || bias.Dims() != 1 {
		return nil, errors.Errorf("tied decoder: need x [..., hidden], E [vocab, hidden], bias [vocab], got %v, %v, %v", x.Shape(), table.Shape(), bias.Shape())
	}
	n, err := G.ApplyOp(decoderOp{rank: x.Dims(), part: decForward}, x, table, bias)
	return n, errors.Wrapf(err, "tied decoder %v·%vᵀ", x.Shape(), table.Shape())
}

// decoderPart says what a decoderOp computes.
type decoderPart int

const (
	// decForward: (x, E, b) → x·Eᵀ + b.
	decForward decoderPart = iota
	// decGradTable: (x, dY) → dYᵀ·x, the gradient of E.
	decGradTable
	// decGradBias: (dY) → the sum of dY over every leading row.
	decGradBias
)

// decoderOp is the tied decoder or one of its gradients; rank is x's rank.
type decoderOp struct {
	opBase
	rank int
	part decoderPart
}

func (op decoderOp) Arity() int { return [...]int{3, 2, 1}[op.part] }
func (op decoderOp) Type() hm.Type {
	switch op.part {
	case decGradTable:
		return fnType(op.rank, op.rank, 2)
	case decGradBias:
		return fnType(op.rank, 1)
	}
	return fnType(op.rank, 2, 1, op.rank)
}
func (op decoderOp) WriteHash(h hash.Hash) { writeHash(h, op) }
func (op decoderOp) Hashcode() uint32      { return hashOf(op) }
func (op decoderOp) String() string {
	return fmt.Sprintf("roberta.tiedDecoder{rank=%d,part=%d}", op.rank, op.part)
}
func (op decoderOp) DiffWRT(n int) []bool {
	d := make([]bool, n)
	if op.part == decForward {
		for i := range d {
			d[i] = true
		}
	}
	return d
}

// SymDiff returns dx = dY·E (a plain folded GEMM), dE = dYᵀ·x and db = Σ dY.
func (op decoderOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if op.part != decForward || len(in) != 3 {
		return nil, errors.Errorf("%v: second-order gradients are not supported", op)
	}
	dx, err := lilyop.MatMul(grad, in[1])
	if err != nil {
		return nil, errors.Wrapf(err, "%v input gradient", op)
	}
	dE, err := G.ApplyOp(decoderOp{rank: op.rank, part: decGradTable}, in[0], grad)
	if err != nil {
		return nil, errors.Wrapf(err, "%v table gradient", op)
	}
	db, err := G.ApplyOp(decoderOp{rank: op.rank, part: decGradBias}, grad)
	if err != nil {
		return nil, errors.Wrapf(err, "%v bias gradient", op)
	}
	return G.Nodes{dx, dE, db}, nil
}

func (op decoderOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(op, op.Arity(), in)
	if err != nil {
		return nil, err
	}
	x := s[0]
	if len(x) != op.rank {
		return nil, errors.Errorf("%v: input %v has the wrong rank", op, x)
	}
	last := x[len(x)-1]
	switch op.part {
	case decGradBias:
		return tensor.Shape{last}, nil
	case decGradTable:
		g := s[1]
		if len(g) != op.rank || !g[:len(g)-1].Eq(x[:len(x)-1]) {
			return nil, errors.Errorf("%v: input %v and gradient %v do not fit", op, x, g)
		}
		return tensor.Shape{g[len(g)-1], last}, nil
	}
	e, b := s[1], s[2]
	if len(e) != 2 || e[1] != last || len(b) != 1 || b[0] != e[0] {
		return nil, errors.Errorf("%v: x %v, table %v and bias %v do not fit", op, x, e, b)
	}
	out := x.Clone()
	out[len(out)-1] = e[0]
	return out, nil
}

func (op decoderOp) Do(vs ...G.Value) (G.Value, error) {
	f64, err := isFloat64(op, vs)
	if err != nil {
		return nil, err
	}
	if f64 {
		return doDecoder[float64](op, vs)
	}
	return doDecoder[float32](op, vs)
}

func doDecoder[T float](op decoderOp, vs []G.Value) (G.Value, error) {
	d, dims, err := inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	want, err := op.InferShape(dims...)
	if err != nil {
		return nil, err
	}
	out, o := newDense[T](want)
	xs := dims[0].(tensor.Shape)
	k := xs[len(xs)-1]
	m := xs.TotalSize() / k
	switch op.part {
	case decGradBias:
		for i, v := range d[0] {
			o[i%k] += v
		}
	case decGradTable:
		n := want[0]
		gemm(true, false, n, k, m, 1, d[1], n, d[0], k, 0, o, k)
	default:
		n := want[len(want)-1]
		for i := 0; i < m; i++ {
			copy(o[i*n:(i+1)*n], d[2])
		}
		gemm(false, true, m, n, k, 1, d[0], k, d[1], k, 1, o, n)
	}
	return out, nil
}
