package dataparallel_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/lilygo/lily/dataparallel"
	"github.com/lilygo/lily/layers"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// intModel is a float64 linear model with a LoRA adapter whose weights and
// data are small integers, and a loss Σ out⊙y: every product and sum is an
// integer far below 2⁵³, so float64 computes them exactly in any order, and
// gradients of different batch splits must agree bit for bit.
type intModel struct {
	store *layers.Store
	lora  *layers.LoRA
	site  layers.Site
}

func newIntModel(t *testing.T) *intModel {
	t.Helper()
	const d = 6
	store, err := layers.NewStore(tensor.Float64)
	if err != nil {
		t.Fatal(err)
	}
	m := &intModel{store: store, site: layers.Site{Target: "proj", Path: "proj", DIn: d, DOut: d, Weight: "proj.weight"}}
	if _, err := store.New(layers.ParamSpec{Name: "proj.weight", Shape: tensor.Shape{d, d}}, false, nil); err != nil {
		t.Fatal(err)
	}
	if m.lora, err = layers.NewLoRA(layers.LoRAConfig{R: 2, Alpha: 2, TargetModules: []string{"proj"}}); err != nil {
		t.Fatal(err)
	}
	if err := layers.Attach(store, m.lora, []layers.Site{m.site}, rand.New(rand.NewPCG(1, 2))); err != nil {
		t.Fatal(err)
	}
	for k, p := range store.Params() {
		vals := p.Value.Float64s()
		for i := range vals {
			vals[i] = float64((i*(k+3))%7 - 3)
		}
	}
	return m
}

// run builds a graph for rows [from, to) of the data, runs it once and
// returns it.
func (m *intModel) run(t *testing.T, from, to int) *layers.Graph {
	t.Helper()
	g := m.store.NewGraph(true)
	n := to - from
	x, y := g.Input("x", n, m.site.DIn), g.Input("y", n, m.site.DOut)
	xs, ys := x.Value().Data().([]float64), y.Value().Data().([]float64)
	for i := range xs {
		xs[i] = float64((from*m.site.DIn+i)%5 - 2)
		ys[i] = float64((from*m.site.DOut+i)%3 - 1)
	}
	out, err := layers.Linear(g, m.lora, m.site, x)
	if err != nil {
		t.Fatal(err)
	}
	loss := G.Must(G.Sum(G.Must(G.HadamardProd(out, y))))
	vm, err := g.Machine(loss)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	return g
}

// grads copies the gradients of a graph's learnables.
func grads(t *testing.T, g *layers.Graph) [][]float64 {
	t.Helper()
	var out [][]float64
	for _, n := range g.Learnables() {
		gv, err := n.Grad()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, layers.Float64s(gv.(*tensor.Dense)))
	}
	return out
}

// sameBits reports the first element where two gradient lists differ.
func sameBits(t *testing.T, what string, got []G.ValueGrad, want [][]float64) {
	t.Helper()
	for i, vg := range got {
		gv, _ := vg.Grad()
		for j, v := range layers.Float64s(gv.(*tensor.Dense)) {
			if math.Float64bits(v) != math.Float64bits(want[i][j]) {
				t.Fatalf("%s: gradient %d element %d is %v, want %v", what, i, j, v, want[i][j])
			}
		}
	}
}

// TestAccumulatorMatchesBigBatch accumulates micro-batches of 2 and 4 rows,
// run on two graphs (two shape buckets), and checks that the sum equals the
// gradient of one batch of all 6 rows bit for bit; that Add leaves the
// graphs' gradients zero; and that after Gradients the next Add starts a new
// sum.
func TestAccumulatorMatchesBigBatch(t *testing.T) {
	m := newIntModel(t)
	want := grads(t, m.run(t, 0, 6))
	nonzero := false
	for _, g := range want {
		for _, v := range g {
			nonzero = nonzero || v != 0
		}
	}
	if !nonzero {
		t.Fatal("the big batch's gradients are all zero; the test would prove nothing")
	}
	acc, err := dataparallel.NewAccumulator(m.store.Trainable())
	if err != nil {
		t.Fatal(err)
	}
	g1, g2 := m.run(t, 0, 2), m.run(t, 2, 6)
	first := grads(t, g1)
	for _, g := range []*layers.Graph{g1, g2} {
		if err := acc.Add(g.Learnables()); err != nil {
			t.Fatal(err)
		}
		for _, gr := range grads(t, g) {
			for _, v := range gr {
				if v != 0 {
					t.Fatal("Add left a gradient in the graph")
				}
			}
		}
	}
	if acc.MicroBatches() != 2 {
		t.Errorf("MicroBatches() = %d, want 2", acc.MicroBatches())
	}
	sameBits(t, "micro-batches 2+4", acc.Gradients(), want)

	if err := acc.Add(m.run(t, 0, 2).Learnables()); err != nil {
		t.Fatal(err)
	}
	sameBits(t, "a new sum after Gradients", acc.Gradients(), first)
	zero := make([][]float64, len(first))
	for i := range zero {
		zero[i] = make([]float64, len(first[i]))
	}
	sameBits(t, "no micro-batch since Gradients", acc.Gradients(), zero)
}

// TestAccumulatorRejects checks the errors for nodes that do not belong to
// the accumulator and for duplicate parameters.
func TestAccumulatorRejects(t *testing.T) {
	m := newIntModel(t)
	other := newIntModel(t)
	acc, err := dataparallel.NewAccumulator(m.store.Trainable())
	if err != nil {
		t.Fatal(err)
	}
	if err := acc.Add(other.run(t, 0, 2).Learnables()); err == nil || !strings.Contains(err.Error(), "same store") {
		t.Errorf("nodes of another store: error %v", err)
	}
	g := m.run(t, 0, 2)
	nodes := append(g.Learnables(), g.Learnables()[0])
	if err := acc.Add(nodes); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a node listed twice: error %v", err)
	}
	p := m.store.Trainable()
	if _, err := dataparallel.NewAccumulator(append(p, p[0])); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a parameter listed twice: error %v", err)
	}
}
