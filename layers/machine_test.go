package layers

import (
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Graph.Machine gives the same loss and gradients as a full TapeMachine
// while skipping the gradients of frozen weights.
func TestMachinePrunesFrozenGradients(t *testing.T) {
	build := func() (*toy, *lossGraph) {
		m := newToy(t, tensor.Float64, 2, 4, 1)
		lily, _ := NewLily(LilyConfig{R: 2, StrideA: 2, NumB: 2, Scaling: 1, TargetModules: []string{"value"}, NonZeroB: true})
		if err := Attach(m.store, lily, m.sites, rand.New(rand.NewPCG(1, 1))); err != nil {
			t.Fatal(err)
		}
		lg := m.build(t, lily, false, false, 2, 3, nil)
		lg.vm.Close()
		copyInto(lg.x.Value().(*tensor.Dense), randSlice(rand.New(rand.NewPCG(1, 2)), 24))
		copyInto(lg.y.Value().(*tensor.Dense), randSlice(rand.New(rand.NewPCG(1, 3)), 24))
		return m, lg
	}
	_, full := build()
	params := full.g.Learnables()
	if _, err := G.Grad(full.loss, params...); err != nil {
		t.Fatal(err)
	}
	fullVM := G.NewTapeMachine(full.g.G, G.BindDualValues(params...))
	defer fullVM.Close()
	_, pruned := build()
	vm, err := pruned.g.Machine(pruned.loss)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	defer vm.Close()
	// Both accumulate gradients across runs until a solver step (Gorgonia's
	// BindDualValues semantics), so compare two runs.
	for run := 0; run < 2; run++ {
		fullVM.Reset()
		if err := fullVM.RunAll(); err != nil {
			t.Fatal(err)
		}
		vm.Reset()
		if err := vm.RunAll(); err != nil {
			t.Fatalf("%+v", err)
		}
		if a, b := full.loss.Value().Data().(float64), pruned.loss.Value().Data().(float64); a != b {
			t.Fatalf("loss %v vs %v", a, b)
		}
		for i, n := range pruned.g.Learnables() {
			ga, _ := params[i].Grad()
			gb, err := n.Grad()
			if err != nil {
				t.Fatal(err)
			}
			a, b := ga.Data().([]float64), gb.Data().([]float64)
			for j := range a {
				if a[j] != b[j] {
					t.Fatalf("run %d: gradient of %s differs: %v vs %v", run, n.Name(), a, b)
				}
			}
		}
	}
	skipped := 0
	for _, n := range pruned.g.G.AllNodes() {
		if n.Value() == nil {
			skipped++
		}
	}
	t.Logf("%d of %d nodes never run", skipped, len(pruned.g.G.AllNodes()))
	if skipped == 0 {
		t.Error("the frozen weights' gradients were computed")
	}
}
