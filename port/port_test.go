package port

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lilygo/lily/adapterfile"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/tensorfile"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// userModel is a model as a Gorgonia user writes it: four linear layers
// named the way target_modules can select them, weights made with
// G.NewMatrix, biases as [1, n] rows (layers 0, 2) or vectors (layers 1, 3).
type userModel struct {
	g    *G.ExprGraph
	w, b [4]*G.Node
}

var userNames = [4]string{"in", "hidden.0.fc", "hidden.1.fc", "out"}

// userWidths are the widths of the four layers' inputs and of the output.
var userWidths = [5]int{3, 8, 8, 8, 2}

// newUserModel puts the model on g. Models built with the same seed hold
// equal values.
func newUserModel(g *G.ExprGraph, dt tensor.Dtype, seed uint64) *userModel {
	rng := rand.New(rand.NewPCG(seed, 7))
	m := &userModel{g: g}
	for i := range m.w {
		in, out := userWidths[i], userWidths[i+1]
		m.w[i] = G.NewMatrix(g, dt, G.WithShape(in, out), G.WithName(fmt.Sprintf("w%d", i)),
			G.WithValue(layers.FromFloat64(dt, []int{in, out}, randn(rng, in*out, 0.5))))
		shape := []int{1, out}
		if i%2 == 1 {
			shape = []int{out}
		}
		m.b[i] = G.NewTensor(g, dt, len(shape), G.WithShape(shape...), G.WithName(fmt.Sprintf("b%d", i)),
			G.WithValue(layers.FromFloat64(dt, shape, randn(rng, out, 0.1))))
	}
	return m
}

func (m *userModel) layers() []Layer {
	out := make([]Layer, len(m.w))
	for i := range m.w {
		out[i] = Layer{Name: userNames[i], W: m.w[i], B: m.b[i]}
	}
	return out
}

// frozen returns copies of every weight and bias value.
func (m *userModel) frozen() [][]float64 {
	var out [][]float64
	for i := range m.w {
		out = append(out, layers.Float64s(m.w[i].Value().(*tensor.Dense)), layers.Float64s(m.b[i].Value().(*tensor.Dense)))
	}
	return out
}

// fwd runs x through the ported layers with tanh between them.
func fwd(t testing.TB, p *Port, x *G.Node) *G.Node {
	t.Helper()
	h := x
	for i, name := range userNames {
		var err error
		if h, err = p.Linear(name, h); err != nil {
			t.Fatalf("%+v", err)
		}
		if i < len(userNames)-1 {
			h = G.Must(G.Tanh(h))
		}
	}
	return h
}

// plainFwd is the unported forward pass: G.Mul and a broadcast bias.
func plainFwd(m *userModel, x *G.Node) *G.Node {
	h := x
	for i := range m.w {
		h = G.Must(G.Mul(h, m.w[i]))
		b := m.b[i]
		if b.Dims() == 1 {
			b = G.Must(G.Reshape(b, tensor.Shape{1, b.Shape()[0]}))
		}
		h = G.Must(G.BroadcastAdd(h, b, nil, []byte{0}))
		if i < len(m.w)-1 {
			h = G.Must(G.Tanh(h))
		}
	}
	return h
}

func randn(rng *rand.Rand, n int, std float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = rng.NormFloat64() * std
	}
	return v
}

func input(g *G.ExprGraph, dt tensor.Dtype, name string, seed uint64, shape ...int) *G.Node {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := layers.FromFloat64(dt, shape, randn(rand.New(rand.NewPCG(seed, 9)), n, 1))
	return G.NewTensor(g, dt, len(shape), G.WithShape(shape...), G.WithName(name), G.WithValue(v))
}

func run(t testing.TB, g *G.ExprGraph, opts ...G.VMOpt) G.VM {
	t.Helper()
	vm := G.NewTapeMachine(g, opts...)
	if err := vm.RunAll(); err != nil {
		t.Fatalf("%+v", err)
	}
	return vm
}

func lily(t testing.TB, targets ...string) *layers.Lily {
	t.Helper()
	a, err := layers.NewLily(layers.LilyConfig{R: 2, StrideA: 2, NumB: 2, Scaling: 1, TargetModules: targets})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// The whole porting story: wrap the user's nodes, train with G.Grad, a
// TapeMachine and a stock Gorgonia solver. The loss falls, only adapter
// nodes are learnables, and the user's weights stay bit-identical.
func TestTrainOnlyAdapter(t *testing.T) {
	for _, method := range []string{"lily", "lora"} {
		t.Run(method, func(t *testing.T) {
			g := G.NewGraph()
			m := newUserModel(g, tensor.Float64, 1)
			before := m.frozen()
			var a layers.Adapter = lily(t, "in", "fc", "out")
			if method == "lora" {
				a, _ = layers.NewLoRA(layers.LoRAConfig{R: 2, Alpha: 2, TargetModules: []string{"in", "fc", "out"}})
			}
			p, err := New(g, a, m.layers()...)
			if err != nil {
				t.Fatalf("%+v", err)
			}
			x := input(g, tensor.Float64, "x", 2, 16, 3)
			target := input(g, tensor.Float64, "target", 3, 16, 2)
			cost := G.Must(G.Mean(G.Must(G.Square(G.Must(G.Sub(fwd(t, p, x), target))))))
			learn := p.Learnables()
			for _, n := range learn {
				for i := range m.w {
					if n == m.w[i] || n == m.b[i] {
						t.Fatalf("the model's %s is a learnable", n.Name())
					}
				}
				if !strings.Contains(n.Name(), "."+method+"_") {
					t.Fatalf("learnable %s is not an adapter tensor", n.Name())
				}
			}
			if _, err := G.Grad(cost, learn...); err != nil {
				t.Fatalf("%+v", err)
			}
			vm := G.NewTapeMachine(g, G.BindDualValues(learn...))
			defer vm.Close()
			solver := G.NewAdamSolver(G.WithLearnRate(0.05))
			var first, last float64
			for step := 0; step < 40; step++ {
				if err := vm.RunAll(); err != nil {
					t.Fatalf("%+v", err)
				}
				last = cost.Value().Data().(float64)
				if step == 0 {
					first = last
				}
				if err := solver.Step(G.NodesToValueGrads(learn)); err != nil {
					t.Fatal(err)
				}
				vm.Reset()
			}
			if !(last < first/2) {
				t.Fatalf("loss %v → %v: did not halve", first, last)
			}
			after := m.frozen()
			for i := range before {
				for j := range before[i] {
					if math.Float64bits(before[i][j]) != math.Float64bits(after[i][j]) {
						t.Fatalf("frozen tensor %d changed at %d: %v → %v", i, j, before[i][j], after[i][j])
					}
				}
			}
		})
	}
}

// With B at zero (the default), the ported model computes exactly what the
// plain G.Mul model does, for float32 and float64.
func TestStartsAsTheBaseModel(t *testing.T) {
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		g := G.NewGraph()
		m := newUserModel(g, dt, 4)
		p, err := New(g, lily(t, "fc"), m.layers()...)
		if err != nil {
			t.Fatalf("%+v", err)
		}
		x := input(g, dt, "x", 5, 6, 3)
		ported, plain := fwd(t, p, x), plainFwd(m, x)
		run(t, g).Close()
		a, b := layers.Float64s(ported.Value().(*tensor.Dense)), layers.Float64s(plain.Value().(*tensor.Dense))
		tol := 1e-12
		if dt == tensor.Float32 {
			tol = 1e-5
		}
		for i := range a {
			if math.Abs(a[i]-b[i]) > tol {
				t.Fatalf("%v: output %d: ported %v, plain %v", dt, i, a[i], b[i])
			}
		}
	}
}

// Linear accepts inputs of rank 3 and more, and gives what the rank-2 input
// of the same rows gives (Lily's batch routing averages over all rows).
func TestHigherRankInput(t *testing.T) {
	out := map[int][]float64{}
	for _, shape := range [][]int{{6, 3}, {2, 3, 3}, {1, 2, 3, 3}} {
		g := G.NewGraph()
		m := newUserModel(g, tensor.Float64, 4)
		a, _ := layers.NewLily(layers.LilyConfig{R: 2, StrideA: 2, NumB: 2, Scaling: 1, TargetModules: []string{"in", "fc", "out"}, NonZeroB: true})
		p, err := New(g, a, m.layers()...)
		if err != nil {
			t.Fatalf("%+v", err)
		}
		y := fwd(t, p, input(g, tensor.Float64, "x", 5, shape...))
		run(t, g).Close()
		want := append(append([]int(nil), shape[:len(shape)-1]...), 2)
		if !y.Shape().Eq(tensor.Shape(want)) {
			t.Fatalf("input %v: output shape %v, want %v", shape, y.Shape(), want)
		}
		out[len(shape)] = layers.Float64s(y.Value().(*tensor.Dense))
	}
	for rank, v := range out {
		for i := range v {
			if math.Abs(v[i]-out[2][i]) > 1e-12 {
				t.Fatalf("rank %d output %d: %v, rank 2 gives %v", rank, i, v[i], out[2][i])
			}
		}
	}
}

// target_modules picks layers by name suffix: "fc" adapts both hidden
// layers (sharing one A and one B pool), and the other layers stay plain.
func TestAdaptSomeLayers(t *testing.T) {
	g := G.NewGraph()
	m := newUserModel(g, tensor.Float64, 1)
	p, err := New(g, lily(t, "fc"), m.layers()...)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	for _, name := range userNames {
		if want := strings.HasSuffix(name, ".fc"); p.Adapted(name) != want {
			t.Errorf("Adapted(%q) = %t, want %t", name, !want, want)
		}
	}
	fwd(t, p, input(g, tensor.Float64, "x", 2, 4, 3))
	var names []string
	n := 0
	for _, l := range p.Learnables() {
		names = append(names, l.Name())
		n += l.Shape().TotalSize()
	}
	want := []string{"hidden.0.fc.lily_A.weight", "hidden.0.fc.lily_B.weight", "hidden.0.fc.lily_router.weight", "hidden.1.fc.lily_router.weight"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Fatalf("learnables %v, want %v", names, want)
	}
	// One A [8, 2], one pool [2, 2, 8], two routers [2, 2].
	trainable, total := p.Count()
	if n != 8*2+2*2*8+2*2*2 || trainable != n {
		t.Fatalf("learnables hold %d elements, Count says %d", n, trainable)
	}
	if frozen := 3*8 + 8 + 2*(8*8+8) + 8*2 + 2; total != trainable+frozen {
		t.Fatalf("total %d, want %d", total, trainable+frozen)
	}
	// A LoRA with a name that matches nothing is refused.
	g2 := G.NewGraph()
	lora, _ := layers.NewLoRA(layers.DefaultLoRAConfig("query"))
	if _, err := New(g2, lora, newUserModel(g2, tensor.Float64, 1).layers()...); err == nil || !strings.Contains(err.Error(), "no module matches") {
		t.Fatalf("error %v, want one about no module matching", err)
	}
}

// Save writes the adapter alone; Load puts it on a fresh graph of the same
// model, where it computes what the trained port computed.
func TestSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "adapter")
	g := G.NewGraph()
	m := newUserModel(g, tensor.Float64, 1)
	p, err := New(g, lily(t, "in", "fc"), m.layers()...)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	y := fwd(t, p, input(g, tensor.Float64, "x", 2, 5, 3))
	// The backward pass may reuse y's tensor in place; Read keeps a copy.
	var yv G.Value
	read := G.Read(y, &yv)
	cost := G.Must(G.Sum(G.Must(G.Square(y))))
	vm, err := p.Graph().Machine(cost, read)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	solver := G.NewVanillaSolver(G.WithLearnRate(0.1))
	for step := 0; step < 3; step++ {
		if err := vm.RunAll(); err != nil {
			t.Fatalf("%+v", err)
		}
		if err := solver.Step(G.NodesToValueGrads(p.Learnables())); err != nil {
			t.Fatal(err)
		}
		vm.Reset()
	}
	if err := vm.RunAll(); err != nil {
		t.Fatalf("%+v", err)
	}
	vm.Close()
	want := layers.Float64s(yv.(*tensor.Dense))
	// SaveWith PEFTLayout writes PEFT's per-layer layout: the A shared by
	// in and hidden.0.fc (stride 2) and fc's B pool repeated under each
	// layer's key, and no lily_go section. Load reads both layouts back.
	peftDir := filepath.Join(t.TempDir(), "peft")
	if err := p.SaveWith(peftDir, adapterfile.Options{PEFTLayout: true}); err != nil {
		t.Fatalf("%+v", err)
	}
	if err := p.Save(dir); err != nil {
		t.Fatalf("%+v", err)
	}
	keys := map[string][]string{}
	for _, d := range []string{dir, peftDir} {
		f, err := tensorfile.Open(filepath.Join(d, adapterfile.WeightsName))
		if err != nil {
			t.Fatal(err)
		}
		keys[d] = f.Names()
		for _, k := range f.Names() {
			if !strings.Contains(k, ".lily_") {
				t.Errorf("the adapter file holds %s", k)
			}
		}
		cfg, err := adapterfile.ReadConfig(d)
		if err != nil {
			t.Fatal(err)
		}
		if peft := d == peftDir; (cfg.Ext == nil) != peft {
			t.Errorf("%s: lily_go section %v, want it only without PEFTLayout", d, cfg.Ext)
		}
	}
	// Every adapted layer has its own A and B keys in PEFT's layout.
	for _, s := range p.Sites() {
		if !p.Adapted(s.Path) {
			continue
		}
		for _, kind := range []string{".lily_A.", ".lily_B."} {
			if !slices.ContainsFunc(keys[peftDir], func(k string) bool { return strings.Contains(k, s.Path+kind) }) {
				t.Errorf("PEFT layout has no %s key for %s: %v", kind, s.Path, keys[peftDir])
			}
		}
	}
	if len(keys[peftDir]) <= len(keys[dir]) {
		t.Errorf("PEFT layout holds %d tensors, the shared-once layout %d; want the shared ones repeated", len(keys[peftDir]), len(keys[dir]))
	}

	var m2 *userModel
	for _, d := range []string{dir, peftDir} {
		g2 := G.NewGraph()
		m2 = newUserModel(g2, tensor.Float64, 1)
		q, err := Load(g2, d, m2.layers()...)
		if err != nil {
			t.Fatalf("%+v", err)
		}
		y2 := fwd(t, q, input(g2, tensor.Float64, "x", 2, 5, 3))
		run(t, g2).Close()
		got := layers.Float64s(y2.Value().(*tensor.Dense))
		for i := range want {
			if math.Abs(got[i]-want[i]) > 1e-12 {
				t.Fatalf("%s: reloaded output %d: %v, trained %v", d, i, got[i], want[i])
			}
		}
		if len(q.Learnables()) != len(p.Learnables()) {
			t.Fatalf("%s: reloaded port has %d learnables, the trained one %d", d, len(q.Learnables()), len(p.Learnables()))
		}
	}

	// A model of other widths does not take the adapter.
	g3 := G.NewGraph()
	w := G.NewMatrix(g3, G.Float64, G.WithShape(4, 8), G.WithName("w"), G.WithInit(G.Ones()))
	if _, err := Load(g3, dir, Layer{Name: "in", W: w}); err == nil {
		t.Fatal("Load into a model of other widths gave no error")
	}
	if _, err := Load(G.NewGraph(), filepath.Join(dir, "missing"), m2.layers()...); err == nil {
		t.Fatal("Load of a missing directory gave no error")
	}
}

// The port's store is the library's ordinary one: a graph built on it with
// layers.Linear (the way to several shape buckets) computes what the port
// does, and layers.Merge folds a LoRA into the user's own weight tensors.
func TestStoreMigrationAndMerge(t *testing.T) {
	g := G.NewGraph()
	m := newUserModel(g, tensor.Float64, 1)
	lora, _ := layers.NewLoRA(layers.LoRAConfig{R: 2, Alpha: 2, TargetModules: []string{"fc"}, NonZeroB: true})
	p, err := New(g, lora, m.layers()...)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	y := fwd(t, p, input(g, tensor.Float64, "x", 2, 5, 3))
	run(t, g).Close()
	want := layers.Float64s(y.Value().(*tensor.Dense))

	eg := p.Store().NewGraph(false)
	h := input(eg.G, tensor.Float64, "x", 2, 5, 3)
	for i, site := range p.Sites() {
		if h, err = layers.Linear(eg, p.Adapter(), site, h); err != nil {
			t.Fatalf("%+v", err)
		}
		if i < 3 {
			h = G.Must(G.Tanh(h))
		}
	}
	run(t, eg.G).Close()
	assertClose(t, "store graph", layers.Float64s(h.Value().(*tensor.Dense)), want)

	if err := layers.Merge(p.Store(), p.Adapter(), p.Sites()); err != nil {
		t.Fatalf("%+v", err)
	}
	// The plain model, on a new graph over the same (now merged) tensors.
	g2 := G.NewGraph()
	m2 := &userModel{g: g2}
	for i := range m.w {
		m2.w[i] = G.NodeFromAny(g2, m.w[i].Value(), G.WithName(m.w[i].Name()))
		m2.b[i] = G.NodeFromAny(g2, m.b[i].Value(), G.WithName(m.b[i].Name()))
	}
	plain := plainFwd(m2, input(g2, tensor.Float64, "x", 2, 5, 3))
	run(t, g2).Close()
	assertClose(t, "merged plain model", layers.Float64s(plain.Value().(*tensor.Dense)), want)
}

func assertClose(t *testing.T, what string, got, want []float64) {
	t.Helper()
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-9 {
			t.Fatalf("%s: output %d is %v, want %v", what, i, got[i], want[i])
		}
	}
}

// LoRA's dropout is off until RefillDropout draws a mask.
func TestLoRADropout(t *testing.T) {
	g := G.NewGraph()
	m := newUserModel(g, tensor.Float64, 1)
	lora, _ := layers.NewLoRA(layers.LoRAConfig{R: 2, Alpha: 2, Dropout: 0.5, TargetModules: []string{"in"}, NonZeroB: true})
	p, err := New(g, lora, m.layers()...)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	x := input(g, tensor.Float64, "x", 2, 5, 3)
	y, plain := fwd(t, p, x), plainFwd(m, x)
	vm := run(t, g)
	defer vm.Close()
	eval := layers.Float64s(y.Value().(*tensor.Dense))
	if err := p.RefillDropout(rand.New(rand.NewPCG(1, 1))); err != nil {
		t.Fatal(err)
	}
	vm.Reset()
	if err := vm.RunAll(); err != nil {
		t.Fatalf("%+v", err)
	}
	train := layers.Float64s(y.Value().(*tensor.Dense))
	base := layers.Float64s(plain.Value().(*tensor.Dense))
	same := true
	for i := range eval {
		same = same && eval[i] == train[i]
	}
	if same || eval[0] == base[0] {
		t.Fatalf("dropout had no effect (eval %v, train %v, base %v)", eval[:2], train[:2], base[:2])
	}
}

// Bad input is reported as an error that names the problem, never a panic.
func TestErrors(t *testing.T) {
	newG := func() (*G.ExprGraph, *userModel) {
		g := G.NewGraph()
		return g, newUserModel(g, tensor.Float64, 1)
	}
	g, m := newG()
	other, om := newG()
	ls := m.layers()
	with := func(i int, f func(*Layer)) []Layer {
		out := append([]Layer(nil), ls...)
		f(&out[i])
		return out
	}
	noValue := G.NewMatrix(g, G.Float64, G.WithShape(3, 8), G.WithName("novalue"))
	vec := G.NewVector(g, G.Float64, G.WithShape(8), G.WithName("vec"), G.WithInit(G.Zeroes()))
	f32 := G.NewMatrix(g, G.Float32, G.WithShape(8, 8), G.WithName("f32"), G.WithInit(G.Zeroes()))
	badBias := G.NewMatrix(g, G.Float64, G.WithShape(8, 1), G.WithName("badbias"), G.WithInit(G.Zeroes()))
	newErr := func(g *G.ExprGraph, a layers.Adapter, ls []Layer) error {
		_, err := New(g, a, ls...)
		return err
	}
	_, randErr := NewRand(g, lily(t, "fc"), nil, ls...)
	clash, cm := newG()
	G.NewMatrix(clash, G.Float64, G.WithShape(8, 2), G.WithName("hidden.0.fc.lily_A.weight"), G.WithInit(G.Zeroes()))
	fc := lily(t, "fc")
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"nil graph", newErr(nil, fc, ls), "nil graph"},
		{"nil adapter", newErr(g, nil, ls), "no adapter"},
		{"nil rng", randErr, "nil random"},
		{"no layers", newErr(g, fc, nil), "no layers"},
		{"no name", newErr(g, fc, with(1, func(l *Layer) { l.Name = "" })), "no name"},
		{"duplicate", newErr(g, fc, with(1, func(l *Layer) { l.Name = "in" })), `two layers are named "in"`},
		{"nil weight", newErr(g, fc, with(1, func(l *Layer) { l.W = nil })), "no weight node"},
		{"other graph", newErr(g, fc, with(1, func(l *Layer) { l.W = om.w[1] })), "another graph"},
		{"no value", newErr(g, fc, with(0, func(l *Layer) { l.W = noValue })), "holds no tensor value"},
		{"vector weight", newErr(g, fc, with(0, func(l *Layer) { l.W = vec })), "want a [d_in, d_out] matrix"},
		{"mixed dtypes", newErr(g, fc, with(1, func(l *Layer) { l.W, l.B = f32, nil })), "float32"},
		{"bias shape", newErr(g, fc, with(1, func(l *Layer) { l.B = badBias })), "want [8] or [1, 8]"},
		{"name clash", newErr(clash, fc, cm.layers()), `already has a node named "hidden.0.fc.lily_A.weight"`},
		{"no match", newErr(g, lily(t, "query"), ls), "no module matches"},
	}
	for _, c := range cases {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, c.err, c.want)
		}
	}

	g, m = newG()
	p, err := New(g, lily(t, "fc"), m.layers()...)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	x := input(g, tensor.Float64, "x", 1, 2, 3)
	linear := []struct {
		name string
		call func() (*G.Node, error)
		want string
	}{
		{"unknown layer", func() (*G.Node, error) { return p.Linear("fc1", x) }, `no layer named "fc1"; the layers are "in", "hidden.0.fc"`},
		{"nil input", func() (*G.Node, error) { return p.Linear("in", nil) }, "nil input"},
		{"other graph", func() (*G.Node, error) { return p.Linear("in", input(other, tensor.Float64, "x", 1, 2, 3)) }, "another graph"},
		{"dtype", func() (*G.Node, error) { return p.Linear("in", input(g, tensor.Float32, "x32", 1, 2, 3)) }, "is float32, the weights are float64"},
		{"width", func() (*G.Node, error) { return p.Linear("hidden.0.fc", x) }, "want [..., 8]"},
	}
	for _, c := range linear {
		if _, err := c.call(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Linear, %s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}
