package mamba

import (
	"math"
	"math/rand"
	"runtime"
	"testing"

	"github.com/lilygo/lily/internal/gradcheck"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// leaf adds a named tensor node holding v.
func leaf(g *G.ExprGraph, name string, v *tensor.Dense) *G.Node {
	return G.NewTensor(g, v.Dtype(), v.Dims(), G.WithShape(v.Shape()...), G.WithName(name), G.WithValue(v))
}

// leaves adds one node per tensor, named n0, n1, ….
func leaves(g *G.ExprGraph, vs []*tensor.Dense) G.Nodes {
	out := make(G.Nodes, len(vs))
	for i, v := range vs {
		out[i] = leaf(g, "n"+string(rune('0'+i)), v.Clone().(*tensor.Dense))
	}
	return out
}

// forwardAndGrads evaluates build on vs and returns its output and the
// gradient of Σ out⊙proj with respect to every input, as float64 slices.
func forwardAndGrads(t *testing.T, build func(G.Nodes) (*G.Node, error), vs []*tensor.Dense, proj *tensor.Dense) ([]float64, [][]float64) {
	t.Helper()
	g := G.NewGraph()
	in := leaves(g, vs)
	out, err := build(in)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	p := leaf(g, "proj", proj)
	loss := G.Must(G.Sum(G.Must(G.HadamardProd(out, p))))
	if _, err := G.Grad(loss, in...); err != nil {
		t.Fatalf("%+v", err)
	}
	m := G.NewTapeMachine(g, G.BindDualValues(in...))
	defer m.Close()
	if err := m.RunAll(); err != nil {
		t.Fatalf("%+v", err)
	}
	grads := make([][]float64, len(in))
	for i, n := range in {
		gv, err := n.Grad()
		if err != nil {
			t.Fatal(err)
		}
		grads[i] = f64s(gv.(*tensor.Dense))
	}
	return f64s(out.Value().(*tensor.Dense)), grads
}

// f64s copies a float32 or float64 tensor into float64s.
func f64s(d *tensor.Dense) []float64 {
	switch v := d.Data().(type) {
	case []float64:
		return append([]float64(nil), v...)
	case []float32:
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	}
	return nil
}

// to32 converts a float64 tensor to float32.
func to32(d *tensor.Dense) *tensor.Dense {
	v := d.Data().([]float64)
	f := make([]float32, len(v))
	for i, x := range v {
		f[i] = float32(x)
	}
	return tensor.New(tensor.WithShape(d.Shape()...), tensor.WithBacking(f))
}

// assertClose fails unless |got−want| ≤ tol·max(1, |want|) elementwise.
func assertClose(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(got[i] - want[i]); d > tol*math.Max(1, math.Abs(want[i])) || math.IsNaN(got[i]) {
			t.Fatalf("%s[%d] = %.12g, want %.12g", what, i, got[i], want[i])
		}
	}
}

// filled returns a float64 tensor with entries f(rng).
func filled(rng *rand.Rand, f func(*rand.Rand) float64, shape ...int) *tensor.Dense {
	d := gradcheck.Rand(rng, shape...)
	v := d.Data().([]float64)
	for i := range v {
		v[i] = f(rng)
	}
	return d
}

// scanInputs draws u, delta (positive, or raw when softplus), A (negative),
// B, C and D for the given sizes.
func scanInputs(rng *rand.Rand, b, l, d, n int, softplus bool) []*tensor.Dense {
	delta := filled(rng, func(r *rand.Rand) float64 { return 0.05 + 0.6*r.Float64() }, b, l, d)
	if softplus {
		delta = filled(rng, func(r *rand.Rand) float64 { return 3*r.Float64() - 2 }, b, l, d)
	}
	return []*tensor.Dense{
		gradcheck.Rand(rng, b, l, d),
		delta,
		filled(rng, func(r *rand.Rand) float64 { return -0.1 - 2*r.Float64() }, d, n),
		gradcheck.Rand(rng, b, l, n),
		gradcheck.Rand(rng, b, l, n),
		gradcheck.Rand(rng, d),
	}
}

// refScan is the scan written as the recurrence reads, time step by time
// step over a [d][n] state, independently of the op's channel-major order.
func refScan(vs []*tensor.Dense, softplus bool) []float64 {
	s := vs[0].Shape()
	bs, l, d := s[0], s[1], s[2]
	n := vs[2].Shape()[1]
	u, delta, A := vs[0].Data().([]float64), vs[1].Data().([]float64), vs[2].Data().([]float64)
	B, C, D := vs[3].Data().([]float64), vs[4].Data().([]float64), vs[5].Data().([]float64)
	y := make([]float64, bs*l*d)
	for b := 0; b < bs; b++ {
		h := make([][]float64, d)
		for c := range h {
			h[c] = make([]float64, n)
		}
		for t := 0; t < l; t++ {
			for c := 0; c < d; c++ {
				at := (b*l+t)*d + c
				dt := delta[at]
				if softplus {
					dt = math.Log(1 + math.Exp(dt))
				}
				sum := D[c] * u[at]
				for j := 0; j < n; j++ {
					decay := math.Exp(dt * A[c*n+j])
					h[c][j] = decay*h[c][j] + dt*B[(b*l+t)*n+j]*u[at]
					sum += C[(b*l+t)*n+j] * h[c][j]
				}
				y[at] = sum
			}
		}
	}
	return y
}

func scanBuild(softplus bool) func(G.Nodes) (*G.Node, error) {
	return func(n G.Nodes) (*G.Node, error) {
		return SelectiveScan(n[0], n[1], n[2], n[3], n[4], n[5], ScanOptions{DeltaSoftplus: softplus})
	}
}

var scanNames = []string{"u", "delta", "A", "B", "C", "D"}

func TestScanMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for trial := 0; trial < 6; trial++ {
		softplus := trial%2 == 1
		b, l, d, n := 1+rng.Intn(3), 1+rng.Intn(6), 1+rng.Intn(4), 1+rng.Intn(4)
		vs := scanInputs(rng, b, l, d, n, softplus)
		got, _ := forwardAndGrads(t, scanBuild(softplus), vs, gradcheck.Rand(rng, b, l, d))
		assertClose(t, "scan", got, refScan(vs, softplus), 1e-12)
	}
}

func TestScanGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for trial := 0; trial < 6; trial++ {
		softplus := trial%2 == 1
		b, l, d, n := 1+rng.Intn(3), 1+rng.Intn(5), 1+rng.Intn(3), 1+rng.Intn(3)
		vs := scanInputs(rng, b, l, d, n, softplus)
		in := make([]gradcheck.Input, len(vs))
		for i, v := range vs {
			in[i] = gradcheck.Input{Name: scanNames[i], Value: v, Diff: true}
		}
		build := scanBuild(softplus)
		gradcheck.Check(t, func(_ *G.ExprGraph, n G.Nodes) (*G.Node, error) { return build(n) }, in, gradcheck.Options{Seed: int64(trial)})
	}
}

// The softplus option equals Gorgonia's softplus followed by the plain scan
// (away from the thresholds where PyTorch and Gorgonia switch to x).
func TestScanSoftplusOption(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	vs := scanInputs(rng, 2, 4, 3, 2, true)
	proj := gradcheck.Rand(rng, 2, 4, 3)
	fused, fusedGrads := forwardAndGrads(t, scanBuild(true), vs, proj)
	split, splitGrads := forwardAndGrads(t, func(n G.Nodes) (*G.Node, error) {
		sp, err := G.Softplus(n[1])
		if err != nil {
			return nil, err
		}
		return SelectiveScan(n[0], sp, n[2], n[3], n[4], n[5], ScanOptions{})
	}, vs, proj)
	assertClose(t, "fused softplus", fused, split, 1e-12)
	for i := range vs {
		assertClose(t, "fused softplus d/d"+scanNames[i], fusedGrads[i], splitGrads[i], 1e-12)
	}
	if y, dy := softplus(25); y != 25 || dy != 1 {
		t.Errorf("softplus(25) = %v, %v; PyTorch's threshold 20 returns x and slope 1", y, dy)
	}
}

// The scan and its gradients run in float32, agree with float64 to float32
// precision, and do not depend on the number of goroutines.
func TestScanFloat32AndParallelism(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	vs := scanInputs(rng, 3, 7, 4, 3, true)
	proj := gradcheck.Rand(rng, 3, 7, 4)
	out64, g64 := forwardAndGrads(t, scanBuild(true), vs, proj)
	vs32 := make([]*tensor.Dense, len(vs))
	for i, v := range vs {
		vs32[i] = to32(v)
	}
	out32, g32 := forwardAndGrads(t, scanBuild(true), vs32, to32(proj))
	assertClose(t, "float32 scan", out32, out64, 1e-5)
	for i := range vs {
		assertClose(t, "float32 d/d"+scanNames[i], g32[i], g64[i], 1e-4)
	}
	prev := runtime.GOMAXPROCS(1)
	out1, g1 := forwardAndGrads(t, scanBuild(true), vs, proj)
	runtime.GOMAXPROCS(prev)
	for i := range out1 {
		if out1[i] != out64[i] {
			t.Fatal("the forward scan depends on GOMAXPROCS")
		}
	}
	for i := range g1 {
		for j := range g1[i] {
			if g1[i][j] != g64[i][j] {
				t.Fatalf("d/d%s depends on GOMAXPROCS", scanNames[i])
			}
		}
	}
}

func TestScanShapeErrors(t *testing.T) {
	g := G.NewGraph()
	mk := func(name string, s ...int) *G.Node {
		return G.NewTensor(g, tensor.Float64, len(s), G.WithShape(s...), G.WithName(name), G.WithInit(G.Zeroes()))
	}
	u, A, B, D := mk("u", 2, 3, 4), mk("A", 4, 5), mk("B", 2, 3, 5), mk("D", 4)
	for name, args := range map[string]G.Nodes{
		"delta shape": {u, mk("d1", 2, 3, 5), A, B, B, D},
		"A rows":      {u, u, mk("A2", 3, 5), B, B, D},
		"B state":     {u, u, A, mk("B2", 2, 3, 4), B, D},
		"C length":    {u, u, A, B, mk("C2", 2, 2, 5), D},
		"D width":     {u, u, A, B, B, mk("D2", 5)},
		"u rank":      {mk("u2", 6, 4), u, A, B, B, D},
	} {
		if _, err := SelectiveScan(args[0], args[1], args[2], args[3], args[4], args[5], ScanOptions{}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// refConv is the causal depthwise convolution written as PyTorch's padded
// cross-correlation: out[t] = Σ_j w[j]·xpad[t+j] with k−1 zeros in front.
func refConv(x, w, bias []float64, b, l, c, k int) []float64 {
	y := make([]float64, b*l*c)
	for s := 0; s < b; s++ {
		for ch := 0; ch < c; ch++ {
			pad := make([]float64, l+k-1)
			for t := 0; t < l; t++ {
				pad[t+k-1] = x[(s*l+t)*c+ch]
			}
			for t := 0; t < l; t++ {
				v := 0.0
				if bias != nil {
					v = bias[ch]
				}
				for j := 0; j < k; j++ {
					v += w[ch*k+j] * pad[t+j]
				}
				y[(s*l+t)*c+ch] = v
			}
		}
	}
	return y
}

func convBuild(n G.Nodes) (*G.Node, error) {
	var bias *G.Node
	if len(n) > 2 {
		bias = n[2]
	}
	return CausalConv1D(n[0], n[1], bias)
}

func TestConvMatchesReferenceAndGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	for trial := 0; trial < 8; trial++ {
		withBias := trial%2 == 0
		b, l, c, k := 1+rng.Intn(3), 1+rng.Intn(6), 1+rng.Intn(4), 1+rng.Intn(5)
		vs := []*tensor.Dense{gradcheck.Rand(rng, b, l, c), gradcheck.Rand(rng, c, k)}
		var bias []float64
		if withBias {
			vs = append(vs, gradcheck.Rand(rng, c))
			bias = vs[2].Data().([]float64)
		}
		got, _ := forwardAndGrads(t, convBuild, vs, gradcheck.Rand(rng, b, l, c))
		assertClose(t, "conv", got, refConv(vs[0].Data().([]float64), vs[1].Data().([]float64), bias, b, l, c, k), 1e-12)
		in := []gradcheck.Input{{Name: "x", Value: vs[0], Diff: true}, {Name: "w", Value: vs[1], Diff: true}}
		if withBias {
			in = append(in, gradcheck.Input{Name: "bias", Value: vs[2], Diff: true})
		}
		gradcheck.Check(t, func(_ *G.ExprGraph, n G.Nodes) (*G.Node, error) { return convBuild(n) }, in, gradcheck.Options{Seed: int64(trial)})
	}
	// float32 agrees with float64.
	vs := []*tensor.Dense{gradcheck.Rand(rng, 2, 5, 3), gradcheck.Rand(rng, 3, 4), gradcheck.Rand(rng, 3)}
	proj := gradcheck.Rand(rng, 2, 5, 3)
	out64, g64 := forwardAndGrads(t, convBuild, vs, proj)
	out32, g32 := forwardAndGrads(t, convBuild, []*tensor.Dense{to32(vs[0]), to32(vs[1]), to32(vs[2])}, to32(proj))
	assertClose(t, "float32 conv", out32, out64, 1e-5)
	for i := range g64 {
		assertClose(t, "float32 conv grad", g32[i], g64[i], 1e-5)
	}
}

func TestNarrowAndGradient(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	x := gradcheck.Rand(rng, 2, 3, 7)
	got, _ := forwardAndGrads(t, func(n G.Nodes) (*G.Node, error) { return Narrow(n[0], 2, 5) }, []*tensor.Dense{x}, gradcheck.Rand(rng, 2, 3, 3))
	xv := x.Data().([]float64)
	var want []float64
	for r := 0; r < 6; r++ {
		want = append(want, xv[r*7+2:r*7+5]...)
	}
	assertClose(t, "narrow", got, want, 0)
	// Two narrows of one input and their sum: gradients add up where they overlap.
	gradcheck.Check(t, func(_ *G.ExprGraph, n G.Nodes) (*G.Node, error) {
		a, err := Narrow(n[0], 0, 4)
		if err != nil {
			return nil, err
		}
		b, err := Narrow(n[0], 3, 7)
		if err != nil {
			return nil, err
		}
		return G.Add(a, b)
	}, []gradcheck.Input{{Name: "x", Value: x, Diff: true}}, gradcheck.Options{})
	g := G.NewGraph()
	xn := leaf(g, "x", x)
	for _, c := range [][2]int{{-1, 2}, {3, 3}, {0, 8}} {
		if _, err := Narrow(xn, c[0], c[1]); err == nil {
			t.Errorf("Narrow(%d, %d) of width 7: no error", c[0], c[1])
		}
	}
}

// Ops differing in any parameter are distinct nodes; the same op on the
// same inputs is one node (Gorgonia hash-conses nodes).
func TestOpIdentity(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	g := G.NewGraph()
	in := leaves(g, scanInputs(rng, 1, 2, 2, 2, false))
	s1, _ := SelectiveScan(in[0], in[1], in[2], in[3], in[4], in[5], ScanOptions{})
	s2, _ := SelectiveScan(in[0], in[1], in[2], in[3], in[4], in[5], ScanOptions{DeltaSoftplus: true})
	s3, _ := SelectiveScan(in[0], in[1], in[2], in[3], in[4], in[5], ScanOptions{})
	if s1 == s2 || s1 != s3 {
		t.Error("scan nodes are not identified by their options")
	}
	w := leaf(g, "w", gradcheck.Rand(rng, 2, 3))
	b := leaf(g, "b", gradcheck.Rand(rng, 2))
	c1, _ := CausalConv1D(in[0], w, b)
	c2, _ := CausalConv1D(in[0], w, nil)
	n1, _ := Narrow(in[0], 0, 1)
	n2, _ := Narrow(in[0], 1, 2)
	if c1 == c2 || n1 == n2 {
		t.Error("conv or narrow nodes merged although their ops differ")
	}
	sh := []tensor.Shape{{1, 2, 2}, {1, 2, 2}, {2, 2}, {1, 2, 2}, {1, 2, 2}, {2}}
	ops := []G.Op{
		scanOp{}, scanOp{softplus: true},
		scanGradOp{scanOp{}, sh}, scanGradOp{scanOp{softplus: true}, sh},
		scanGradOp{scanOp{}, []tensor.Shape{{1, 2, 2}, {1, 2, 2}, {2, 3}, {1, 2, 3}, {1, 2, 3}, {2}}},
		convOp{}, convOp{bias: true},
		convGradOp{convOp{}, sh[:2]}, convGradOp{convOp{bias: true}, sh[:3]},
		narrowOp{rank: 3, lo: 0, hi: 1, width: 2}, narrowOp{rank: 3, lo: 1, hi: 2, width: 2},
		narrowOp{rank: 3, lo: 0, hi: 1, width: 3}, narrowOp{rank: 2, lo: 0, hi: 1, width: 2},
		narrowOp{rank: 3, lo: 0, hi: 1, width: 2, pad: true},
		unpackOp{offset: 0, total: 8, shape: tensor.Shape{2, 2}}, unpackOp{offset: 4, total: 8, shape: tensor.Shape{2, 2}},
		unpackOp{offset: 0, total: 8, shape: tensor.Shape{4}}, unpackOp{offset: 0, total: 9, shape: tensor.Shape{2, 2}},
	}
	seen := map[uint32]int{}
	for i, op := range ops {
		if j, ok := seen[op.Hashcode()]; ok {
			t.Errorf("ops %v and %v share a hash", ops[j], op)
		}
		seen[op.Hashcode()] = i
	}
}

// BenchmarkSelectiveScan times the forward and backward pass of one scan of
// a small-model shape (batch 8, length 128, d_inner 256, d_state 16) in
// float32.
func BenchmarkSelectiveScan(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	vs := scanInputs(rng, 8, 128, 256, 16, true)
	in := make([]G.Value, len(vs))
	for i, v := range vs {
		in[i] = to32(v)
	}
	op := scanOp{softplus: true}
	shapes := make([]tensor.Shape, len(vs))
	for i, v := range vs {
		shapes[i] = v.Shape().Clone()
	}
	grad := scanGradOp{scanOp: op, shapes: shapes}
	gy := to32(gradcheck.Rand(rng, 8, 128, 256))
	b.Run("forward", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := op.Do(in...); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("backward", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := grad.Do(append(in[:6:6], gy)...); err != nil {
				b.Fatal(err)
			}
		}
	})
}
