package roberta

import (
	"math"
	"math/rand"
	"testing"

	"github.com/lilygo/lily/internal/gradcheck"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// leaf adds a named tensor node holding v.
func leaf(g *G.ExprGraph, name string, v *tensor.Dense) *G.Node {
	return G.NewTensor(g, v.Dtype(), v.Dims(), G.WithShape(v.Shape()...), G.WithName(name), G.WithValue(v))
}

// padMask returns a [b, t] mask with a random number of trailing padding
// tokens per row; row 0 has none and, when allPad, the last row is all
// padding.
func padMask(rng *rand.Rand, b, t int, allPad bool) *tensor.Dense {
	m := make([]float64, b*t)
	for i := 0; i < b; i++ {
		real := t
		if i > 0 {
			real = 1 + rng.Intn(t)
		}
		if allPad && i == b-1 && b > 1 {
			real = 0
		}
		for j := 0; j < real; j++ {
			m[i*t+j] = 1
		}
	}
	return tensor.New(tensor.WithShape(b, t), tensor.WithBacking(m))
}

// dropMask returns a [b, h, t, t] inverted-dropout mask with drop rate p.
func dropMask(rng *rand.Rand, b, h, t int, p float64) *tensor.Dense {
	m := make([]float64, b*h*t*t)
	for i := range m {
		if rng.Float64() >= p {
			m[i] = 1 / (1 - p)
		}
	}
	return tensor.New(tensor.WithShape(b, h, t, t), tensor.WithBacking(m))
}

// refAttention is a plain-Go multi-head attention over [b, t, heads·d]
// float64 slices, written the way Hugging Face's eager path computes it:
// split heads, scores/√d plus (1−mask)·min, softmax, dropout, times V.
func refAttention(q, k, v, mask, drop []float64, b, t, hd, heads int) []float64 {
	d := hd / heads
	out := make([]float64, b*t*hd)
	for bi := 0; bi < b; bi++ {
		for h := 0; h < heads; h++ {
			at := func(x []float64, i, c int) float64 { return x[(bi*t+i)*hd+h*d+c] }
			for i := 0; i < t; i++ {
				scores := make([]float64, t)
				mx := math.Inf(-1)
				for j := 0; j < t; j++ {
					s := 0.0
					for c := 0; c < d; c++ {
						s += at(q, i, c) * at(k, j, c)
					}
					scores[j] = s/math.Sqrt(float64(d)) + (1-mask[bi*t+j])*-math.MaxFloat64
					mx = math.Max(mx, scores[j])
				}
				sum := 0.0
				for j := range scores {
					scores[j] = math.Exp(scores[j] - mx)
					sum += scores[j]
				}
				for j := range scores {
					p := scores[j] / sum
					if drop != nil {
						p *= drop[((bi*heads+h)*t+i)*t+j]
					}
					for c := 0; c < d; c++ {
						out[(bi*t+i)*hd+h*d+c] += p * at(v, j, c)
					}
				}
			}
		}
	}
	return out
}

func assertClose(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		e := math.Abs(got[i]-want[i]) / math.Max(1, math.Abs(want[i]))
		if e > tol || math.IsNaN(got[i]) {
			t.Fatalf("%s[%d] = %.12g, want %.12g", what, i, got[i], want[i])
		}
	}
}

func float64s(v G.Value) []float64 {
	switch d := v.Data().(type) {
	case []float64:
		return append([]float64(nil), d...)
	case []float32:
		out := make([]float64, len(d))
		for i, x := range d {
			out[i] = float64(x)
		}
		return out
	}
	return nil
}

func to32(v *tensor.Dense) *tensor.Dense {
	d := v.Data().([]float64)
	f := make([]float32, len(d))
	for i, x := range d {
		f[i] = float32(x)
	}
	return tensor.New(tensor.WithShape(v.Shape().Clone()...), tensor.WithBacking(f))
}

// runNode evaluates build's node in a fresh graph.
func runNode(t *testing.T, build func(g *G.ExprGraph) (*G.Node, error)) []float64 {
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
	return float64s(out.Value())
}

// attnCase is one random attention configuration.
type attnCase struct {
	b, t, heads, d int
	dropout        bool
}

func attnCases(rng *rand.Rand) []attnCase {
	var cs []attnCase
	for i := 0; i < 6; i++ {
		cs = append(cs, attnCase{b: 1 + rng.Intn(3), t: 1 + rng.Intn(4), heads: 1 + rng.Intn(3), d: 1 + rng.Intn(3), dropout: i%2 == 1})
	}
	return append(cs, attnCase{b: 2, t: 3, heads: 2, d: 2, dropout: true})
}

func attnInputs(rng *rand.Rand, c attnCase, allPad bool) []gradcheck.Input {
	hd := c.heads * c.d
	in := []gradcheck.Input{
		{Name: "q", Value: gradcheck.Rand(rng, c.b, c.t, hd), Diff: true},
		{Name: "k", Value: gradcheck.Rand(rng, c.b, c.t, hd), Diff: true},
		{Name: "v", Value: gradcheck.Rand(rng, c.b, c.t, hd), Diff: true},
		{Name: "mask", Value: padMask(rng, c.b, c.t, allPad)},
	}
	if c.dropout {
		in = append(in, gradcheck.Input{Name: "drop", Value: dropMask(rng, c.b, c.heads, c.t, 0.3)})
	}
	return in
}

func buildAttn(c attnCase) gradcheck.Build {
	return func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) {
		var drop *G.Node
		if c.dropout {
			drop = n[4]
		}
		return selfAttention(n[0], n[1], n[2], n[3], drop, c.heads)
	}
}

func TestAttentionMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, c := range attnCases(rng) {
		in := attnInputs(rng, c, true)
		var drop []float64
		if c.dropout {
			drop = in[4].Value.Data().([]float64)
		}
		want := refAttention(in[0].Value.Data().([]float64), in[1].Value.Data().([]float64), in[2].Value.Data().([]float64),
			in[3].Value.Data().([]float64), drop, c.b, c.t, c.heads*c.d, c.heads)
		for _, f32 := range []bool{false, true} {
			got := runNode(t, func(g *G.ExprGraph) (*G.Node, error) {
				nodes := make(G.Nodes, len(in))
				for i, x := range in {
					v := x.Value
					if f32 {
						v = to32(v)
					}
					nodes[i] = leaf(g, x.Name, v)
				}
				return buildAttn(c)(g, nodes)
			})
			tol := 1e-12
			if f32 {
				tol = 1e-5
			}
			assertClose(t, "attention", got, want, tol)
		}
	}
}

// A sequence whose tokens are all padding attends uniformly, as Hugging
// Face's (1−mask)·min bias makes it.
func TestAttentionAllPaddingIsUniform(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	q, k, v := gradcheck.Rand(rng, 1, 3, 2), gradcheck.Rand(rng, 1, 3, 2), gradcheck.Rand(rng, 1, 3, 2)
	mask := tensor.New(tensor.WithShape(1, 3), tensor.WithBacking([]float64{0, 0, 0}))
	got := runNode(t, func(g *G.ExprGraph) (*G.Node, error) {
		return selfAttention(leaf(g, "q", q), leaf(g, "k", k), leaf(g, "v", v), leaf(g, "m", mask), nil, 1)
	})
	vd := v.Data().([]float64)
	for c := 0; c < 2; c++ {
		mean := (vd[c] + vd[2+c] + vd[4+c]) / 3
		for i := 0; i < 3; i++ {
			if math.Abs(got[i*2+c]-mean) > 1e-12 {
				t.Fatalf("output[%d,%d] = %v, want the mean %v", i, c, got[i*2+c], mean)
			}
		}
	}
}

func TestAttentionGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, c := range attnCases(rng) {
		gradcheck.Check(t, buildAttn(c), attnInputs(rng, c, true), gradcheck.Options{Seed: rng.Int63()})
	}
}

func TestFirstTokenGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	for i := 0; i < 3; i++ {
		x := gradcheck.Rand(rng, 1+rng.Intn(3), 1+rng.Intn(4), 1+rng.Intn(4))
		gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) { return firstToken(n[0]) },
			[]gradcheck.Input{{Name: "x", Value: x, Diff: true}}, gradcheck.Options{Seed: int64(i)})
		s := x.Shape()
		got := runNode(t, func(g *G.ExprGraph) (*G.Node, error) { return firstToken(leaf(g, "x", x)) })
		xd := x.Data().([]float64)
		for b := 0; b < s[0]; b++ {
			for c := 0; c < s[2]; c++ {
				if got[b*s[2]+c] != xd[b*s[1]*s[2]+c] {
					t.Fatalf("first token of %v wrong at [%d, %d]", s, b, c)
				}
			}
		}
	}
}

// Ops that differ in any parameter must hash apart, or Gorgonia merges their
// nodes; the same op on the same inputs must be one node.
func TestOpHashesAndIdentity(t *testing.T) {
	ops := []interface{ Hashcode() uint32 }{
		attnOp{heads: 1}, attnOp{heads: 2}, attnOp{heads: 2, dropout: true},
		attnGradOp{fwd: attnOp{heads: 1}}, attnGradOp{fwd: attnOp{heads: 2}}, attnGradOp{fwd: attnOp{heads: 2, dropout: true}},
		pickOp{part: 0, rank: 3}, pickOp{part: 1, rank: 3}, pickOp{part: 2, rank: 3}, pickOp{part: 0, rank: 2},
		firstTokenOp{tokens: 3}, firstTokenOp{tokens: 4}, firstTokenOp{tokens: 3, scatter: true},
	}
	seen := map[uint32]int{}
	for i, op := range ops {
		if j, ok := seen[op.Hashcode()]; ok {
			t.Errorf("ops %v and %v share a hash", ops[j], op)
		}
		seen[op.Hashcode()] = i
	}

	rng := rand.New(rand.NewSource(6))
	g := G.NewGraph()
	q, k, v := leaf(g, "q", gradcheck.Rand(rng, 1, 2, 4)), leaf(g, "k", gradcheck.Rand(rng, 1, 2, 4)), leaf(g, "v", gradcheck.Rand(rng, 1, 2, 4))
	mask := leaf(g, "mask", padMask(rng, 1, 2, false))
	must := func(n *G.Node, err error) *G.Node {
		t.Helper()
		if err != nil {
			t.Fatalf("%+v", err)
		}
		return n
	}
	a1 := must(selfAttention(q, k, v, mask, nil, 1))
	a2 := must(selfAttention(q, k, v, mask, nil, 2))
	if a1 == a2 {
		t.Error("attention with 1 and 2 heads merged into one node")
	}
	if must(selfAttention(q, k, v, mask, nil, 2)) != a2 {
		t.Error("the same attention on the same inputs is not deduplicated")
	}
	if must(selfAttention(k, q, v, mask, nil, 2)) == a2 {
		t.Error("attention with q and k swapped merged with the original")
	}
}

// Bad shapes are errors at construction, never panics.
func TestOpShapeErrors(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	g := G.NewGraph()
	q := leaf(g, "q", gradcheck.Rand(rng, 2, 3, 4))
	k5 := leaf(g, "k5", gradcheck.Rand(rng, 2, 3, 5))
	mask := leaf(g, "mask", padMask(rng, 2, 3, false))
	badMask := leaf(g, "bad", padMask(rng, 2, 2, false))
	flat := leaf(g, "flat", gradcheck.Rand(rng, 3, 4))
	cases := map[string]func() (*G.Node, error){
		"k width":     func() (*G.Node, error) { return selfAttention(q, k5, q, mask, nil, 2) },
		"heads":       func() (*G.Node, error) { return selfAttention(q, q, q, mask, nil, 3) },
		"mask":        func() (*G.Node, error) { return selfAttention(q, q, q, badMask, nil, 2) },
		"drop shape":  func() (*G.Node, error) { return selfAttention(q, q, q, mask, mask, 2) },
		"rank":        func() (*G.Node, error) { return selfAttention(flat, flat, flat, mask, nil, 2) },
		"first token": func() (*G.Node, error) { return firstToken(flat) },
	}
	for name, f := range cases {
		if _, err := f(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
