package roberta

import (
	"math/rand/v2"
	"testing"

	"github.com/lilygo/lily/internal/opkit"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// A machine from Graph.Machine recycles the outputs of the ops' nodes from
// run to run; over several runs with different inputs it computes exactly
// what a plain TapeMachine (fresh values everywhere) computes, and the
// values a caller reads (the loss, extra outputs) stay fresh.
func TestMachineRecyclesOutputs(t *testing.T) {
	c := tinyConfig()
	s := newFullStore(t, c, tensor.Float64, 2)
	s.Freeze()
	lily, err := layers.NewLily(layers.LilyConfig{R: 3, StrideA: 1, NumB: 2, Scaling: 0.5, TargetModules: []string{"query", "value"}, NonZeroB: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := layers.Attach(s, lily, c.Sites(), rand.New(rand.NewPCG(4, 4))); err != nil {
		t.Fatal(err)
	}
	if p, ok := s.Get("classifier.out_proj.weight"); ok {
		p.Trainable = true
	}
	const b, tok = 2, 4
	type built struct {
		g      *layers.Graph
		m      *Model
		loss   *G.Node
		labels *G.Node
		vm     G.VM
	}
	build := func(machine bool) built {
		g := s.NewGraph(false)
		m, err := Build(g, c, lily, b, tok, Options{Classifier: true})
		if err != nil {
			t.Fatalf("%+v", err)
		}
		labels := layers.IDs(g, "labels", b)
		loss, err := lilyop.CrossEntropy(m.Logits, labels)
		if err != nil {
			t.Fatal(err)
		}
		x := built{g: g, m: m, loss: loss, labels: labels}
		if machine {
			if x.vm, err = g.Machine(loss, m.Logits); err != nil {
				t.Fatalf("%+v", err)
			}
			return x
		}
		if _, err := G.Grad(loss, g.Learnables()...); err != nil {
			t.Fatal(err)
		}
		x.vm = G.NewTapeMachine(g.G, G.BindDualValues(g.Learnables()...))
		return x
	}
	fresh, recycled := build(false), build(true)
	defer fresh.vm.Close()
	defer recycled.vm.Close()
	on := 0
	for _, n := range recycled.g.G.AllNodes() {
		if sl, ok := n.Op().(opkit.Slotted); ok && sl.OutputSlot().Reusing() {
			on++
			if n == recycled.loss || n == recycled.m.Logits {
				t.Errorf("the kept output %v recycles its value", n)
			}
		}
	}
	if on < 10 {
		t.Fatalf("only %d nodes recycle their outputs", on)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	var prevLogits []float64
	var prevLogitsValue G.Value
	for run := 0; run < 3; run++ {
		ids, mask, types := batchInputs(rng, c, b, tok)
		labels := []int{rng.IntN(2), rng.IntN(2)}
		for _, x := range []built{fresh, recycled} {
			if err := x.m.SetInputs(ids, mask, types); err != nil {
				t.Fatal(err)
			}
			copy(x.labels.Value().Data().([]int), labels)
			x.vm.Reset()
			if err := x.vm.RunAll(); err != nil {
				t.Fatalf("%+v", err)
			}
		}
		assertClose(t, "loss", []float64{recycled.loss.Value().Data().(float64)}, []float64{fresh.loss.Value().Data().(float64)}, 1e-12)
		assertClose(t, "logits", float64s(recycled.m.Logits.Value()), float64s(fresh.m.Logits.Value()), 1e-12)
		want := fresh.g.Learnables()
		for i, n := range recycled.g.Learnables() {
			ga, _ := want[i].Grad()
			gb, err := n.Grad()
			if err != nil {
				t.Fatal(err)
			}
			assertClose(t, "gradient of "+n.Name(), float64s(gb), float64s(ga), 1e-12)
		}
		if prevLogitsValue != nil {
			assertClose(t, "the previous run's logits", float64s(prevLogitsValue), prevLogits, 0)
		}
		prevLogitsValue, prevLogits = recycled.m.Logits.Value(), float64s(recycled.m.Logits.Value())
	}
}

// Apply gives every node its own slot, also to an op value copied from
// another op's, and EnableReuse switches on only nodes that are not kept
// and whose consumers are all ops with slots.
func TestApplyAndEnableReuse(t *testing.T) {
	g := G.NewGraph()
	x := G.NewMatrix(g, tensor.Float64, G.WithShape(2, 3), G.WithName("x"), G.WithInit(G.Ones()))
	w := G.NewMatrix(g, tensor.Float64, G.WithShape(3, 3), G.WithName("w"), G.WithInit(G.Ones()))
	a, _ := lilyop.MatMul(x, w)   // read by b only: recycled
	b, _ := lilyop.MatMul(a, w)   // read by a stock op: not recycled
	c, _ := G.Add(b, b)           // stock
	d, _ := lilyop.MatMul(a, w)   // the same op on the same input: the same node as b
	e, _ := lilyop.MatMulNT(x, w) // kept
	if d != b {
		t.Fatal("slots broke hash-consing")
	}
	sa, sb, se := a.Op().(opkit.Slotted).OutputSlot(), b.Op().(opkit.Slotted).OutputSlot(), e.Op().(opkit.Slotted).OutputSlot()
	if sa == nil || sa == sb || sb == se {
		t.Fatal("nodes share slots")
	}
	if n := opkit.EnableReuse(g, G.Nodes{e}); n != 1 || !sa.Reusing() || sb.Reusing() || se.Reusing() {
		t.Errorf("%d nodes switched on; a %t, b %t, e %t", n, sa.Reusing(), sb.Reusing(), se.Reusing())
	}
	_ = c
}
