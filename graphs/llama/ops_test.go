package llama

import (
	"math"
	"math/rand"
	"testing"

	"github.com/lilygo/lily/internal/gradcheck"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// intNode adds an int input node holding vals.
func intNode(g *G.ExprGraph, name string, vals []int, shape ...int) *G.Node {
	v := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]int(nil), vals...)))
	return G.NewTensor(g, tensor.Int, len(shape), G.WithShape(shape...), G.WithName(name), G.WithValue(v))
}

// floatNode adds a float input node holding v.
func floatNode(g *G.ExprGraph, name string, v *tensor.Dense) *G.Node {
	return G.NewTensor(g, v.Dtype(), v.Dims(), G.WithShape(v.Shape()...), G.WithName(name), G.WithValue(v))
}

// eval runs the graph that build makes and returns the output as float64s.
func eval(t *testing.T, build func(g *G.ExprGraph) (*G.Node, error)) []float64 {
	t.Helper()
	g := G.NewGraph()
	out, err := build(g)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	m := G.NewTapeMachine(g)
	defer m.Close()
	if err := m.RunAll(); err != nil {
		t.Fatalf("%+v", err)
	}
	return toFloat64s(out.Value())
}

func toFloat64s(v G.Value) []float64 {
	switch d := v.Data().(type) {
	case []float64:
		return append([]float64(nil), d...)
	case []float32:
		out := make([]float64, len(d))
		for i, x := range d {
			out[i] = float64(x)
		}
		return out
	case float64:
		return []float64{d}
	case float32:
		return []float64{float64(d)}
	}
	return nil
}

func to32(t *tensor.Dense) *tensor.Dense {
	src := t.Data().([]float64)
	dst := make([]float32, len(src))
	for i, v := range src {
		dst[i] = float32(v)
	}
	return tensor.New(tensor.WithShape(t.Shape().Clone()...), tensor.WithBacking(dst))
}

func closeTo(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > tol*math.Max(1, math.Abs(want[i])) || math.IsNaN(got[i]) {
			t.Fatalf("%s: element %d is %.15g, want %.15g", what, i, got[i], want[i])
		}
	}
}

func seqPositions(n, start int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = start + i
	}
	return p
}

// refRope rotates x [rows·seq][heads·hd] as the two layouts define it,
// written independently of the op: interleaved pairs (2i, 2i+1), halves
// pairs (i, i+hd/2), angle pos·theta^(−2i/hd).
func refRope(x []float64, seq, heads, hd int, pos []int, theta float64, layout RopeLayout) []float64 {
	out := append([]float64(nil), x...)
	w := heads * hd
	for r := 0; r < len(x)/w; r++ {
		p := float64(pos[r%seq])
		for h := 0; h < heads; h++ {
			for i := 0; i < hd/2; i++ {
				a, b := h*hd+2*i, h*hd+2*i+1
				if layout == Halves {
					a, b = h*hd+i, h*hd+i+hd/2
				}
				ang := p * math.Pow(theta, -2*float64(i)/float64(hd))
				xa, xb := x[r*w+a], x[r*w+b]
				out[r*w+a] = xa*math.Cos(ang) - xb*math.Sin(ang)
				out[r*w+b] = xa*math.Sin(ang) + xb*math.Cos(ang)
			}
		}
	}
	return out
}

func TestRopeMatchesPlainGo(t *testing.T) {
	rng := rand.New(rand.NewSource(51))
	for _, layout := range []RopeLayout{Interleaved, Halves} {
		b, seq, heads, hd := 2, 3, 2, 4
		x := gradcheck.Rand(rng, b, seq, heads*hd)
		pos := []int{0, 7, 300}
		want := refRope(x.Data().([]float64), seq, heads, hd, pos, 10000, layout)
		got := eval(t, func(g *G.ExprGraph) (*G.Node, error) {
			return rope(floatNode(g, "x", x), intNode(g, "pos", pos, seq), heads, hd, 10000, layout)
		})
		closeTo(t, "rope "+layout.String(), got, want, 1e-12)
		got32 := eval(t, func(g *G.ExprGraph) (*G.Node, error) {
			return rope(floatNode(g, "x", to32(x)), intNode(g, "pos", pos, seq), heads, hd, 10000, layout)
		})
		closeTo(t, "rope float32 "+layout.String(), got32, want, 1e-5)
	}
}

func TestRopeGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(52))
	for _, layout := range []RopeLayout{Interleaved, Halves} {
		for trial := 0; trial < 2; trial++ {
			b, seq, heads, hd := 1+rng.Intn(2), 1+rng.Intn(4), 1+rng.Intn(3), 2*(1+rng.Intn(3))
			pos := seqPositions(seq, rng.Intn(20))
			in := []gradcheck.Input{{Name: "x", Value: gradcheck.Rand(rng, b, seq, heads*hd), Diff: true}}
			gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) {
				return rope(n[0], intNode(g, "pos", pos, seq), heads, hd, 500, layout)
			}, in, gradcheck.Options{})
		}
	}
}

// refAttention is causal grouped-query attention written loop by loop.
func refAttention(q, k, v []float64, batch, seq, heads, kvHeads, hd int) []float64 {
	wq, wk := heads*hd, kvHeads*hd
	out := make([]float64, len(q))
	for b := 0; b < batch; b++ {
		for h := 0; h < heads; h++ {
			g := h / (heads / kvHeads)
			for t := 0; t < seq; t++ {
				scores := make([]float64, t+1)
				mx := math.Inf(-1)
				for j := 0; j <= t; j++ {
					for d := 0; d < hd; d++ {
						scores[j] += q[(b*seq+t)*wq+h*hd+d] * k[(b*seq+j)*wk+g*hd+d]
					}
					scores[j] /= math.Sqrt(float64(hd))
					mx = math.Max(mx, scores[j])
				}
				var z float64
				for j := range scores {
					scores[j] = math.Exp(scores[j] - mx)
					z += scores[j]
				}
				for j := range scores {
					for d := 0; d < hd; d++ {
						out[(b*seq+t)*wq+h*hd+d] += scores[j] / z * v[(b*seq+j)*wk+g*hd+d]
					}
				}
			}
		}
	}
	return out
}

func TestAttentionMatchesPlainGo(t *testing.T) {
	rng := rand.New(rand.NewSource(53))
	b, seq, heads, kvh, hd := 2, 5, 4, 2, 3
	q := gradcheck.Rand(rng, b, seq, heads*hd)
	k := gradcheck.Rand(rng, b, seq, kvh*hd)
	v := gradcheck.Rand(rng, b, seq, kvh*hd)
	want := refAttention(q.Data().([]float64), k.Data().([]float64), v.Data().([]float64), b, seq, heads, kvh, hd)
	for _, f32 := range []bool{false, true} {
		conv, tol := func(d *tensor.Dense) *tensor.Dense { return d }, 1e-12
		if f32 {
			conv, tol = to32, 1e-5
		}
		got := eval(t, func(g *G.ExprGraph) (*G.Node, error) {
			return attention(floatNode(g, "q", conv(q)), floatNode(g, "k", conv(k)), floatNode(g, "v", conv(v)), heads, kvh, hd)
		})
		closeTo(t, "attention", got, want, tol)
	}
}

func TestAttentionGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(54))
	for _, c := range [][4]int{{1, 1, 1, 2}, {2, 4, 2, 1}, {1, 3, 3, 2}, {2, 2, 1, 3}} {
		heads, kvh, hd := c[1], c[2], c[3]
		b, seq := c[0], 1+rng.Intn(4)
		in := []gradcheck.Input{
			{Name: "q", Value: gradcheck.Rand(rng, b, seq, heads*hd), Diff: true},
			{Name: "k", Value: gradcheck.Rand(rng, b, seq, kvh*hd), Diff: true},
			{Name: "v", Value: gradcheck.Rand(rng, b, seq, kvh*hd), Diff: true},
		}
		gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) {
			return attention(n[0], n[1], n[2], heads, kvh, hd)
		}, in, gradcheck.Options{})
	}
}

func TestCachedAttentionMatchesFull(t *testing.T) {
	rng := rand.New(rand.NewSource(55))
	b, seq, heads, kvh, hd := 2, 6, 4, 2, 2
	q := gradcheck.Rand(rng, b, seq, heads*hd)
	k := gradcheck.Rand(rng, b, seq, kvh*hd)
	v := gradcheck.Rand(rng, b, seq, kvh*hd)
	want := refAttention(q.Data().([]float64), k.Data().([]float64), v.Data().([]float64), b, seq, heads, kvh, hd)
	cache := &kvCache{batch: b, maxSeq: 8, width: kvh * hd}
	// Feed the sequence in chunks of 1, 3 and 2 positions.
	slice := func(x *tensor.Dense, from, to int) *tensor.Dense {
		w := x.Shape()[2]
		d := x.Data().([]float64)
		var out []float64
		for bb := 0; bb < b; bb++ {
			out = append(out, d[(bb*seq+from)*w:(bb*seq+to)*w]...)
		}
		return tensor.New(tensor.WithShape(b, to-from, w), tensor.WithBacking(out))
	}
	got := make([][]float64, 0)
	for _, ch := range [][2]int{{0, 1}, {1, 4}, {4, 6}} {
		n := ch[1] - ch[0]
		got = append(got, eval(t, func(g *G.ExprGraph) (*G.Node, error) {
			return cachedAttention(floatNode(g, "q", slice(q, ch[0], ch[1])), floatNode(g, "k", slice(k, ch[0], ch[1])),
				floatNode(g, "v", slice(v, ch[0], ch[1])), intNode(g, "pos", seqPositions(n, ch[0]), n), heads, kvh, hd, cache)
		}))
	}
	w := heads * hd
	for bb := 0; bb < b; bb++ {
		var row []float64
		for i, ch := range [][2]int{{0, 1}, {1, 4}, {4, 6}} {
			n := ch[1] - ch[0]
			row = append(row, got[i][bb*n*w:(bb+1)*n*w]...)
		}
		closeTo(t, "cached attention", row, want[bb*seq*w:(bb+1)*seq*w], 1e-12)
	}
	// A gap in the positions is an error.
	g := G.NewGraph()
	_, err := cachedAttention(floatNode(g, "q", slice(q, 0, 1)), floatNode(g, "k", slice(k, 0, 1)), floatNode(g, "v", slice(v, 0, 1)),
		intNode(g, "pos", []int{7}, 1), heads, kvh, hd, cache)
	if err != nil {
		t.Fatal(err)
	}
	m := G.NewTapeMachine(g)
	defer m.Close()
	if err := m.RunAll(); err == nil {
		t.Error("position 7 after 6 cached ones must fail")
	}
}

func TestOpIdentity(t *testing.T) {
	c1, c2 := &kvCache{}, &kvCache{}
	ops := []interface{ Hashcode() uint32 }{
		ropeOp{heads: 2, headDim: 4, theta: 10000},
		ropeOp{heads: 2, headDim: 4, theta: 500},
		ropeOp{heads: 2, headDim: 4, theta: 10000, layout: Interleaved},
		ropeOp{heads: 2, headDim: 4, theta: 10000, inverse: true},
		ropeOp{heads: 1, headDim: 8, theta: 10000},
		attnOp{heads: 2, kvHeads: 1, headDim: 4},
		attnOp{heads: 2, kvHeads: 2, headDim: 4},
		attnOp{heads: 2, kvHeads: 1, headDim: 4, grad: true},
		attnOp{heads: 2, kvHeads: 1, headDim: 4, cache: c1},
		attnOp{heads: 2, kvHeads: 1, headDim: 4, cache: c2},
		columnsOp{from: 0, to: 2, width: 4},
		columnsOp{from: 2, to: 4, width: 4},
	}
	seen := map[uint32]int{}
	for i, op := range ops {
		if j, dup := seen[op.Hashcode()]; dup {
			t.Errorf("ops %d (%v) and %d (%v) hash alike", j, ops[j], i, op)
		}
		seen[op.Hashcode()] = i
	}
	// Two ropes differing only in theta stay two nodes.
	g := G.NewGraph()
	x := floatNode(g, "x", gradcheck.Rand(rand.New(rand.NewSource(58)), 1, 2, 4))
	pos := intNode(g, "pos", []int{0, 1}, 2)
	a, err := rope(x, pos, 1, 4, 10000, Interleaved)
	if err != nil {
		t.Fatal(err)
	}
	b, err := rope(x, pos, 1, 4, 500, Interleaved)
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Error("ropes with different theta merged")
	}
}
