package bench

import (
	"math"
	"math/rand"
	"testing"

	"github.com/lilygo/lily/internal/gradcheck"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// The fused and the composed Lily benchmarks compute the same loss and
// gradients (float64, small shapes), and the stock composition leaves the
// parameters alone (its Reshape views must not be written through).
func TestComposedMatchesFused(t *testing.T) {
	c := AdapterConfig{Method: PaperLily(), Layers: 2, Batch: 2, Seq: 3, Dtype: tensor.Float64}
	fused, err := NewAdapterStep(c)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	defer fused.Close()
	c.Composed = true
	stock, err := NewAdapterStep(c)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	defer stock.Close()
	before := snapshot(stock)
	for i := 0; i < 2; i++ {
		if err := fused.Step(); err != nil {
			t.Fatalf("%+v", err)
		}
		if err := stock.Step(); err != nil {
			t.Fatalf("%+v", err)
		}
	}
	if a, b := fused.Loss.Value().Data().(float64), stock.Loss.Value().Data().(float64); math.Abs(a-b) > 1e-9*math.Max(1, math.Abs(a)) {
		t.Fatalf("loss %v (fused) vs %v (stock)", a, b)
	}
	stockByName := map[string]*G.Node{}
	for _, n := range stock.Learn {
		stockByName[n.Name()] = n
	}
	if len(stockByName) != len(fused.Learn) {
		t.Fatalf("%d learnables (fused) vs %d (stock)", len(fused.Learn), len(stockByName))
	}
	for _, n := range fused.Learn {
		gf, _ := n.Grad()
		gs, _ := stockByName[n.Name()].Grad()
		closeAll(t, n.Name(), gf.Data().([]float64), gs.Data().([]float64))
	}
	after := snapshot(stock)
	for name, v := range before {
		closeAll(t, "value of "+name, v, after[name])
	}
}

func snapshot(s *AdapterStep) map[string][]float64 {
	out := map[string][]float64{}
	for _, p := range s.Store.Params() {
		out[p.Name] = append([]float64(nil), p.Value.Data().([]float64)...)
	}
	return out
}

func closeAll(t *testing.T, what string, a, b []float64) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: lengths %d and %d", what, len(a), len(b))
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-9*math.Max(1, math.Abs(a[i])) {
			t.Fatalf("%s[%d]: %v vs %v", what, i, a[i], b[i])
		}
	}
}

// Lily's and LoRA's counts are the ones the comparison states.
func TestParamCounts(t *testing.T) {
	for _, c := range []struct {
		m    Method
		want int
	}{{PaperLily(), 198144}, {MatchedLoRA(), 184320}, {LoRARank(6), 221184}} {
		s, err := NewAdapterStep(AdapterConfig{Method: c.m, Batch: 1, Seq: 1})
		if err != nil {
			t.Fatalf("%+v", err)
		}
		s.Close()
		if s.Params != c.want {
			t.Errorf("%v: %d parameters, want %d", c.m, s.Params, c.want)
		}
	}
}

// Probe's gradient is p (times the loss gradient), checked by central
// differences.
func TestProbeGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	in := []gradcheck.Input{
		{Name: "x", Value: gradcheck.Rand(rng, 3, 4), Diff: true},
		{Name: "y", Value: gradcheck.Rand(rng, 3, 4), Diff: true},
		{Name: "p", Value: gradcheck.Rand(rng, 3, 4)},
	}
	gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) {
		y, err := G.Square(n[1])
		if err != nil {
			return nil, err
		}
		l, err := Probe(n[2], n[0], y)
		if err != nil {
			return nil, err
		}
		return G.Mul(l, G.NewConstant(2.5))
	}, in, gradcheck.Options{})
}
