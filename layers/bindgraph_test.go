package layers

import (
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// BindGraph puts the store's nodes into an existing Gorgonia graph, next to
// nodes the caller made there, and they compute together.
func TestBindGraph(t *testing.T) {
	s, _ := NewStore(tensor.Float64)
	rng := rand.New(rand.NewPCG(3, 4))
	if _, err := s.New(ParamSpec{Name: "fc.weight", Shape: tensor.Shape{3, 2}, Init: Constant(0.5)}, false, rng); err != nil {
		t.Fatal(err)
	}
	site := Site{Target: "fc", Path: "fc", DIn: 3, DOut: 2, Weight: "fc.weight"}
	lora, _ := NewLoRA(LoRAConfig{R: 1, Alpha: 1, TargetModules: []string{"fc"}, NonZeroB: true})
	if err := Attach(s, lora, []Site{site}, rng); err != nil {
		t.Fatal(err)
	}
	eg := G.NewGraph()
	x := G.NewMatrix(eg, G.Float64, G.WithShape(4, 3), G.WithName("user.x"), G.WithInit(G.Ones()))
	g, err := s.BindGraph(eg, true)
	if err != nil {
		t.Fatal(err)
	}
	y, err := Linear(g, lora, site, x)
	if err != nil {
		t.Fatal(err)
	}
	if y.Graph() != eg || g.G != eg {
		t.Fatal("BindGraph's nodes are not in the caller's graph")
	}
	if n := len(g.Learnables()); n != 2 {
		t.Fatalf("%d learnables, want LoRA's A and B", n)
	}
	cost := G.Must(G.Sum(y))
	vm, err := g.Machine(cost)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatalf("%+v", err)
	}
	// x·W alone sums to 4 rows · 2 columns · 3 · 0.5 = 12; LoRA adds to it.
	if v := cost.Value().Data().(float64); v == 12 {
		t.Fatalf("cost %v: the adapter added nothing", v)
	}
	if _, err := s.BindGraph(nil, false); err == nil {
		t.Fatal("BindGraph(nil) gave no error")
	}
}
