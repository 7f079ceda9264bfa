package layers

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/lilygo/lily/lilyop"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func lilyCfg(mode lilyop.Routing) LilyConfig {
	return LilyConfig{R: 3, StrideA: 2, NumB: 3, Scaling: 0.7, TargetModules: []string{"query", "value"}, Routing: mode}
}

func TestLilyLayoutSharesAsPEFT(t *testing.T) {
	sites := stack(5, "m.layer", map[string][2]int{"query": {8, 8}, "value": {8, 4}}, "query", "value")
	// A module of another shape with the same target forms its own group.
	sites = append(sites, Site{Layer: 5, Target: "query", Path: "m.head.query", DIn: 8, DOut: 2, Weight: "w"})
	lily, err := NewLily(lilyCfg(lilyop.Batch))
	if err != nil {
		t.Fatal(err)
	}
	specs, err := lily.Layout(sites)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]tensor.Shape{}
	for _, s := range specs {
		names[s.Name] = s.Shape
	}
	// query of layers 0-1 share layer 0's A, 2-3 layer 2's, 4 its own.
	for l, leader := range []int{0, 0, 2, 2, 4} {
		got := lily.sites["m.layer."+string(rune('0'+l))+".query"].a
		if want := "m.layer." + string(rune('0'+leader)) + ".query.lily_A.weight"; got != want {
			t.Errorf("layer %d query uses A %s, want %s", l, got, want)
		}
		if got := lily.sites["m.layer."+string(rune('0'+l))+".value"].b; got != "m.layer.0.value.lily_B.weight" {
			t.Errorf("layer %d value uses B %s", l, got)
		}
	}
	if lily.sites["m.head.query"].b != "m.head.query.lily_B.weight" {
		t.Error("a different shape must form its own B group")
	}
	// 3 A's + 1 B + 5 routers per (target, shape) of 5 layers, 1+1+1 for the head.
	if len(specs) != 2*(3+1+5)+3 {
		t.Errorf("%d parameters: %v", len(specs), names)
	}
	if s := names["m.layer.0.value.lily_B.weight"]; !s.Eq(tensor.Shape{3, 3, 4}) {
		t.Errorf("B pool shape %v", s)
	}
	if s := names["m.layer.3.value.lily_router.weight"]; !s.Eq(tensor.Shape{3, 3}) {
		t.Errorf("router shape %v", s)
	}
}

func TestTargetMatching(t *testing.T) {
	s := Site{Path: "roberta.encoder.layer.0.attention.output.dense"}
	if got, ok := matchTarget(s, []string{"dense", "output.dense", "attention.output.dense"}); !ok || got != "attention.output.dense" {
		t.Errorf("longest match: got %q", got)
	}
	if _, ok := matchTarget(s, []string{"tput.dense"}); ok {
		t.Error("a target must match whole module names")
	}
	if _, ok := matchTarget(Site{Path: "query"}, []string{"query"}); !ok {
		t.Error("an exact path must match")
	}
}

func TestConfigErrors(t *testing.T) {
	bad := []LilyConfig{
		{R: 0, StrideA: 1, NumB: 2, TargetModules: []string{"q"}},
		{R: 4, StrideA: 0, NumB: 2, TargetModules: []string{"q"}},
		{R: 4, StrideA: 1, NumB: 1, TargetModules: []string{"q"}},
		{R: 4, StrideA: 1, NumB: 2},
		{R: 4, StrideA: 1, NumB: 2, Scaling: math.NaN(), TargetModules: []string{"q"}},
	}
	for _, c := range bad {
		if _, err := NewLily(c); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
	if _, err := NewLoRA(LoRAConfig{R: 4, Alpha: 8, Dropout: 1, TargetModules: []string{"q"}}); err == nil {
		t.Error("dropout 1 accepted")
	}
	lily, _ := NewLily(LilyConfig{R: 2, StrideA: 1, NumB: 2, TargetModules: []string{"nothing"}})
	if _, err := lily.Layout([]Site{{Path: "a.query", DIn: 2, DOut: 2}}); err == nil || !strings.Contains(err.Error(), "no module matches") {
		t.Errorf("no-match error: %v", err)
	}
	if _, err := lily.Layout([]Site{{Path: "a", DIn: 2, DOut: 2}, {Path: "a", DIn: 2, DOut: 2}}); err == nil {
		t.Error("duplicate paths accepted")
	}
}

// The gradient of every Lily parameter, through the shared A's and B's of a
// model built from Linear, matches central differences, for every routing
// mode, with and without padding.
// Attach (and Store.New) with a nil random generator is an error naming the
// parameter, not a nil-pointer panic.
func TestAttachNilRNG(t *testing.T) {
	m := newToy(t, tensor.Float64, 3, 4, 1)
	lily, err := NewLily(lilyCfg(lilyop.Batch))
	if err != nil {
		t.Fatal(err)
	}
	err = Attach(m.store, lily, m.sites, nil)
	if err == nil || !strings.Contains(err.Error(), "random generator") {
		t.Fatalf("Attach with a nil rng: %v", err)
	}
}

func TestLilyModelGradient(t *testing.T) {
	mask := []float64{1, 1, 0, 1, 0, 0}
	for _, tc := range []struct {
		name   string
		cfg    LilyConfig
		tok    int
		mask   []float64
		masked bool
	}{
		{"batch-2d", lilyCfg(lilyop.Batch), 0, nil, false},
		{"batch-3d", lilyCfg(lilyop.Batch), 3, nil, false},
		{"batch-masked", func() LilyConfig { c := lilyCfg(lilyop.Batch); c.MaskBatch = true; return c }(), 3, mask, true},
		{"sequence-masked", lilyCfg(lilyop.Sequence), 3, mask, true},
		{"token", lilyCfg(lilyop.Token), 3, nil, false},
		{"uniform", func() LilyConfig { c := lilyCfg(lilyop.Batch); c.Uniform = true; return c }(), 3, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newToy(t, tensor.Float64, 3, 4, 1)
			cfg := tc.cfg
			cfg.NonZeroB = true // non-zero B so every gradient is exercised
			lily, err := NewLily(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := Attach(m.store, lily, m.sites, rand.New(rand.NewPCG(3, 3))); err != nil {
				t.Fatal(err)
			}
			gradCheckStore(t, m, lily, 2, tc.tok, tc.mask, 9)
		})
	}
}

func TestLoRAModelGradient(t *testing.T) {
	m := newToy(t, tensor.Float64, 2, 4, 2)
	lora, err := NewLoRA(LoRAConfig{R: 2, Alpha: 3, RSLoRA: true, TargetModules: []string{"value"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := Attach(m.store, lora, m.sites, rand.New(rand.NewPCG(4, 4))); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.store.Trainable() {
		if strings.HasSuffix(p.Name, "lora_B.weight") {
			copyInto(p.Value, randSlice(rand.New(rand.NewPCG(5, 5)), p.Value.Shape().TotalSize()))
		}
	}
	gradCheckStore(t, m, lora, 2, 3, nil, 10)
}

// With B initialised to zero the adapted model equals the base model, and
// training moves only adapter parameters: frozen tensors stay bit-identical
// while the loss falls, with graphs of several shapes sharing the store.
func TestTrainingKeepsFrozenWeightsAndSharesStore(t *testing.T) {
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		for _, mk := range []func() Adapter{
			func() Adapter { l, _ := NewLily(lilyCfg(lilyop.Batch)); return l },
			func() Adapter {
				l, _ := NewLoRA(LoRAConfig{R: 2, Alpha: 4, Dropout: 0.1, TargetModules: []string{"query", "value"}})
				return l
			},
		} {
			a := mk()
			m := newToy(t, dt, 3, 6, 11)
			frozen := map[string][]float64{}
			for _, p := range m.store.Params() {
				frozen[p.Name] = Float64s(p.Value)
			}
			base := m.build(t, None{}, false, false, 2, 3, nil)
			xs := randSlice(rand.New(rand.NewPCG(1, 2)), 2*3*6)
			copyInto(base.x.Value().(*tensor.Dense), xs)
			baseOut := Float64s(func() *tensor.Dense { base.run(t); return base.out.Value().(*tensor.Dense) }())
			if err := Attach(m.store, a, m.sites, rand.New(rand.NewPCG(2, 2))); err != nil {
				t.Fatal(err)
			}
			// Before training the adapter adds exactly zero.
			ev := m.build(t, a, false, false, 2, 3, nil)
			copyInto(ev.x.Value().(*tensor.Dense), xs)
			ev.run(t)
			for i, v := range Float64s(ev.out.Value().(*tensor.Dense)) {
				if v != baseOut[i] {
					t.Fatalf("%s/%v: zero-initialised adapter changed output %d: %v vs %v", a.Method(), dt, i, v, baseOut[i])
				}
			}
			losses := trainSteps(t, m, a, 30, 0.05)
			if !(losses[len(losses)-1] < 0.8*losses[0]) {
				t.Errorf("%s/%v: loss did not fall: %v", a.Method(), dt, losses)
			}
			for _, p := range m.store.Params() {
				if want, ok := frozen[p.Name]; ok {
					for i, v := range Float64s(p.Value) {
						if v != want[i] {
							t.Fatalf("%s/%v: frozen %s changed", a.Method(), dt, p.Name)
						}
					}
				}
			}
			// The evaluation graph, built before training, sees the update.
			ev.run(t)
			changed := false
			for i, v := range Float64s(ev.out.Value().(*tensor.Dense)) {
				if v != baseOut[i] {
					changed = true
				}
			}
			if !changed {
				t.Errorf("%s/%v: the eval graph does not see the trained parameters", a.Method(), dt)
			}
			ev.vm.Close()
			base.vm.Close()
		}
	}
}

// Sequence routing makes an example's output independent of its batch mates
// and of padding; batch routing (the reference) does not.
func TestSequenceRoutingIgnoresBatchMates(t *testing.T) {
	for _, mode := range []lilyop.Routing{lilyop.Sequence, lilyop.Batch} {
		m := newToy(t, tensor.Float64, 2, 4, 3)
		cfg := lilyCfg(mode)
		cfg.NonZeroB = true
		lily, _ := NewLily(cfg)
		if err := Attach(m.store, lily, m.sites, rand.New(rand.NewPCG(1, 1))); err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(8, 8))
		first := randSlice(rng, 3*4)
		outFirst := func(mate []float64, mask []float64) []float64 {
			lg := m.build(t, lily, false, false, 2, 3, mask)
			defer lg.vm.Close()
			copyInto(lg.x.Value().(*tensor.Dense), append(append([]float64(nil), first...), mate...))
			lg.run(t)
			return Float64s(lg.out.Value().(*tensor.Dense))[:3*4]
		}
		a := outFirst(randSlice(rng, 12), []float64{1, 1, 1, 1, 1, 0})
		b := outFirst(randSlice(rng, 12), []float64{1, 1, 1, 1, 0, 0})
		var diff float64
		for i := range a {
			diff = math.Max(diff, math.Abs(a[i]-b[i]))
		}
		if mode == lilyop.Sequence && diff != 0 {
			t.Errorf("sequence routing: first example changed by %g with other batch mates", diff)
		}
		if mode == lilyop.Batch && diff == 0 {
			t.Error("batch routing should depend on batch mates (the reference's behaviour)")
		}
	}
}

func TestGraphErrors(t *testing.T) {
	m := newToy(t, tensor.Float64, 1, 4, 1)
	g := m.store.NewGraph(false)
	x := g.Input("x", 2, 5)
	if _, err := Linear(g, nil, m.sites[0], x); err == nil || !strings.Contains(err.Error(), "input shape") {
		t.Errorf("width mismatch: %v", err)
	}
	if _, err := g.Param("missing"); err == nil {
		t.Error("missing parameter accepted")
	}
	lily, _ := NewLily(lilyCfg(lilyop.Batch))
	x4 := g.Input("x4", 2, 4)
	if _, err := Linear(g, lily, m.sites[0], x4); err == nil {
		t.Error("an adapter used before Attach must fail")
	}
	seq, _ := NewLily(lilyCfg(lilyop.Sequence))
	if err := Attach(m.store, seq, m.sites, rand.New(rand.NewPCG(1, 1))); err != nil {
		t.Fatal(err)
	}
	if _, err := Linear(g, seq, m.sites[0], x4); err == nil {
		t.Error("sequence routing on a 2-D input must fail")
	}
	if err := Attach(m.store, seq, m.sites, rand.New(rand.NewPCG(1, 1))); err == nil {
		t.Error("attaching twice must fail on duplicate names")
	}
	_ = G.Nodes{}
}
