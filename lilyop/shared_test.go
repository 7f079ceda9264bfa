package lilyop

import (
	"math/rand"
	"testing"

	"github.com/lilygo/lily/internal/gradcheck"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// sharedProbe returns Σ_i h_i·V_i for fixed V_i, so every output of
// MatMulShared reaches the checked scalar with its own weights.
func sharedProbe(g *G.ExprGraph, hs G.Nodes, rng *rand.Rand) (*G.Node, error) {
	var sum *G.Node
	for i, h := range hs {
		v := leaf(g, "V"+string(rune('a'+i)), gradcheck.Rand(rng, h.Shape()[h.Dims()-1], 3))
		y, err := MatMul(h, v)
		if err != nil {
			return nil, err
		}
		if sum == nil {
			sum = y
		} else if sum, err = G.Add(sum, y); err != nil {
			return nil, err
		}
	}
	return sum, nil
}

func TestMatMulSharedGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(21))
	for _, xs := range []tensor.Shape{{4, 5}, {2, 3, 5}} {
		for _, widths := range [][]int{{2, 3}, {1, 4, 2}, {3}} {
			in := []gradcheck.Input{{Name: "x", Value: gradcheck.Rand(rng, xs...), Diff: true}}
			for i, n := range widths {
				in = append(in, gradcheck.Input{Name: "w" + string(rune('0'+i)), Value: gradcheck.Rand(rng, xs[len(xs)-1], n), Diff: true})
			}
			seed := rng.Int63()
			gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) {
				hs, err := MatMulShared(n[0], n[1:]...)
				if err != nil {
					return nil, err
				}
				for i, h := range hs {
					want := append(xs[:len(xs)-1].Clone(), widths[i])
					if !h.Shape().Eq(want) {
						t.Fatalf("output %d has shape %v, want %v", i, h.Shape(), want)
					}
				}
				return sharedProbe(g, hs, rand.New(rand.NewSource(seed)))
			}, in, gradcheck.Options{})
		}
	}
}

// MatMulShared gives exactly what separate MatMuls give, in float32 too.
func TestMatMulSharedMatchesMatMul(t *testing.T) {
	rng := rand.New(rand.NewSource(22))
	x, w1, w2 := gradcheck.Rand(rng, 2, 3, 6), gradcheck.Rand(rng, 6, 4), gradcheck.Rand(rng, 6, 2)
	for _, f32 := range []bool{false, true} {
		xv, v1, v2 := x, w1, w2
		if f32 {
			xv, v1, v2 = to32(x), to32(w1), to32(w2)
		}
		g := G.NewGraph()
		xn, a, b := leaf(g, "x", xv), leaf(g, "w1", v1), leaf(g, "w2", v2)
		hs, err := MatMulShared(xn, a, b)
		if err != nil {
			t.Fatal(err)
		}
		h1, _ := MatMul(xn, a)
		h2, _ := MatMul(xn, b)
		m := G.NewTapeMachine(g)
		if err := m.RunAll(); err != nil {
			t.Fatalf("%+v", err)
		}
		m.Close()
		tol := 1e-12
		if f32 {
			tol = 1e-5
		}
		assertClose(t, "h1", to64(hs[0].Value().Data()), to64(h1.Value().Data()), tol)
		assertClose(t, "h2", to64(hs[1].Value().Data()), to64(h2.Value().Data()), tol)
	}
}

func TestMatMulSharedIdentity(t *testing.T) {
	ops := []G.Op{
		catGemmOp{m: 2, rank: 2}, catGemmOp{m: 3, rank: 2}, catGemmOp{m: 2, rank: 3}, catGemmOp{m: 2, rank: 2, dx: true},
		colsOp{off: 0, n: 2, total: 4, rank: 2}, colsOp{off: 2, n: 2, total: 4, rank: 2}, colsOp{off: 0, n: 2, total: 4, rank: 2, place: true},
		colsOp{off: 0, n: 2, total: 5, rank: 2}, colsOp{off: 0, n: 3, total: 4, rank: 2}, colsOp{off: 0, n: 2, total: 4, rank: 3},
	}
	seen := map[uint32]G.Op{}
	for _, op := range ops {
		if prev, ok := seen[op.Hashcode()]; ok {
			t.Errorf("%v and %v share a hash", prev, op)
		}
		seen[op.Hashcode()] = op
	}
	g := G.NewGraph()
	x := G.NewMatrix(g, tensor.Float64, G.WithShape(3, 4), G.WithName("x"), G.WithInit(G.Ones()))
	w := G.NewMatrix(g, tensor.Float64, G.WithShape(4, 2), G.WithName("w"), G.WithInit(G.Ones()))
	if _, err := MatMulShared(x); err == nil {
		t.Error("no matrices accepted")
	}
	bad := G.NewMatrix(g, tensor.Float64, G.WithShape(3, 2), G.WithName("bad"), G.WithInit(G.Ones()))
	if _, err := MatMulShared(x, w, bad); err == nil {
		t.Error("a matrix of the wrong height accepted")
	}
}
