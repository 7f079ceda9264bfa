package layers

import (
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func TestEmbeddingGathersAndTrains(t *testing.T) {
	s, err := NewStore(tensor.Float64)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	const vocab, d = 5, 3
	if _, err := s.New(ParamSpec{Name: "embed.weight", Shape: tensor.Shape{vocab, d}, Init: Normal(1)}, true, rng); err != nil {
		t.Fatal(err)
	}
	g := s.NewGraph(true)
	ids := IDs(g, "ids", 2, 3)
	if ids.Dtype() != tensor.Int || !ids.Shape().Eq(tensor.Shape{2, 3}) {
		t.Fatalf("ids node is %v %v", ids.Dtype(), ids.Shape())
	}
	e, err := Embedding(g, ids, "embed.weight")
	if err != nil {
		t.Fatal(err)
	}
	loss, err := G.Sum(e)
	if err != nil {
		t.Fatal(err)
	}
	params := g.Learnables()
	if len(params) != 1 {
		t.Fatalf("learnables %v", params)
	}
	if _, err := G.Grad(loss, params...); err != nil {
		t.Fatal(err)
	}
	m := G.NewTapeMachine(g.G, G.BindDualValues(params...))
	defer m.Close()
	seq := []int{4, 0, 4, 1, 4, 2}
	copy(ids.Value().Data().([]int), seq)
	if err := m.RunAll(); err != nil {
		t.Fatal(err)
	}
	p, _ := s.Get("embed.weight")
	table := Float64s(p.Value)
	got := Float64s(e.Value().(*tensor.Dense))
	for i, id := range seq {
		for j := 0; j < d; j++ {
			if got[i*d+j] != table[id*d+j] {
				t.Fatalf("row %d: got %v, want table row %d", i, got[i*d:(i+1)*d], id)
			}
		}
	}
	gv, err := params[0].Grad()
	if err != nil {
		t.Fatal(err)
	}
	// d(Σ out)/d table[v, j] counts how often v occurs.
	counts := []float64{1, 1, 1, 0, 3}
	for i, v := range gv.Data().([]float64) {
		if v != counts[i/d] {
			t.Fatalf("table gradient %v, want row counts %v", gv.Data(), counts)
		}
	}
	if _, err := Embedding(g, ids, "missing"); err == nil {
		t.Error("a missing table must be an error")
	}
}
