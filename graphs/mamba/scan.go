package mamba

import (
	"fmt"
	"hash"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/chewxy/hm"
	"github.com/lilygo/lily/internal/opkit"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// ScanOptions tunes SelectiveScan.
type ScanOptions struct {
	// DeltaSoftplus applies PyTorch's softplus (beta 1, threshold 20) to
	// delta inside the op, as the reference kernel's delta_softplus flag
	// does: the input is then dt_proj's raw output, and the positive step
	// sizes are never stored as a separate activation.
	DeltaSoftplus bool
}

// SelectiveScan is Mamba's selective state-space scan (S6) as one op with a
// hand-written backward pass. For every sequence b and channel c, starting
// from h = 0:
//
//	h_t = exp(delta_t·A[c])⊙h_{t−1} + delta_t·u_t·B_t   (h_t ∈ ℝ^{d_state})
//	y_t = ⟨C_t, h_t⟩ + D[c]·u_t
//
// with u, delta [batch, L, d_inner], A [d_inner, d_state],
// B, C [batch, L, d_state] and D [d_inner]; the result y has u's shape.
// delta must be positive (the step size) unless opt.DeltaSoftplus makes it
// so. The op is differentiable in all six inputs and runs in float32 or
// float64, accumulating in float64 either way.
//
// Memory: nothing is kept between the forward and the backward pass except
// the inputs, which the graph holds anyway; the hidden states
// [batch, L, d_inner, d_state], the one quantity that grows with all four
// sizes, are never stored. The backward pass recomputes them for one
// (sequence, channel) pair at a time into a scratch of about 4·L·d_state
// float64 per worker, and its output is the packed gradients (the size of
// the six inputs) plus their unpacked copies. Time: the forward pass costs
// batch·L·d_inner·d_state exponentials and about as many multiply-adds;
// the backward pass the same exponentials again (the recomputation) plus a
// reverse sweep of about three times the multiply-adds. Sequences run in
// parallel on up to GOMAXPROCS goroutines; the result does not depend on
// the number of goroutines.
func SelectiveScan(u, delta, A, B, C, D *G.Node, opt ScanOptions) (*G.Node, error) {
	op := scanOp{softplus: opt.DeltaSoftplus}
	if _, err := op.InferShape(u.Shape(), delta.Shape(), A.Shape(), B.Shape(), C.Shape(), D.Shape()); err != nil {
		return nil, errors.Wrap(err, "mamba.SelectiveScan")
	}
	n, err := G.ApplyOp(op, u, delta, A, B, C, D)
	return n, errors.Wrapf(err, "mamba.SelectiveScan(u %v, delta %v, A %v, B %v, C %v, D %v)", u.Shape(), delta.Shape(), A.Shape(), B.Shape(), C.Shape(), D.Shape())
}

// scanOp is the forward scan.
type scanOp struct {
	opkit.Base
	softplus bool
}

// scanDims are the sizes of a scan: batch, length, inner width, state size.
type scanDims struct{ b, l, d, n int }

// dims validates the six input shapes of a scan.
func (op scanOp) dims(s []tensor.Shape) (scanDims, error) {
	u, delta, a, b, c, d := s[0], s[1], s[2], s[3], s[4], s[5]
	if len(u) != 3 || len(a) != 2 {
		return scanDims{}, errors.Errorf("%v: want u [batch, L, d_inner] and A [d_inner, d_state], got %v and %v", op, u, a)
	}
	dm := scanDims{b: u[0], l: u[1], d: u[2], n: a[1]}
	bc := tensor.Shape{dm.b, dm.l, dm.n}
	switch {
	case !slices.Equal(delta, u):
		return dm, errors.Errorf("%v: delta %v, want u's shape %v", op, delta, u)
	case a[0] != dm.d:
		return dm, errors.Errorf("%v: A %v, want [%d, d_state]", op, a, dm.d)
	case !slices.Equal(b, bc) || !slices.Equal(c, bc):
		return dm, errors.Errorf("%v: B %v and C %v, want both %v", op, b, c, bc)
	case !slices.Equal(d, tensor.Shape{dm.d}):
		return dm, errors.Errorf("%v: D %v, want [%d]", op, d, dm.d)
	}
	return dm, nil
}

// Arity is 6: u, delta, A, B, C, D.
func (op scanOp) Arity() int { return 6 }

// Type is (u, delta, A, B, C, D) → y.
func (op scanOp) Type() hm.Type { return opkit.FnType(3, 3, 2, 3, 3, 1, 3) }

// InferShape checks the inputs and returns u's shape.
func (op scanOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, 6, in)
	if err != nil {
		return nil, err
	}
	if _, err := op.dims(s); err != nil {
		return nil, err
	}
	return s[0], nil
}

// Do runs the scan.
func (op scanOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doScan[float64], doScan[float32])
}

// WriteHash writes the description, which names every parameter.
func (op scanOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }

// Hashcode hashes the description.
func (op scanOp) Hashcode() uint32 { return opkit.Hashcode(op) }

// String describes the op.
func (op scanOp) String() string { return fmt.Sprintf("mamba.scan{softplus=%t}", op.softplus) }

// DiffWRT: every input is differentiable.
func (op scanOp) DiffWRT(int) []bool { return []bool{true, true, true, true, true, true} }

// SymDiff computes all six gradients with one backward op.
func (op scanOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if len(in) != 6 {
		return nil, errors.Errorf("%v: expected 6 inputs, got %d", op, len(in))
	}
	shapes := make([]tensor.Shape, 6)
	for i, n := range in {
		shapes[i] = n.Shape().Clone()
	}
	return unpackGrads(scanGradOp{scanOp: op, shapes: shapes}, append(in[:6:6], grad)...)
}

// softplus is PyTorch's softplus with beta 1 and threshold 20, and its
// derivative.
func softplus(x float64) (y, dy float64) {
	if x > 20 {
		return x, 1
	}
	return math.Log1p(math.Exp(x)), 1 / (1 + math.Exp(-x))
}

// step returns the step size of element i of delta.
func (op scanOp) step(raw float64) float64 {
	if op.softplus {
		y, _ := softplus(raw)
		return y
	}
	return raw
}

// workers is the number of goroutines a scan over n sequences uses.
func workers(n int) int { return min(n, runtime.GOMAXPROCS(0)) }

// parallel runs f(w, b) for every b in [0, n) on the given number of
// goroutines; w in [0, workers) identifies the goroutine, for scratch space.
func parallel(n, workers int, f func(w, b int)) {
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for b := w; b < n; b += workers {
				f(w, b)
			}
		}(w)
	}
	wg.Wait()
}

func doScan[T opkit.Float](op scanOp, vs []G.Value) (G.Value, error) {
	in, shapes, err := opkit.Slices[T](op, vs)
	if err != nil {
		return nil, err
	}
	dm, err := op.dims(shapes)
	if err != nil {
		return nil, err
	}
	u, delta, A, B, C, D := in[0], in[1], in[2], in[3], in[4], in[5]
	out, y := opkit.NewDense[T](shapes[0])
	parallel(dm.b, workers(dm.b), func(_, b int) {
		h := make([]float64, dm.n)
		for c := 0; c < dm.d; c++ {
			clear(h)
			a := A[c*dm.n : (c+1)*dm.n]
			for t := 0; t < dm.l; t++ {
				row := b*dm.l + t
				i := row*dm.d + c
				dt, uu := op.step(float64(delta[i])), float64(u[i])
				bt, ct := B[row*dm.n:(row+1)*dm.n], C[row*dm.n:(row+1)*dm.n]
				acc := 0.0
				for j := range h {
					h[j] = math.Exp(dt*float64(a[j]))*h[j] + dt*uu*float64(bt[j])
					acc += float64(ct[j]) * h[j]
				}
				y[i] = T(acc + float64(D[c])*uu)
			}
		}
	})
	return out, nil
}

// scanGradOp computes the gradients of a scan with respect to all six
// inputs from the inputs and the output gradient, packed into one vector:
// du, ddelta, dA, dB, dC, dD.
type scanGradOp struct {
	scanOp
	shapes []tensor.Shape // the six input shapes
}

// gradShapes returns the input shapes: each gradient has its input's shape.
func (op scanGradOp) gradShapes() []tensor.Shape { return op.shapes }

// Arity is 7: the scan's inputs and the output gradient.
func (op scanGradOp) Arity() int { return 7 }

// Type is (u, delta, A, B, C, D, dy) → packed gradients.
func (op scanGradOp) Type() hm.Type { return opkit.FnType(3, 3, 2, 3, 3, 1, 3, 1) }

// InferShape checks the inputs and returns the packed length.
func (op scanGradOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, 7, in)
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
	if !slices.Equal(s[6], s[0]) {
		return nil, errors.Errorf("%v: output gradient %v, want %v", op, s[6], s[0])
	}
	if _, err := op.dims(s[:6]); err != nil {
		return nil, err
	}
	return tensor.Shape{total}, nil
}

// Do computes the packed gradients.
func (op scanGradOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doScanGrad[float64], doScanGrad[float32])
}

// WriteHash writes the description, which names every parameter.
func (op scanGradOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }

// Hashcode hashes the description.
func (op scanGradOp) Hashcode() uint32 { return opkit.Hashcode(op) }

// String describes the op.
func (op scanGradOp) String() string {
	return fmt.Sprintf("mamba.scanGrad{softplus=%t,shapes=%v}", op.softplus, op.shapes)
}

// DiffWRT: the backward op is not differentiated again.
func (op scanGradOp) DiffWRT(n int) []bool { return make([]bool, n) }

// SymDiff is not supported (no second-order gradients).
func (op scanGradOp) SymDiff(G.Nodes, *G.Node, *G.Node) (G.Nodes, error) {
	return nil, errors.Errorf("%v: second-order gradients are not supported", op)
}

// scanScratch is one worker's scratch space for the backward pass.
type scanScratch struct {
	h, e    []float64 // [L·n]: states h_t and decays exp(delta_t·A[c]) of one channel
	dt, dsp []float64 // [L]: one channel's step sizes and their derivatives by delta
	gh      []float64 // [n]: gradient with respect to the current state
	dB, dC  []float64 // [L·n]: one sequence's dB and dC, summed over channels
}

func doScanGrad[T opkit.Float](op scanGradOp, vs []G.Value) (G.Value, error) {
	in, shapes, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	dm, _ := op.dims(shapes[:6])
	u, delta, A, B, C, D, gy := in[0], in[1], in[2], in[3], in[4], in[5], in[6]
	out, packed := opkit.NewDense[T](want)
	bld, bln, dn := dm.b*dm.l*dm.d, dm.b*dm.l*dm.n, dm.d*dm.n
	du, ddelta := packed[:bld], packed[bld:2*bld]
	dA := packed[2*bld : 2*bld+dn]
	dB, dC := packed[2*bld+dn:2*bld+dn+bln], packed[2*bld+dn+bln:2*bld+dn+2*bln]
	dD := packed[2*bld+dn+2*bln:]

	// dA and dD sum over sequences: each sequence writes its own partial
	// sums, added up in order afterwards so the result is deterministic.
	partA := make([]float64, dm.b*dn)
	partD := make([]float64, dm.b*dm.d)
	nw := workers(dm.b)
	scratch := make([]*scanScratch, nw)
	parallel(dm.b, nw, func(w, b int) {
		s := scratch[w]
		if s == nil {
			ln := dm.l * dm.n
			s = &scanScratch{h: make([]float64, ln), e: make([]float64, ln), dt: make([]float64, dm.l), dsp: make([]float64, dm.l),
				gh: make([]float64, dm.n), dB: make([]float64, ln), dC: make([]float64, ln)}
			scratch[w] = s
		}
		clear(s.dB)
		clear(s.dC)
		pa, pd := partA[b*dn:(b+1)*dn], partD[b*dm.d:(b+1)*dm.d]
		for c := 0; c < dm.d; c++ {
			a := A[c*dm.n : (c+1)*dm.n]
			// Recompute this channel's states and decays.
			for t := 0; t < dm.l; t++ {
				row := b*dm.l + t
				i := row*dm.d + c
				dt, dsp := float64(delta[i]), 1.0
				if op.softplus {
					dt, dsp = softplus(dt)
				}
				s.dt[t], s.dsp[t] = dt, dsp
				uu := float64(u[i])
				bt := B[row*dm.n : (row+1)*dm.n]
				for j := range a {
					prev := 0.0
					if t > 0 {
						prev = s.h[(t-1)*dm.n+j]
					}
					e := math.Exp(dt * float64(a[j]))
					s.e[t*dm.n+j] = e
					s.h[t*dm.n+j] = e*prev + dt*uu*float64(bt[j])
				}
			}
			// Reverse sweep: gh holds dL/dh_t, accumulated from y_t and h_{t+1}.
			clear(s.gh)
			pac := pa[c*dm.n : (c+1)*dm.n]
			for t := dm.l - 1; t >= 0; t-- {
				row := b*dm.l + t
				i := row*dm.d + c
				dt, uu, g := s.dt[t], float64(u[i]), float64(gy[i])
				bt, ct := B[row*dm.n:(row+1)*dm.n], C[row*dm.n:(row+1)*dm.n]
				pd[c] += g * uu
				dui := g * float64(D[c])
				ddt := 0.0
				for j := range a {
					k := t*dm.n + j
					prev := 0.0
					if t > 0 {
						prev = s.h[k-dm.n]
					}
					bj, e := float64(bt[j]), s.e[k]
					s.dC[k] += g * s.h[k]
					gj := s.gh[j] + g*float64(ct[j])
					dui += gj * dt * bj
					ddt += gj * (float64(a[j])*e*prev + bj*uu)
					pac[j] += gj * dt * e * prev
					s.dB[k] += gj * dt * uu
					s.gh[j] = gj * e
				}
				du[i] = T(dui)
				ddelta[i] = T(ddt * s.dsp[t])
			}
		}
		for k := range s.dB {
			dB[b*dm.l*dm.n+k] = T(s.dB[k])
			dC[b*dm.l*dm.n+k] = T(s.dC[k])
		}
	})
	sumParts(dA, partA)
	sumParts(dD, partD)
	return out, nil
}

// sumParts writes into dst the sum, in order, of the consecutive
// len(dst)-long blocks of parts.
func sumParts[T opkit.Float](dst []T, parts []float64) {
	n := len(dst)
	acc := make([]float64, n)
	for p := 0; p < len(parts); p += n {
		for i, v := range parts[p : p+n] {
			acc[i] += v
		}
	}
	for i, v := range acc {
		dst[i] = T(v)
	}
}
