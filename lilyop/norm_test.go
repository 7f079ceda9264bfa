package lilyop

import (
	"math"
	"math/rand"
	"testing"

	"github.com/lilygo/lily/internal/gradcheck"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// refNorm is a plain-Go RMSNorm (beta == nil, not centred) or LayerNorm of
// every row of x (row length len(w)), written from the definitions.
func refNorm(x, w, beta []float64, eps float64, layer bool) []float64 {
	d := len(w)
	out := make([]float64, len(x))
	for r := 0; r < len(x)/d; r++ {
		row := x[r*d : (r+1)*d]
		mean := 0.0
		if layer {
			for _, v := range row {
				mean += v / float64(d)
			}
		}
		variance := 0.0
		for _, v := range row {
			variance += (v - mean) * (v - mean) / float64(d)
		}
		for j, v := range row {
			out[r*d+j] = (v - mean) / math.Sqrt(variance+eps) * w[j]
			if layer {
				out[r*d+j] += beta[j]
			}
		}
	}
	return out
}

// randShapes returns random 1-D, 2-D and 3-D shapes with small dimensions.
func randShapes(rng *rand.Rand) []tensor.Shape {
	return []tensor.Shape{
		{1 + rng.Intn(5)},
		{1 + rng.Intn(4), 1 + rng.Intn(5)},
		{1 + rng.Intn(3), 1 + rng.Intn(3), 2 + rng.Intn(4)},
	}
}

// as32 converts a float64 tensor to float32.
func as32(t *tensor.Dense) *tensor.Dense {
	src := t.Data().([]float64)
	dst := make([]float32, len(src))
	for i, v := range src {
		dst[i] = float32(v)
	}
	return tensor.New(tensor.WithShape(t.Shape().Clone()...), tensor.WithBacking(dst))
}

// floats returns a float32 or float64 tensor's data as float64.
func floats(t *tensor.Dense) []float64 {
	switch d := t.Data().(type) {
	case []float32:
		out := make([]float64, len(d))
		for i, v := range d {
			out[i] = float64(v)
		}
		return out
	case []float64:
		return d
	}
	return nil
}

func TestNormsMatchPlainGo(t *testing.T) {
	rng := rand.New(rand.NewSource(21))
	for _, xs := range randShapes(rng) {
		d := xs[len(xs)-1]
		x, w, b := gradcheck.Rand(rng, xs...), gradcheck.Rand(rng, d), gradcheck.Rand(rng, d)
		eps := 1e-5 * float64(1+rng.Intn(100))
		xd, wd, bd := x.Data().([]float64), w.Data().([]float64), b.Data().([]float64)
		for _, f32 := range []bool{false, true} {
			tol, conv := 1e-12, func(t *tensor.Dense) *tensor.Dense { return t }
			if f32 {
				tol, conv = 1e-5, as32
			}
			got := run(t, func(g *G.ExprGraph) (*G.Node, error) {
				return RMSNorm(leaf(g, "x", conv(x)), leaf(g, "w", conv(w)), eps)
			})
			assertClose(t, "RMSNorm", floats(got), refNorm(xd, wd, nil, eps, false), tol)
			got = run(t, func(g *G.ExprGraph) (*G.Node, error) {
				return LayerNorm(leaf(g, "x", conv(x)), leaf(g, "w", conv(w)), leaf(g, "b", conv(b)), eps)
			})
			assertClose(t, "LayerNorm", floats(got), refNorm(xd, wd, bd, eps, true), tol)
		}
	}
}

func TestNormGradients(t *testing.T) {
	rng := rand.New(rand.NewSource(22))
	for _, xs := range randShapes(rng) {
		d := xs[len(xs)-1]
		eps := 1e-3 * float64(1+rng.Intn(10))
		in := []gradcheck.Input{
			{Name: "x", Value: gradcheck.Rand(rng, xs...), Diff: true},
			{Name: "w", Value: gradcheck.Rand(rng, d), Diff: true},
			{Name: "b", Value: gradcheck.Rand(rng, d), Diff: true},
		}
		gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) {
			return LayerNorm(n[0], n[1], n[2], eps)
		}, in, gradcheck.Options{})
		gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) {
			return RMSNorm(n[0], n[1], eps)
		}, in[:2], gradcheck.Options{})
	}
}

// gradShapes32 runs a float32 forward and backward pass of build over the
// given inputs and checks that every gradient has its input's shape.
func gradShapes32(t *testing.T, build func(g *G.ExprGraph, in G.Nodes) (*G.Node, error), inputs ...*tensor.Dense) {
	t.Helper()
	g := G.NewGraph()
	var nodes G.Nodes
	for i, v := range inputs {
		nodes = append(nodes, leaf(g, string(rune('a'+i)), as32(v)))
	}
	out, err := build(g, nodes)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	loss, err := G.Sum(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := G.Grad(loss, nodes...); err != nil {
		t.Fatalf("%+v", err)
	}
	m := G.NewTapeMachine(g, G.BindDualValues(nodes...))
	defer m.Close()
	if err := m.RunAll(); err != nil {
		t.Fatalf("%+v", err)
	}
	for _, n := range nodes {
		gv, err := n.Grad()
		if err != nil {
			t.Fatal(err)
		}
		if !gv.Shape().Eq(n.Shape()) || gv.Dtype() != tensor.Float32 {
			t.Errorf("gradient of %s is %v %v, input is %v", n.Name(), gv.Dtype(), gv.Shape(), n.Shape())
		}
	}
}

func TestNormFloat32Gradients(t *testing.T) {
	rng := rand.New(rand.NewSource(23))
	x, w, b := gradcheck.Rand(rng, 2, 3, 4), gradcheck.Rand(rng, 4), gradcheck.Rand(rng, 4)
	gradShapes32(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) { return LayerNorm(n[0], n[1], n[2], 1e-5) }, x, w, b)
	gradShapes32(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) { return RMSNorm(n[0], n[1], 1e-5) }, x, w)
}

func TestNormIdentity(t *testing.T) {
	g := G.NewGraph()
	rng := rand.New(rand.NewSource(24))
	x, w := leaf(g, "x", gradcheck.Rand(rng, 2, 3)), leaf(g, "w", gradcheck.Rand(rng, 3))
	must := func(n *G.Node, err error) *G.Node {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	a := must(RMSNorm(x, w, 1e-5))
	if a != must(RMSNorm(x, w, 1e-5)) {
		t.Error("equal RMSNorms must be one node")
	}
	if a == must(RMSNorm(x, w, 1e-6)) {
		t.Error("RMSNorms with different eps merged into one node")
	}
	if a == must(LayerNorm(x, w, w, 1e-5)) {
		t.Error("RMSNorm and LayerNorm merged")
	}
	ops := []normOp{
		{kind: rmsNorm, eps: 1e-5, rank: 2},
		{kind: rmsNorm, eps: 1e-6, rank: 2},
		{kind: rmsNorm, eps: 1e-5, rank: 3},
		{kind: layerNorm, eps: 1e-5, rank: 2},
		{kind: rmsNorm, part: normGradX, eps: 1e-5, rank: 2},
		{kind: rmsNorm, part: normGradWeight, eps: 1e-5, rank: 2},
		{kind: layerNorm, part: normGradBias, eps: 1e-5, rank: 2},
	}
	seen := map[uint32]normOp{}
	for _, op := range ops {
		if prev, dup := seen[op.Hashcode()]; dup {
			t.Errorf("%v and %v hash alike", prev, op)
		}
		seen[op.Hashcode()] = op
	}
}

func TestNormErrors(t *testing.T) {
	g := G.NewGraph()
	rng := rand.New(rand.NewSource(25))
	x, w := leaf(g, "x", gradcheck.Rand(rng, 2, 3)), leaf(g, "w", gradcheck.Rand(rng, 4))
	if _, err := RMSNorm(x, w, 1e-5); err == nil {
		t.Error("a weight of the wrong width must be rejected")
	}
	w3 := leaf(g, "w3", gradcheck.Rand(rng, 3))
	for _, eps := range []float64{-1, math.NaN(), math.Inf(1)} {
		if _, err := RMSNorm(x, w3, eps); err == nil {
			t.Errorf("eps %v must be rejected", eps)
		}
	}
	if _, err := LayerNorm(x, w3, nil, 1e-5); err == nil {
		t.Error("a missing beta must be rejected")
	}
}
