package lilyop

import (
	"math/rand"
	"strings"
	"testing"

	"github.com/lilygo/lily/internal/gradcheck"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// idsNode adds an int input node holding ids with the given shape.
func idsNode(g *G.ExprGraph, ids []int, shape ...int) *G.Node {
	v := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]int(nil), ids...)))
	return G.NewTensor(g, tensor.Int, len(shape), G.WithShape(shape...), G.WithName("ids"), G.WithValue(v))
}

func randIDs(rng *rand.Rand, n, vocab int) []int {
	ids := make([]int, n)
	for i := range ids {
		ids[i] = rng.Intn(vocab)
	}
	return ids
}

func TestEmbedMatchesPlainGo(t *testing.T) {
	rng := rand.New(rand.NewSource(41))
	const vocab, d = 5, 3
	table := gradcheck.Rand(rng, vocab, d)
	td := table.Data().([]float64)
	for _, shape := range [][]int{{4}, {2, 3}, {2, 1, 3}} {
		n := tensor.Shape(shape).TotalSize()
		ids := randIDs(rng, n, vocab)
		for _, f32 := range []bool{false, true} {
			tab := table
			if f32 {
				tab = as32(table)
			}
			got := run(t, func(g *G.ExprGraph) (*G.Node, error) { return Embed(leaf(g, "table", tab), idsNode(g, ids, shape...)) })
			if want := append(append([]int(nil), shape...), d); !got.Shape().Eq(tensor.Shape(want)) {
				t.Fatalf("shape %v, want %v", got.Shape(), want)
			}
			var want []float64
			for _, id := range ids {
				want = append(want, td[id*d:(id+1)*d]...)
			}
			assertClose(t, "Embed", floats(got), want, 1e-7)
		}
	}
}

func TestEmbedGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	for _, shape := range [][]int{{5}, {1 + rng.Intn(3), 2 + rng.Intn(3)}, {2, 2, 2}} {
		vocab, d := 2+rng.Intn(4), 1+rng.Intn(4)
		// Repeated ids make the scatter add up several rows.
		ids := randIDs(rng, tensor.Shape(shape).TotalSize(), vocab)
		in := []gradcheck.Input{{Name: "table", Value: gradcheck.Rand(rng, vocab, d), Diff: true}}
		gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) {
			return Embed(n[0], idsNode(g, ids, shape...))
		}, in, gradcheck.Options{})
	}
}

func TestEmbedScatterMatchesPlainGo(t *testing.T) {
	// The table gradient of Σ Embed(table, ids)⊙P is the scatter-add of P.
	rng := rand.New(rand.NewSource(43))
	const vocab, d = 4, 2
	ids := []int{3, 1, 3, 3, 0, 1}
	p := gradcheck.Rand(rng, 2, 3, d)
	g := G.NewGraph()
	table := leaf(g, "table", gradcheck.Rand(rng, vocab, d))
	e, err := Embed(table, idsNode(g, ids, 2, 3))
	if err != nil {
		t.Fatal(err)
	}
	prod, err := G.HadamardProd(e, leaf(g, "p", p))
	if err != nil {
		t.Fatal(err)
	}
	loss, err := G.Sum(prod)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := G.Grad(loss, table); err != nil {
		t.Fatal(err)
	}
	m := G.NewTapeMachine(g, G.BindDualValues(table))
	defer m.Close()
	if err := m.RunAll(); err != nil {
		t.Fatal(err)
	}
	gv, err := table.Grad()
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float64, vocab*d)
	pd := p.Data().([]float64)
	for i, id := range ids {
		for j := 0; j < d; j++ {
			want[id*d+j] += pd[i*d+j]
		}
	}
	assertClose(t, "table gradient", gv.Data().([]float64), want, 1e-15)
	gradShapes32(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) { return Embed(n[0], idsNode(g, ids, 6)) }, gradcheck.Rand(rng, vocab, d))
}

func TestEmbedErrors(t *testing.T) {
	rng := rand.New(rand.NewSource(44))
	table := gradcheck.Rand(rng, 3, 2)
	for _, bad := range []int{-1, 3} {
		g := G.NewGraph()
		e, err := Embed(leaf(g, "table", table), idsNode(g, []int{0, bad}, 2))
		if err != nil {
			t.Fatal(err)
		}
		m := G.NewTapeMachine(g)
		err = m.RunAll()
		m.Close()
		if err == nil || !strings.Contains(err.Error(), "outside [0, 3)") {
			t.Errorf("id %d: error %v, value %v", bad, err, e.Value())
		}
	}
	g := G.NewGraph()
	floatIDs := leaf(g, "fids", gradcheck.Rand(rng, 2))
	if _, err := Embed(leaf(g, "table", table), floatIDs); err == nil {
		t.Error("float ids must be rejected")
	}
	if _, err := Embed(floatIDs, idsNode(g, []int{0}, 1)); err == nil {
		t.Error("a 1-D table must be rejected")
	}
}

func TestEmbedIdentity(t *testing.T) {
	seen := map[uint32]embedOp{}
	for _, op := range []embedOp{{idsRank: 2, vocab: 5}, {idsRank: 1, vocab: 5}, {idsRank: 2, vocab: 6}, {idsRank: 2, vocab: 5, scatter: true}} {
		if prev, dup := seen[op.Hashcode()]; dup {
			t.Errorf("%v and %v hash alike", prev, op)
		}
		seen[op.Hashcode()] = op
	}
	g := G.NewGraph()
	rng := rand.New(rand.NewSource(45))
	table, ids := leaf(g, "table", gradcheck.Rand(rng, 3, 2)), idsNode(g, []int{0, 2}, 2)
	a, err := Embed(table, ids)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Embed(table, ids)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Error("equal embeddings must be one node")
	}
}
