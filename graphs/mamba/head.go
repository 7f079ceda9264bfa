package mamba

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
	"gonum.org/v1/gonum/blas"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// tiedHead returns x·tableᵀ for x [..., d] and the embedding table [V, d]:
// the LM head tied to the embeddings, as one GEMM through
// gorgonia.WhichBLAS() without materialising the transpose.
func tiedHead(x, table *G.Node) (*G.Node, error) {
	op := headOp{rank: x.Dims()}
	if _, err := op.InferShape(x.Shape(), table.Shape()); err != nil {
		return nil, err
	}
	n, err := G.ApplyOp(op, x, table)
	return n, errors.Wrapf(err, "tied LM head (%v, %v)", x.Shape(), table.Shape())
}

// headOp is x·tableᵀ, or with grad set the table's gradient dyᵀ·x
// (inputs dy [..., V] and x [..., d], output [V, d]).
type headOp struct {
	rank int
	grad bool
}

// Arity is 2.
func (op headOp) Arity() int { return 2 }

// Type is (x, table) → logits or (dy, x) → dtable.
func (op headOp) Type() hm.Type {
	if op.grad {
		return fnType(op.rank, op.rank, 2)
	}
	return fnType(op.rank, 2, op.rank)
}

// InferShape checks the operands.
func (op headOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := shapesOf(op, 2, in)
	if err != nil {
		return nil, err
	}
	a, b := s[0], s[1]
	if len(a) != op.rank || op.rank < 2 {
		return nil, errors.Errorf("%v: first operand %v", op, a)
	}
	if op.grad {
		if len(b) != op.rank || !sameShape(a[:op.rank-1], b[:op.rank-1]) {
			return nil, errors.Errorf("%v: operands %v and %v", op, a, b)
		}
		return tensor.Shape{a[op.rank-1], b[op.rank-1]}, nil
	}
	if len(b) != 2 || b[1] != a[op.rank-1] {
		return nil, errors.Errorf("%v: x %v does not fit a table %v", op, a, b)
	}
	out := a.Clone()
	out[op.rank-1] = b[0]
	return out, nil
}

// Do multiplies.
func (op headOp) Do(vs ...G.Value) (G.Value, error) {
	f64, err := isFloat64(op, vs)
	if err != nil {
		return nil, err
	}
	if f64 {
		return doHead[float64](op, vs)
	}
	return doHead[float32](op, vs)
}

func doHead[T float](op headOp, vs []G.Value) (G.Value, error) {
	in, shapes, err := slices[T](op, vs)
	if err != nil {
		return nil, err
	}
	want, err := op.InferShape(dimSizers(shapes)...)
	if err != nil {
		return nil, err
	}
	out, c := newDense[T](want)
	a, b := in[0], in[1]
	ka, kb := shapes[0][op.rank-1], shapes[1][len(shapes[1])-1]
	rows := len(a) / ka
	if op.grad {
		// dtable[V, d] = dyᵀ[V, rows]·x[rows, d]
		gemm(blas.Trans, blas.NoTrans, ka, kb, rows, a, ka, b, kb, c, kb)
	} else {
		// logits[rows, V] = x[rows, d]·tableᵀ[d, V]
		v := shapes[1][0]
		gemm(blas.NoTrans, blas.Trans, rows, v, ka, a, ka, b, kb, c, v)
	}
	return out, nil
}

// gemm computes c = op(a)·op(b) for row-major operands through Gorgonia's
// current BLAS.
func gemm[T float](tA, tB blas.Transpose, m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int) {
	switch av := any(a).(type) {
	case []float64:
		G.WhichBLAS().Dgemm(tA, tB, m, n, k, 1, av, lda, any(b).([]float64), ldb, 0, any(c).([]float64), ldc)
	case []float32:
		G.WhichBLAS().Sgemm(tA, tB, m, n, k, 1, av, lda, any(b).([]float32), ldb, 0, any(c).([]float32), ldc)
	}
}

// ReturnsPtr is false.
func (op headOp) ReturnsPtr() bool { return false }

// CallsExtern is false.
func (op headOp) CallsExtern() bool { return false }

// OverwritesInput is -1.
func (op headOp) OverwritesInput() int { return -1 }

// WriteHash writes the description, which names every parameter.
func (op headOp) WriteHash(h hash.Hash) { fmt.Fprint(h, op.String()) }

// Hashcode hashes the description.
func (op headOp) Hashcode() uint32 { return hashOf(op) }

// String describes the op.
func (op headOp) String() string {
	return fmt.Sprintf("mamba.tiedHead{rank=%d,grad=%t}", op.rank, op.grad)
}

// DiffWRT: the forward op is differentiable in both operands.
func (op headOp) DiffWRT(n int) []bool { return []bool{!op.grad, !op.grad} }

// SymDiff returns dx = dy·table and dtable = dyᵀ·x.
func (op headOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if op.grad || len(in) != 2 {
		return nil, errors.Errorf("%v: second-order gradients are not supported", op)
	}
	dx, err := lilyop.MatMul(grad, in[1])
	if err != nil {
		return nil, errors.Wrapf(err, "%v: dx", op)
	}
	dt, err := G.ApplyOp(headOp{rank: op.rank, grad: true}, grad, in[0])
	if err != nil {
		return nil, errors.Wrapf(err, "%v: dtable", op)
	}
	return G.Nodes{dx, dt}, nil
}
