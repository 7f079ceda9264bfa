package mamba

import (
	"fmt"
	"hash"
	"slices"

	"github.com/chewxy/hm"
	"github.com/lilygo/lily/internal/opkit"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// CausalConv1D is Mamba's depthwise causal convolution over time: for
// x [batch, L, channels], weight [channels, k] and bias [channels] (nil for
// none),
//
//	y[b, t, c] = bias[c] + Σ_{j<k} weight[c, j]·x[b, t−(k−1)+j, c]
//
// where x is zero before t = 0. It equals PyTorch's
// nn.Conv1d(channels, channels, k, groups=channels, padding=k−1) applied to
// x transposed to [batch, channels, L] and cut to the first L outputs; the
// PyTorch weight [channels, 1, k] holds the same elements as weight. The op
// is differentiable in x, weight and bias and costs batch·L·channels·k
// multiply-adds each way.
func CausalConv1D(x, weight, bias *G.Node) (*G.Node, error) {
	op := convOp{bias: bias != nil}
	in := G.Nodes{x, weight}
	if bias != nil {
		in = append(in, bias)
	}
	shapes := make([]G.DimSizer, len(in))
	for i, n := range in {
		shapes[i] = n.Shape()
	}
	if _, err := op.InferShape(shapes...); err != nil {
		return nil, errors.Wrap(err, "mamba.CausalConv1D")
	}
	n, err := G.ApplyOp(op, in...)
	return n, errors.Wrapf(err, "mamba.CausalConv1D(x %v, weight %v)", x.Shape(), weight.Shape())
}

// convOp is the forward convolution, with or without bias.
type convOp struct {
	opkit.Base
	bias bool
}

// convDims are batch, length, channels and kernel size.
type convDims struct{ b, l, c, k int }

func (op convOp) dims(s []tensor.Shape) (convDims, error) {
	x, w := s[0], s[1]
	if len(x) != 3 || len(w) != 2 || w[0] != x[2] {
		return convDims{}, errors.Errorf("%v: want x [batch, L, channels] and weight [channels, k], got %v and %v", op, x, w)
	}
	if op.bias && !slices.Equal(s[2], tensor.Shape{x[2]}) {
		return convDims{}, errors.Errorf("%v: bias %v, want [%d]", op, s[2], x[2])
	}
	return convDims{b: x[0], l: x[1], c: x[2], k: w[1]}, nil
}

// Arity is 3 with a bias, 2 without.
func (op convOp) Arity() int {
	if op.bias {
		return 3
	}
	return 2
}

// Type is (x, weight[, bias]) → y.
func (op convOp) Type() hm.Type {
	if op.bias {
		return opkit.FnType(3, 2, 1, 3)
	}
	return opkit.FnType(3, 2, 3)
}

// InferShape checks the inputs and returns x's shape.
func (op convOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, op.Arity(), in)
	if err != nil {
		return nil, err
	}
	if _, err := op.dims(s); err != nil {
		return nil, err
	}
	return s[0], nil
}

// Do runs the convolution.
func (op convOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doConv[float64], doConv[float32])
}

// WriteHash writes the description, which names every parameter.
func (op convOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }

// Hashcode hashes the description.
func (op convOp) Hashcode() uint32 { return opkit.Hashcode(op) }

// String describes the op.
func (op convOp) String() string { return fmt.Sprintf("mamba.causalConv{bias=%t}", op.bias) }

// DiffWRT: every input is differentiable.
func (op convOp) DiffWRT(n int) []bool {
	d := make([]bool, n)
	for i := range d {
		d[i] = true
	}
	return d
}

// SymDiff computes every gradient with one backward op.
func (op convOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if len(in) != op.Arity() {
		return nil, errors.Errorf("%v: expected %d inputs, got %d", op, op.Arity(), len(in))
	}
	g := convGradOp{convOp: op}
	for _, n := range in {
		g.shapes = append(g.shapes, n.Shape().Clone())
	}
	return unpackGrads(g, append(in[:len(in):len(in)], grad)...)
}

func doConv[T opkit.Float](op convOp, vs []G.Value) (G.Value, error) {
	in, shapes, err := opkit.Slices[T](op, vs)
	if err != nil {
		return nil, err
	}
	dm, err := op.dims(shapes)
	if err != nil {
		return nil, err
	}
	x, w := in[0], in[1]
	out, y := opkit.NewDense[T](shapes[0])
	for b := 0; b < dm.b; b++ {
		for t := 0; t < dm.l; t++ {
			yrow := y[(b*dm.l+t)*dm.c : (b*dm.l+t+1)*dm.c]
			for c := range yrow {
				acc := 0.0
				if op.bias {
					acc = float64(in[2][c])
				}
				for j := max(0, dm.k-1-t); j < dm.k; j++ {
					src := t - (dm.k - 1) + j
					acc += float64(w[c*dm.k+j]) * float64(x[(b*dm.l+src)*dm.c+c])
				}
				yrow[c] = T(acc)
			}
		}
	}
	return out, nil
}

// convGradOp computes dx, dweight (and dbias) packed into one vector.
type convGradOp struct {
	convOp
	shapes []tensor.Shape
}

// gradShapes returns the input shapes.
func (op convGradOp) gradShapes() []tensor.Shape { return op.shapes }

// Arity is the forward arity plus the output gradient.
func (op convGradOp) Arity() int { return op.convOp.Arity() + 1 }

// Type is (x, weight[, bias], dy) → packed gradients.
func (op convGradOp) Type() hm.Type {
	if op.bias {
		return opkit.FnType(3, 2, 1, 3, 1)
	}
	return opkit.FnType(3, 2, 3, 1)
}

// InferShape checks the inputs and returns the packed length.
func (op convGradOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, op.Arity(), in)
	if err != nil {
		return nil, err
	}
	total := 0
	for i, want := range op.shapes {
		if !slices.Equal(s[i], want) {
			return nil, errors.Errorf("%v: input %d has shape %v, want %v", op, i, s[i], want)
		}
		total += want.TotalSize()
	}
	if !slices.Equal(s[len(s)-1], s[0]) {
		return nil, errors.Errorf("%v: output gradient %v, want %v", op, s[len(s)-1], s[0])
	}
	if _, err := op.dims(s[:len(s)-1]); err != nil {
		return nil, err
	}
	return tensor.Shape{total}, nil
}

// Do computes the packed gradients.
func (op convGradOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doConvGrad[float64], doConvGrad[float32])
}

// WriteHash writes the description, which names every parameter.
func (op convGradOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }

// Hashcode hashes the description.
func (op convGradOp) Hashcode() uint32 { return opkit.Hashcode(op) }

// String describes the op.
func (op convGradOp) String() string {
	return fmt.Sprintf("mamba.causalConvGrad{bias=%t,shapes=%v}", op.bias, op.shapes)
}

// DiffWRT: the backward op is not differentiated again.
func (op convGradOp) DiffWRT(n int) []bool { return make([]bool, n) }

// SymDiff is not supported (no second-order gradients).
func (op convGradOp) SymDiff(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) {
	return nil, errors.Errorf("%v: second-order gradients are not supported", op)
}

func doConvGrad[T opkit.Float](op convGradOp, vs []G.Value) (G.Value, error) {
	in, shapes, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	dm, _ := op.dims(shapes[:len(shapes)-1])
	x, w, gy := in[0], in[1], in[len(in)-1]
	out, packed := opkit.NewDense[T](want)
	nx := dm.b * dm.l * dm.c
	dx := packed[:nx]
	dw := make([]float64, dm.c*dm.k)
	db := make([]float64, dm.c)
	for b := 0; b < dm.b; b++ {
		for t := 0; t < dm.l; t++ {
			for c := 0; c < dm.c; c++ {
				g := float64(gy[(b*dm.l+t)*dm.c+c])
				db[c] += g
				for j := max(0, dm.k-1-t); j < dm.k; j++ {
					src := (b*dm.l+t-(dm.k-1)+j)*dm.c + c
					dx[src] += T(g * float64(w[c*dm.k+j]))
					dw[c*dm.k+j] += g * float64(x[src])
				}
			}
		}
	}
	for i, v := range dw {
		packed[nx+i] = T(v)
	}
	if op.bias {
		for i, v := range db {
			packed[nx+len(dw)+i] = T(v)
		}
	}
	return out, nil
}
