package port_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/port"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// model is a two-layer perceptron as a Gorgonia user writes it. Its layers
// have the same shape, so Lily shares one A and one pool of B's between them.
type model struct {
	w1, b1, w2, b2 *G.Node
}

func newModel(g *G.ExprGraph) *model {
	return &model{
		w1: G.NewMatrix(g, G.Float64, G.WithShape(16, 16), G.WithName("w1"), G.WithInit(G.GlorotU(1))),
		b1: G.NewMatrix(g, G.Float64, G.WithShape(1, 16), G.WithName("b1"), G.WithInit(G.Zeroes())),
		w2: G.NewMatrix(g, G.Float64, G.WithShape(16, 16), G.WithName("w2"), G.WithInit(G.GlorotU(1))),
		b2: G.NewMatrix(g, G.Float64, G.WithShape(1, 16), G.WithName("b2"), G.WithInit(G.Zeroes())),
	}
}

// layers lists the model's linear layers for the port, in model order.
func (m *model) layers() []port.Layer {
	return []port.Layer{{Name: "layers.0.fc", W: m.w1, B: m.b1}, {Name: "layers.1.fc", W: m.w2, B: m.b2}}
}

// Fine-tune an existing Gorgonia model with Lily: wrap its weight nodes,
// call p.Linear where the model called G.Mul, and hand p.Learnables() to
// G.Grad and the solver. The model's own weights never change.
func Example() {
	g := G.NewGraph()
	m := newModel(g)
	x := G.NewMatrix(g, G.Float64, G.WithShape(8, 16), G.WithName("x"), G.WithInit(G.Gaussian(0, 1)))
	target := G.NewMatrix(g, G.Float64, G.WithShape(8, 16), G.WithName("target"), G.WithInit(G.Gaussian(0, 1)))

	lily, err := layers.NewLily(layers.LilyConfig{R: 4, StrideA: 2, NumB: 2, Scaling: 1, TargetModules: []string{"fc"}})
	if err != nil {
		log.Fatal(err)
	}
	p, err := port.New(g, lily, m.layers()...)
	if err != nil {
		log.Fatal(err)
	}
	h, err := p.Linear("layers.0.fc", x) // was G.BroadcastAdd(G.Mul(x, m.w1), m.b1, …)
	if err != nil {
		log.Fatal(err)
	}
	y, err := p.Linear("layers.1.fc", G.Must(G.Tanh(h)))
	if err != nil {
		log.Fatal(err)
	}
	cost := G.Must(G.Mean(G.Must(G.Square(G.Must(G.Sub(y, target))))))
	if _, err := G.Grad(cost, p.Learnables()...); err != nil {
		log.Fatal(err)
	}
	for _, n := range p.Learnables() {
		fmt.Println(n.Name(), n.Shape())
	}
	fmt.Println(layers.Summary(p.Count()))

	w1 := m.w1.Value().(*tensor.Dense).Clone().(*tensor.Dense)
	vm := G.NewTapeMachine(g, G.BindDualValues(p.Learnables()...))
	defer vm.Close()
	solver := G.NewAdamSolver(G.WithLearnRate(0.01))
	var first, last float64
	for i := 0; i < 100; i++ {
		if err := vm.RunAll(); err != nil {
			log.Fatal(err)
		}
		last = cost.Value().Data().(float64)
		if i == 0 {
			first = last
		}
		if err := solver.Step(G.NodesToValueGrads(p.Learnables())); err != nil {
			log.Fatal(err)
		}
		vm.Reset()
	}
	same, err := tensor.ElEq(w1, m.w1.Value(), tensor.AsSameType())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("loss fell:", last < first)
	fmt.Println("w1 unchanged:", allOnes(same.(*tensor.Dense).Float64s()))
	// Output:
	// layers.0.fc.lily_A.weight (16, 4)
	// layers.0.fc.lily_B.weight (2, 4, 16)
	// layers.0.fc.lily_router.weight (4, 2)
	// layers.1.fc.lily_router.weight (4, 2)
	// trainable params: 208 || all params: 752 || trainable%: 27.6596
	// loss fell: true
	// w1 unchanged: true
}

func allOnes(v []float64) bool {
	for _, x := range v {
		if x != 1 {
			return false
		}
	}
	return true
}

// Save writes the adapter alone; Load puts it back on a fresh graph of the
// same model, for inference or further training.
func ExampleLoad() {
	dir, err := os.MkdirTemp("", "adapter")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	lora, err := layers.NewLoRA(layers.LoRAConfig{R: 2, Alpha: 2, TargetModules: []string{"layers.1.fc"}})
	if err != nil {
		log.Fatal(err)
	}
	g := G.NewGraph()
	p, err := port.New(g, lora, newModel(g).layers()...)
	if err != nil {
		log.Fatal(err)
	}
	// … build the forward pass with p.Linear and train …
	if err := p.Save(filepath.Join(dir, "adapter")); err != nil {
		log.Fatal(err)
	}

	g2 := G.NewGraph()
	q, err := port.Load(g2, filepath.Join(dir, "adapter"), newModel(g2).layers()...)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(q.Adapter().Method(), q.Adapted("layers.0.fc"), q.Adapted("layers.1.fc"))
	// Output:
	// lora false true
}
