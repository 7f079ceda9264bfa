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

// evalOut runs the toy model on fixed input and returns its output.
func evalOut(t *testing.T, m *toy, a Adapter, xs []float64) []float64 {
	t.Helper()
	lg := m.build(t, a, false, false, 2, 3, nil)
	defer lg.vm.Close()
	copyInto(lg.x.Value().(*tensor.Dense), xs)
	lg.run(t)
	return Float64s(lg.out.Value().(*tensor.Dense))
}

func maxAbsDiff(a, b []float64) float64 {
	var d float64
	for i := range a {
		d = math.Max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

func weights(m *toy) []float64 {
	var out []float64
	for _, s := range m.sites {
		p, _ := m.store.Get(s.Weight)
		out = append(out, Float64s(p.Value)...)
	}
	return out
}

func TestLoRAMergeUnmerge(t *testing.T) {
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		m := newToy(t, dt, 2, 5, 4)
		lora, _ := NewLoRA(LoRAConfig{R: 2, Alpha: 4, Dropout: 0.2, TargetModules: []string{"query", "value"}, NonZeroB: true})
		if err := Attach(m.store, lora, m.sites, rand.New(rand.NewPCG(1, 1))); err != nil {
			t.Fatal(err)
		}
		xs := randSlice(rand.New(rand.NewPCG(2, 2)), 2*3*5)
		before, w0 := evalOut(t, m, lora, xs), weights(m)
		if err := Merge(m.store, lora, m.sites); err != nil {
			t.Fatal(err)
		}
		if err := Merge(m.store, lora, m.sites); err == nil {
			t.Error("merging twice must fail")
		}
		merged := evalOut(t, m, lora, xs) // a merged adapter adds nothing more
		noAdapter := evalOut(t, m, None{}, xs)
		d := maxAbsDiff(before, merged)
		t.Logf("%v: max |merged − unmerged| output difference: %.3g", dt, d)
		tol := 1e-12
		if dt == tensor.Float32 {
			tol = 1e-5
		}
		if d > tol || maxAbsDiff(merged, noAdapter) != 0 {
			t.Errorf("%v: merged output differs by %g", dt, d)
		}
		if err := Unmerge(m.store, lora, m.sites); err != nil {
			t.Fatal(err)
		}
		dw := maxAbsDiff(w0, weights(m))
		t.Logf("%v: max |W after unmerge − W before merge|: %.3g", dt, dw)
		if dw > tol {
			t.Errorf("%v: unmerge left weights off by %g", dt, dw)
		}
		if d := maxAbsDiff(before, evalOut(t, m, lora, xs)); d > tol {
			t.Errorf("%v: unmerged output differs by %g", dt, d)
		}
	}
}

func TestLilyMerge(t *testing.T) {
	m := newToy(t, tensor.Float64, 3, 4, 5)
	cfg := lilyCfg(lilyop.Batch)
	cfg.NonZeroB = true
	lily, _ := NewLily(cfg)
	if err := Attach(m.store, lily, m.sites, rand.New(rand.NewPCG(1, 1))); err != nil {
		t.Fatal(err)
	}
	w0 := weights(m)
	err := Merge(m.store, lily, m.sites)
	if err == nil || !strings.Contains(err.Error(), "routed") {
		t.Fatalf("a routed Lily adapter must refuse to merge, got %v", err)
	}
	if maxAbsDiff(w0, weights(m)) != 0 {
		t.Fatal("a refused merge changed weights")
	}
	// Calibrate on a few batches, freeze, and merge.
	rng := rand.New(rand.NewPCG(3, 3))
	var cal MixingCalibrator
	lg := m.build(t, lily, false, false, 2, 3, nil)
	for i := 0; i < 3; i++ {
		copyInto(lg.x.Value().(*tensor.Dense), randSlice(rng, 2*3*4))
		lg.run(t)
		if err := cal.Observe(lg.g); err != nil {
			t.Fatal(err)
		}
	}
	lg.vm.Close()
	mean := cal.Mean()
	if len(mean) != len(m.sites) {
		t.Fatalf("calibrated %d sites, want %d", len(mean), len(m.sites))
	}
	for p, v := range mean {
		var s float64
		for _, x := range v {
			s += x
		}
		if math.Abs(s-1) > 1e-12 {
			t.Errorf("%s: calibrated mixing sums to %v", p, s)
		}
	}
	if err := lily.FreezeMixing(mean); err != nil {
		t.Fatal(err)
	}
	xs := randSlice(rng, 2*3*4)
	frozen := evalOut(t, m, lily, xs)
	if err := Merge(m.store, lily, m.sites); err != nil {
		t.Fatal(err)
	}
	d := maxAbsDiff(frozen, evalOut(t, m, lily, xs))
	t.Logf("Lily (frozen mixing): max |merged − unmerged| output difference: %.3g", d)
	if d > 1e-12 {
		t.Errorf("merged Lily differs by %g", d)
	}
	if err := lily.FreezeMixing(map[string][]float64{"nope": {0.5, 0.5, 0}}); err == nil {
		t.Error("freezing an unknown site must fail")
	}

	// Uniform ("monoscale") Lily merges without calibration.
	m2 := newToy(t, tensor.Float64, 2, 4, 6)
	ucfg := lilyCfg(lilyop.Batch)
	ucfg.Uniform, ucfg.NonZeroB = true, true
	uni, _ := NewLily(ucfg)
	if err := Attach(m2.store, uni, m2.sites, rand.New(rand.NewPCG(1, 1))); err != nil {
		t.Fatal(err)
	}
	before := evalOut(t, m2, uni, xs)
	if err := Merge(m2.store, uni, m2.sites); err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(before, evalOut(t, m2, uni, xs)); d > 1e-12 {
		t.Errorf("merged uniform Lily differs by %g", d)
	}
}

// TestCalibratorKeepsEvenSample feeds a calibrator numbered mixing vectors
// through a graph's mixing node and checks the kept sample: every vector
// while at most Keep were seen, then an evenly spaced subset of between
// Keep/2 and Keep that starts at the first, while the mean still counts
// every vector.
func TestCalibratorKeepsEvenSample(t *testing.T) {
	s, _ := NewStore(tensor.Float64)
	g := s.NewGraph(false)
	v := tensor.New(tensor.WithShape(2), tensor.Of(tensor.Float64))
	g.mixing["site"] = G.NewVector(g.G, tensor.Float64, G.WithShape(2), G.WithName("mix"), G.WithValue(v))
	cal := MixingCalibrator{Keep: 5}
	for n := 0; n < 23; n++ {
		copy(v.Data().([]float64), []float64{float64(n), 1})
		if err := cal.Observe(g); err != nil {
			t.Fatal(err)
		}
		got := cal.Samples()["site"]
		if n < 5 && len(got) != n+1 {
			t.Fatalf("after %d vectors %d kept, want all", n+1, len(got))
		}
		if n >= 5 && (len(got) < 3 || len(got) > 5) {
			t.Fatalf("after %d vectors %d kept, want 3 to 5", n+1, len(got))
		}
		step := 1
		if len(got) > 1 {
			step = int(got[1][0])
		}
		for i, row := range got {
			if row[0] != float64(i*step) || row[1] != 1 {
				t.Fatalf("after %d vectors the sample is %v, not evenly spaced from 0", n+1, got)
			}
		}
	}
	// 23 vectors: strides 1, 2, 4, 8 → 0, 8, 16.
	if got := cal.Samples()["site"]; len(got) != 3 || got[2][0] != 16 {
		t.Errorf("final sample %v, want the vectors 0, 8, 16", got)
	}
	if cal.Count("site") != 23 || cal.Mean()["site"][0] != 11 {
		t.Errorf("count %d, mean %v; want 23 and 11", cal.Count("site"), cal.Mean()["site"])
	}
	cal.Samples()["site"][0][0] = 99
	if cal.Samples()["site"][0][0] != 0 {
		t.Error("Samples must return copies")
	}
}
