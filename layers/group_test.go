package layers

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lilygo/lily/lilyop"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// LinearGroup computes what Linear computes site by site — outputs and
// every learnable's and the input's gradients — for each adapter, with an
// unadapted site (key) in the group and an A shared across layers.
func TestLinearGroupMatchesLinear(t *testing.T) {
	sites := stack(2, "m.layer", map[string][2]int{"query": {5, 5}, "key": {5, 5}, "value": {5, 3}}, "query", "key", "value")
	adapters := map[string]func() Adapter{
		"lily": func() Adapter {
			c := lilyCfg(lilyop.Batch)
			c.NonZeroB = true
			l, _ := NewLily(c)
			return l
		},
		"lily-sequence": func() Adapter {
			c := lilyCfg(lilyop.Sequence)
			c.NonZeroB = true
			l, _ := NewLily(c)
			return l
		},
		"lora": func() Adapter {
			l, _ := NewLoRA(LoRAConfig{R: 2, Alpha: 3, TargetModules: []string{"query", "value"}, NonZeroB: true})
			return l
		},
		"lora-dropout": func() Adapter {
			l, _ := NewLoRA(LoRAConfig{R: 2, Alpha: 3, Dropout: 0.5, TargetModules: []string{"query", "value"}, NonZeroB: true})
			return l
		},
		"none": func() Adapter { return None{} },
	}
	for name, mk := range adapters {
		t.Run(name, func(t *testing.T) {
			run := func(group bool) (outs, grads [][]float64) {
				s, _ := NewStore(tensor.Float64)
				rng := rand.New(rand.NewPCG(1, 2))
				for _, site := range sites {
					if _, err := s.New(ParamSpec{Name: site.Weight, Shape: tensor.Shape{site.DIn, site.DOut}, Init: KaimingUniform(site.DIn)}, false, rng); err != nil {
						t.Fatal(err)
					}
				}
				a := mk()
				if err := Attach(s, a, sites, rng); err != nil {
					t.Fatal(err)
				}
				g := s.NewGraph(true)
				x := g.Input("x", 2, 3, 5)
				copy(x.Value().Data().([]float64), []float64{.1, -.2, .3, .4, -.5, .6, .7, -.8, .9, 1, -1.1, 1.2, .3, .2, .1, -.4, .5, .6, -.7, .8, .9, -1, 1.1, 1.2, -.3, .2, .1, .4, -.5, .6})
				mask := g.Input("mask", 2, 3)
				copy(mask.Value().Data().([]float64), []float64{1, 1, 0, 1, 1, 1})
				g.SetPadMask(mask)
				var ys G.Nodes
				for l := 0; l < 2; l++ {
					layer := sites[3*l : 3*l+3]
					if group {
						out, err := LinearGroup(g, a, layer, x)
						if err != nil {
							t.Fatalf("%+v", err)
						}
						ys = append(ys, out...)
						continue
					}
					for _, site := range layer {
						y, err := Linear(g, a, site, x)
						if err != nil {
							t.Fatal(err)
						}
						ys = append(ys, y)
					}
				}
				var loss *G.Node
				for i, y := range ys {
					sq, _ := G.Square(y)
					sum, _ := G.Sum(sq)
					w, _ := G.Mul(sum, G.NewConstant(float64(i+1)))
					if loss == nil {
						loss = w
					} else {
						loss, _ = G.Add(loss, w)
					}
				}
				wrt := append(g.Learnables(), x)
				if _, err := G.Grad(loss, wrt...); err != nil {
					t.Fatalf("%+v", err)
				}
				vm := G.NewTapeMachine(g.G, G.BindDualValues(wrt...))
				defer vm.Close()
				if err := g.RefillDropout(rand.New(rand.NewPCG(9, 9))); err != nil {
					t.Fatal(err)
				}
				if err := vm.RunAll(); err != nil {
					t.Fatalf("%+v", err)
				}
				for _, y := range ys {
					outs = append(outs, append([]float64(nil), y.Value().Data().([]float64)...))
				}
				for _, n := range wrt {
					gv, err := n.Grad()
					if err != nil {
						t.Fatalf("%s: %v", n.Name(), err)
					}
					grads = append(grads, append([]float64(nil), gv.Data().([]float64)...))
				}
				return outs, grads
			}
			o1, g1 := run(false)
			o2, g2 := run(true)
			for _, pair := range []struct {
				what string
				a, b [][]float64
			}{{"output", o1, o2}, {"gradient", g1, g2}} {
				if len(pair.a) != len(pair.b) {
					t.Fatalf("%d vs %d %ss", len(pair.a), len(pair.b), pair.what)
				}
				for i := range pair.a {
					for j := range pair.a[i] {
						if math.Abs(pair.a[i][j]-pair.b[i][j]) > 1e-12*math.Max(1, math.Abs(pair.a[i][j])) {
							t.Fatalf("%s %d[%d]: Linear %v, LinearGroup %v", pair.what, i, j, pair.a[i][j], pair.b[i][j])
						}
					}
				}
			}
		})
	}
}
