package lilyop

import (
	"math/rand"
	"testing"

	"github.com/lilygo/lily/internal/gradcheck"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// valueAndGrads runs build on fresh leaves holding vals and returns the
// output and the gradients of Σ out⊙P (P fixed) with respect to every leaf.
func valueAndGrads(t *testing.T, build func(n G.Nodes) (*G.Node, error), names []string, vals []*tensor.Dense) ([]float64, [][]float64) {
	t.Helper()
	g := G.NewGraph()
	leaves := make(G.Nodes, len(vals))
	for i, v := range vals {
		leaves[i] = leaf(g, names[i], v.Clone().(*tensor.Dense))
	}
	out, err := build(leaves)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	p := gradcheck.Rand(rand.New(rand.NewSource(99)), out.Shape()...)
	if out.Dtype() == tensor.Float32 {
		p = to32(p)
	}
	prod, err := G.HadamardProd(out, leaf(g, "P", p))
	if err != nil {
		t.Fatal(err)
	}
	loss, err := G.Sum(prod)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := G.Grad(loss, leaves...); err != nil {
		t.Fatalf("%+v", err)
	}
	m := G.NewTapeMachine(g, G.BindDualValues(leaves...))
	defer m.Close()
	if err := m.RunAll(); err != nil {
		t.Fatalf("%+v", err)
	}
	grads := make([][]float64, len(leaves))
	for i, l := range leaves {
		gv, err := l.Grad()
		if err != nil {
			t.Fatal(err)
		}
		if !gv.Shape().Eq(l.Shape()) {
			t.Fatalf("gradient of %s has shape %v, want %v", l.Name(), gv.Shape(), l.Shape())
		}
		grads[i] = to64(gv.Data())
	}
	return to64(out.Value().Data()), grads
}

// to32 converts a float64 tensor to float32.
func to32(v *tensor.Dense) *tensor.Dense {
	f := make([]float32, v.Shape().TotalSize())
	for j, x := range v.Data().([]float64) {
		f[j] = float32(x)
	}
	return tensor.New(tensor.WithShape(v.Shape()...), tensor.WithBacking(f))
}

// to64 copies float32 or float64 data into a new []float64.
func to64(data interface{}) []float64 {
	switch d := data.(type) {
	case []float32:
		out := make([]float64, len(d))
		for i, v := range d {
			out[i] = float64(v)
		}
		return out
	case []float64:
		return append([]float64(nil), d...)
	}
	return nil
}

// stockRouted composes softmax routing from stock Gorgonia ops on 2-D inputs:
// it returns h = x·A and the per-token probabilities softmax(h·R).
func stockRouted(x, A, R *G.Node) (h, p *G.Node, err error) {
	if h, err = G.Mul(x, A); err != nil {
		return nil, nil, err
	}
	logits, err := G.Mul(h, R)
	if err != nil {
		return nil, nil, err
	}
	p, err = G.SoftMax(logits)
	return h, p, err
}

// The fused batch-routed adapter equals the same math composed from stock
// Gorgonia ops, forward and backward.
func TestBatchRoutingMatchesStockOps(t *testing.T) {
	rng := rand.New(rand.NewSource(10))
	const m, din, r, e, d, scale = 6, 5, 3, 4, 7, 0.3
	names := []string{"x", "A", "R", "B"}
	vals := []*tensor.Dense{gradcheck.Rand(rng, m, din), gradcheck.Rand(rng, din, r), gradcheck.Rand(rng, r, e), gradcheck.Rand(rng, e, r, d)}
	fusedOut, fusedGrads := valueAndGrads(t, func(n G.Nodes) (*G.Node, error) { return lilyDelta(n, Batch, scale) }, names, vals)
	stockOut, stockGrads := valueAndGrads(t, func(n G.Nodes) (*G.Node, error) {
		h, p, err := stockRouted(n[0], n[1], n[2])
		if err != nil {
			return nil, err
		}
		w, err := G.Mean(p, 0)
		if err != nil {
			return nil, err
		}
		wRow, err := G.Reshape(w, tensor.Shape{1, e})
		if err != nil {
			return nil, err
		}
		bFlat, err := G.Reshape(n[3], tensor.Shape{e, r * d})
		if err != nil {
			return nil, err
		}
		mixed, err := G.Mul(wRow, bFlat)
		if err != nil {
			return nil, err
		}
		bMix, err := G.Reshape(mixed, tensor.Shape{r, d})
		if err != nil {
			return nil, err
		}
		y, err := G.Mul(h, bMix)
		if err != nil {
			return nil, err
		}
		return G.Mul(y, G.NewConstant(float64(scale)))
	}, names, vals)
	assertClose(t, "forward", fusedOut, stockOut, 1e-12)
	for i := range names {
		assertClose(t, "d/d"+names[i], fusedGrads[i], stockGrads[i], 1e-10)
	}
}

// The fused token-routed adapter equals a stock composition that weights
// each expert's output by its probability column.
func TestTokenRoutingMatchesStockOps(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	const m, din, r, e, d, scale = 5, 4, 3, 3, 2, 1.7
	names := []string{"x", "A", "R", "B"}
	vals := []*tensor.Dense{gradcheck.Rand(rng, m, din), gradcheck.Rand(rng, din, r), gradcheck.Rand(rng, r, e), gradcheck.Rand(rng, e, r, d)}
	fusedOut, fusedGrads := valueAndGrads(t, func(n G.Nodes) (*G.Node, error) { return lilyDelta(n, Token, scale) }, names, vals)
	stockOut, stockGrads := valueAndGrads(t, func(n G.Nodes) (*G.Node, error) {
		h, p, err := stockRouted(n[0], n[1], n[2])
		if err != nil {
			return nil, err
		}
		var sum *G.Node
		for x := 0; x < e; x++ {
			bx, err := G.Slice(n[3], G.S(x))
			if err != nil {
				return nil, err
			}
			hx, err := G.Mul(h, bx)
			if err != nil {
				return nil, err
			}
			col, err := G.Slice(p, nil, G.S(x))
			if err != nil {
				return nil, err
			}
			// The reshaped column stays on the right of the elementwise op
			// (gorgonia#511).
			colM1, err := G.Reshape(col, tensor.Shape{m, 1})
			if err != nil {
				return nil, err
			}
			term, err := G.BroadcastHadamardProd(hx, colM1, nil, []byte{1})
			if err != nil {
				return nil, err
			}
			if sum == nil {
				sum = term
			} else if sum, err = G.Add(sum, term); err != nil {
				return nil, err
			}
		}
		return G.Mul(sum, G.NewConstant(float64(scale)))
	}, names, vals)
	assertClose(t, "forward", fusedOut, stockOut, 1e-12)
	for i := range names {
		assertClose(t, "d/d"+names[i], fusedGrads[i], stockGrads[i], 1e-10)
	}
}

// Sequence routing over a batch equals batch routing applied to each
// sequence separately.
func TestSequenceRoutingIsPerSequenceBatchRouting(t *testing.T) {
	rng := rand.New(rand.NewSource(12))
	const b, tok, din, r, e, d, scale = 3, 4, 3, 2, 3, 2, 0.9
	x, A, R, B := gradcheck.Rand(rng, b, tok, din), gradcheck.Rand(rng, din, r), gradcheck.Rand(rng, r, e), gradcheck.Rand(rng, e, r, d)
	all := run(t, func(g *G.ExprGraph) (*G.Node, error) {
		return lilyDelta(G.Nodes{leaf(g, "x", x), leaf(g, "A", A), leaf(g, "R", R), leaf(g, "B", B)}, Sequence, scale)
	}).Data().([]float64)
	for s := 0; s < b; s++ {
		xs := tensor.New(tensor.WithShape(tok, din), tensor.WithBacking(append([]float64(nil), x.Data().([]float64)[s*tok*din:(s+1)*tok*din]...)))
		one := run(t, func(g *G.ExprGraph) (*G.Node, error) {
			return lilyDelta(G.Nodes{leaf(g, "x", xs), leaf(g, "A", A), leaf(g, "R", R), leaf(g, "B", B)}, Batch, scale)
		}).Data().([]float64)
		assertClose(t, "sequence", all[s*tok*d:(s+1)*tok*d], one, 1e-12)
	}
}

// Ops that differ in any parameter must be different graph nodes, and the
// same op on the same inputs must be one node (Gorgonia hash-conses nodes).
func TestOpIdentity(t *testing.T) {
	g := G.NewGraph()
	h := G.NewTensor(g, tensor.Float64, 3, G.WithShape(2, 3, 4), G.WithName("h"), G.WithInit(G.Gaussian(0, 1)))
	R := G.NewMatrix(g, tensor.Float64, G.WithShape(4, 2), G.WithName("R"), G.WithInit(G.Gaussian(0, 1)))
	B := G.NewTensor(g, tensor.Float64, 3, G.WithShape(2, 4, 5), G.WithName("B"), G.WithInit(G.Gaussian(0, 1)))
	mask := G.NewMatrix(g, tensor.Float64, G.WithShape(2, 3), G.WithName("mask"), G.WithInit(G.Ones()))
	must := func(n *G.Node, err error) *G.Node {
		t.Helper()
		if err != nil {
			t.Fatalf("%+v", err)
		}
		return n
	}
	wb := must(RouterWeights(h, R, nil, Batch))
	distinct := []*G.Node{
		wb,
		must(RouterWeights(h, R, mask, Batch)),
		must(RouterWeights(h, R, nil, Token)),
		must(RouterWeights(h, R, nil, Sequence)),
		must(RouterWeights(h, R, mask, Sequence)),
		must(ExpertMix(h, wb, B, Batch, 0.1)),
		must(ExpertMix(h, wb, B, Batch, 0.2)),
	}
	for i := range distinct {
		for j := i + 1; j < len(distinct); j++ {
			if distinct[i] == distinct[j] {
				t.Errorf("nodes %d and %d (%v) merged although their ops differ", i, j, distinct[i].Op())
			}
		}
	}
	if must(RouterWeights(h, R, nil, Batch)) != wb {
		t.Error("the same router on the same inputs is not deduplicated")
	}
	if must(ExpertMix(h, wb, B, Batch, 0.1)) != distinct[5] {
		t.Error("the same mixture on the same inputs is not deduplicated")
	}
	ops := []G.Op{
		gemmOp{mode: nn, alpha: 1, aRank: 2, bRank: 2}, gemmOp{mode: nn, alpha: 2, aRank: 2, bRank: 2},
		gemmOp{mode: nt, alpha: 1, aRank: 2, bRank: 2}, gemmOp{mode: tn, alpha: 1, aRank: 2, bRank: 2},
		mixGradOp{mixOp{mode: Batch, scale: 1, hRank: 2}, gradH}, mixGradOp{mixOp{mode: Batch, scale: 1, hRank: 2}, gradW},
		mixGradOp{mixOp{mode: Token, scale: 1, hRank: 2}, gradH}, mixGradOp{mixOp{mode: Batch, scale: 1, hRank: 3}, gradH},
		routerGradOp{routerOp{mode: Batch, hRank: 2, masked: false}}, routerGradOp{routerOp{mode: Batch, hRank: 2, masked: true}},
	}
	seen := map[uint32]int{}
	for i, op := range ops {
		if j, ok := seen[op.Hashcode()]; ok {
			t.Errorf("ops %v and %v share a hash", ops[j], op)
		}
		seen[op.Hashcode()] = i
	}
}

// The ops run in float32 and agree with float64 to float32 precision,
// forward and backward.
func TestFloat32MatchesFloat64(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	names := []string{"x", "A", "R", "B"}
	for _, mode := range []Routing{Batch, Sequence, Token} {
		vals := []*tensor.Dense{gradcheck.Rand(rng, 2, 5, 6), gradcheck.Rand(rng, 6, 3), gradcheck.Rand(rng, 3, 4), gradcheck.Rand(rng, 4, 3, 5)}
		vals32 := make([]*tensor.Dense, len(vals))
		for i, v := range vals {
			vals32[i] = to32(v)
		}
		build := func(n G.Nodes) (*G.Node, error) { return lilyDelta(n, mode, 0.7) }
		out64, grads64 := valueAndGrads(t, build, names, vals)
		out32, grads32 := valueAndGrads(t, build, names, vals32)
		assertClose(t, mode.String()+" float32 forward", out32, out64, 1e-5)
		for i := range names {
			assertClose(t, mode.String()+" float32 d/d"+names[i], grads32[i], grads64[i], 1e-4)
		}
	}
}
