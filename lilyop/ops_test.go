package lilyop

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/lilygo/lily/internal/gradcheck"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// leaf adds a named float tensor node holding v.
func leaf(g *G.ExprGraph, name string, v *tensor.Dense) *G.Node {
	return G.NewTensor(g, v.Dtype(), v.Dims(), G.WithShape(v.Shape()...), G.WithName(name), G.WithValue(v))
}

// run evaluates the node that build returns.
func run(t *testing.T, build func(g *G.ExprGraph) (*G.Node, error)) *tensor.Dense {
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
	return out.Value().(*tensor.Dense).Clone().(*tensor.Dense)
}

// lilyCase is one random configuration of the Lily ops.
type lilyCase struct {
	hShape tensor.Shape // [..., r]
	e, d   int
	mode   Routing
	masked bool
}

func (c lilyCase) String() string {
	return fmt.Sprintf("%v/h%v/E%d/d%d/mask=%t", c.mode, []int(c.hShape), c.e, c.d, c.masked)
}

// cases enumerates modes × ranks × masks × E = 1..5 with random dims.
func cases(rng *rand.Rand) []lilyCase {
	var out []lilyCase
	for _, mode := range []Routing{Batch, Sequence, Token} {
		for _, rank := range []int{2, 3} {
			if mode == Sequence && rank == 2 {
				continue
			}
			for e := 1; e <= 5; e++ {
				for _, masked := range []bool{false, true} {
					if masked && (mode == Token || rank == 2 && mode != Batch) {
						continue
					}
					r := 1 + rng.Intn(4)
					var hs tensor.Shape
					if rank == 2 {
						hs = tensor.Shape{1 + rng.Intn(5), r}
					} else {
						hs = tensor.Shape{1 + rng.Intn(3), 1 + rng.Intn(4), r}
					}
					out = append(out, lilyCase{hShape: hs, e: e, d: 1 + rng.Intn(4), mode: mode, masked: masked})
				}
			}
		}
	}
	return out
}

func maskTensor(rng *rand.Rand, hs tensor.Shape) *tensor.Dense {
	lead := hs[:len(hs)-1]
	per := lead[len(lead)-1]
	if len(lead) == 1 {
		per = lead[0]
	}
	return tensor.New(tensor.WithShape(lead...), tensor.WithBacking(randMask(rng, lead.TotalSize(), per)))
}

func TestMatMulGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, xs := range []tensor.Shape{{3, 4}, {2, 3, 4}, {2, 2, 3, 4}, {1, 1}} {
		k, n := xs[len(xs)-1], 1+rng.Intn(4)
		in := []gradcheck.Input{
			{Name: "x", Value: gradcheck.Rand(rng, xs...), Diff: true},
			{Name: "w", Value: gradcheck.Rand(rng, k, n), Diff: true},
		}
		gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) { return MatMul(n[0], n[1]) }, in, gradcheck.Options{})
	}
}

func TestMatMulMatchesStockMul(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	x, w := gradcheck.Rand(rng, 5, 3), gradcheck.Rand(rng, 3, 4)
	got := run(t, func(g *G.ExprGraph) (*G.Node, error) { return MatMul(leaf(g, "x", x), leaf(g, "w", w)) })
	want := run(t, func(g *G.ExprGraph) (*G.Node, error) { return G.Mul(leaf(g, "x", x), leaf(g, "w", w)) })
	assertClose(t, "MatMul vs Mul", got.Data().([]float64), want.Data().([]float64), 1e-12)
}

func TestRouterWeightsGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for _, c := range cases(rng) {
		t.Run(c.String(), func(t *testing.T) {
			r := c.hShape[len(c.hShape)-1]
			in := []gradcheck.Input{
				{Name: "h", Value: gradcheck.Rand(rng, c.hShape...), Diff: true},
				{Name: "R", Value: gradcheck.Rand(rng, r, c.e), Diff: true},
			}
			if c.masked {
				in = append(in, gradcheck.Input{Name: "mask", Value: maskTensor(rng, c.hShape)})
			}
			gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) {
				var mask *G.Node
				if c.masked {
					mask = n[2]
				}
				return RouterWeights(n[0], n[1], mask, c.mode)
			}, in, gradcheck.Options{})
		})
	}
}

func TestExpertMixGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	for _, c := range cases(rng) {
		if c.masked {
			continue
		}
		t.Run(c.String(), func(t *testing.T) {
			r := c.hShape[len(c.hShape)-1]
			w := (mixOp{mode: c.mode, hRank: len(c.hShape)}).wantW(c.hShape, c.e)
			in := []gradcheck.Input{
				{Name: "h", Value: gradcheck.Rand(rng, c.hShape...), Diff: true},
				{Name: "w", Value: gradcheck.Rand(rng, w...), Diff: true},
				{Name: "B", Value: gradcheck.Rand(rng, c.e, r, c.d), Diff: true},
			}
			scale := 0.5 + rng.Float64()
			gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) {
				return ExpertMix(n[0], n[1], n[2], c.mode, scale)
			}, in, gradcheck.Options{})
		})
	}
}

// lilyDelta composes the whole adapter: s·(x·A)·Σ w·B with w routed.
func lilyDelta(n G.Nodes, mode Routing, scale float64) (*G.Node, error) {
	h, err := MatMul(n[0], n[1])
	if err != nil {
		return nil, err
	}
	var mask *G.Node
	if len(n) > 4 {
		mask = n[4]
	}
	w, err := RouterWeights(h, n[2], mask, mode)
	if err != nil {
		return nil, err
	}
	return ExpertMix(h, w, n[3], mode, scale)
}

func TestLilyCompositeGradientAndReference(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	for _, c := range cases(rng) {
		t.Run(c.String(), func(t *testing.T) {
			r := c.hShape[len(c.hShape)-1]
			din := 1 + rng.Intn(5)
			xs := c.hShape.Clone()
			xs[len(xs)-1] = din
			in := []gradcheck.Input{
				{Name: "x", Value: gradcheck.Rand(rng, xs...), Diff: true},
				{Name: "A", Value: gradcheck.Rand(rng, din, r), Diff: true},
				{Name: "R", Value: gradcheck.Rand(rng, r, c.e), Diff: true},
				{Name: "B", Value: gradcheck.Rand(rng, c.e, r, c.d), Diff: true},
			}
			var mask []float64
			if c.masked {
				mt := maskTensor(rng, c.hShape)
				mask = mt.Data().([]float64)
				in = append(in, gradcheck.Input{Name: "mask", Value: mt})
			}
			scale := 0.1 + rng.Float64()
			build := func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) { return lilyDelta(n, c.mode, scale) }
			gradcheck.Check(t, build, in, gradcheck.Options{})

			// Forward against the plain-Go reference.
			got := run(t, func(g *G.ExprGraph) (*G.Node, error) {
				ns := make(G.Nodes, len(in))
				for i, v := range in {
					ns[i] = leaf(g, v.Name, v.Value.Clone().(*tensor.Dense))
				}
				return build(g, ns)
			})
			x, A := matrix(in[0].Value), matrix(in[1].Value)
			h := make([][]float64, len(x))
			for i := range x {
				h[i] = make([]float64, r)
				for k := 0; k < r; k++ {
					for j := range x[i] {
						h[i][k] += x[i][j] * A[j][k]
					}
				}
			}
			w := refRouter(h, matrix(in[2].Value), mask, c.mode, c.hShape[0])
			want := refMix(h, w, experts(in[3].Value), c.mode, scale)
			assertClose(t, "forward vs reference", got.Data().([]float64), flat(want), 1e-12)
		})
	}
}

func TestRouterWeightsMatchReference(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	for _, c := range cases(rng) {
		r := c.hShape[len(c.hShape)-1]
		h, R := gradcheck.Rand(rng, c.hShape...), gradcheck.Rand(rng, r, c.e)
		var mask []float64
		var mt *tensor.Dense
		if c.masked {
			mt = maskTensor(rng, c.hShape)
			mask = mt.Data().([]float64)
		}
		got := run(t, func(g *G.ExprGraph) (*G.Node, error) {
			var m *G.Node
			if mt != nil {
				m = leaf(g, "mask", mt)
			}
			return RouterWeights(leaf(g, "h", h), leaf(g, "R", R), m, c.mode)
		})
		want := refRouter(matrix(h), matrix(R), mask, c.mode, c.hShape[0])
		assertClose(t, c.String(), got.Data().([]float64), flat(want), 1e-12)
		if c.mode != Token {
			for i, row := range want {
				var s float64
				for _, v := range row {
					s += v
				}
				if math.Abs(s-1) > 1e-12 {
					t.Errorf("%v: mixing vector %d sums to %v", c, i, s)
				}
			}
		}
	}
}

// A fully padded sequence gets a zero mixing vector and no gradient.
func TestRouterAllPaddedSequence(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	h, R := gradcheck.Rand(rng, 2, 3, 2), gradcheck.Rand(rng, 2, 3)
	mask := tensor.New(tensor.WithShape(2, 3), tensor.WithBacking([]float64{1, 1, 0, 0, 0, 0}))
	got := run(t, func(g *G.ExprGraph) (*G.Node, error) {
		return RouterWeights(leaf(g, "h", h), leaf(g, "R", R), leaf(g, "mask", mask), Sequence)
	}).Data().([]float64)
	for _, v := range got[3:] {
		if v != 0 {
			t.Fatalf("padded sequence got mixing weights %v", got[3:])
		}
	}
	gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) {
		return RouterWeights(n[0], n[1], n[2], Sequence)
	}, []gradcheck.Input{{Name: "h", Value: h, Diff: true}, {Name: "R", Value: R, Diff: true}, {Name: "mask", Value: mask}}, gradcheck.Options{})
}

func assertClose(t *testing.T, what string, got, want []float64, tol float64) {
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

func TestAddBiasGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(14))
	for _, xs := range []tensor.Shape{{4}, {3, 4}, {2, 3, 4}} {
		in := []gradcheck.Input{
			{Name: "x", Value: gradcheck.Rand(rng, xs...), Diff: true},
			{Name: "b", Value: gradcheck.Rand(rng, 4), Diff: true},
		}
		gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) { return AddBias(n[0], n[1]) }, in, gradcheck.Options{})
	}
}

func TestMatMulScaledGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(15))
	in := []gradcheck.Input{
		{Name: "x", Value: gradcheck.Rand(rng, 2, 3, 4), Diff: true},
		{Name: "w", Value: gradcheck.Rand(rng, 4, 2), Diff: true},
	}
	gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) { return MatMulScaled(n[0], n[1], -2.5) }, in, gradcheck.Options{})
}

func TestMatMulNTGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(16))
	for _, xs := range []tensor.Shape{{3, 4}, {2, 3, 4}} {
		in := []gradcheck.Input{
			{Name: "x", Value: gradcheck.Rand(rng, xs...), Diff: true},
			{Name: "w", Value: gradcheck.Rand(rng, 5, 4), Diff: true},
		}
		gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) { return MatMulNT(n[0], n[1]) }, in, gradcheck.Options{})
	}
	// Against stock Mul with an explicit transpose.
	x, w := gradcheck.Rand(rng, 3, 4), gradcheck.Rand(rng, 5, 4)
	got := run(t, func(g *G.ExprGraph) (*G.Node, error) { return MatMulNT(leaf(g, "x", x), leaf(g, "w", w)) })
	want := run(t, func(g *G.ExprGraph) (*G.Node, error) {
		wt, err := G.Transpose(leaf(g, "w", w))
		if err != nil {
			return nil, err
		}
		return G.Mul(leaf(g, "x", x), wt)
	})
	assertClose(t, "MatMulNT vs Mul(x, wᵀ)", got.Data().([]float64), want.Data().([]float64), 1e-12)
}

func TestAddGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(31))
	for _, s := range []tensor.Shape{{3}, {2, 3}, {2, 2, 3}} {
		in := []gradcheck.Input{
			{Name: "x", Value: gradcheck.Rand(rng, s...), Diff: true},
			{Name: "y", Value: gradcheck.Rand(rng, s...), Diff: true},
		}
		gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) {
			sq, err := G.Square(n[1])
			if err != nil {
				return nil, err
			}
			return Add(n[0], sq)
		}, in, gradcheck.Options{})
	}
	x, y := gradcheck.Rand(rng, 4, 5), gradcheck.Rand(rng, 4, 5)
	got := run(t, func(g *G.ExprGraph) (*G.Node, error) { return Add(leaf(g, "x", x), leaf(g, "y", y)) })
	want := run(t, func(g *G.ExprGraph) (*G.Node, error) { return G.Add(leaf(g, "x", x), leaf(g, "y", y)) })
	assertClose(t, "Add vs gorgonia.Add", got.Data().([]float64), want.Data().([]float64), 0)
}
