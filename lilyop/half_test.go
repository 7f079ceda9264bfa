package lilyop

import (
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/lilygo/lily/gemm"
	"github.com/lilygo/lily/internal/gradcheck"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// halfCase is one half-precision frozen dtype with its conversions.
type halfCase struct {
	name string
	dt   tensor.Dtype
	to   func(*tensor.Dense) (*tensor.Dense, error)
	from func(*tensor.Dense, tensor.Dtype) (*tensor.Dense, error)
}

// halfCases are the dtypes the mixed-precision tests run over.
var halfCases = []halfCase{{"bf16", BFloat16, ToBF16, FromBF16}, {"f16", Float16, ToF16, FromF16}}

// forHalves runs f as a subtest for each of halfCases.
func forHalves(t *testing.T, f func(t *testing.T, hc halfCase)) {
	for _, hc := range halfCases {
		t.Run(hc.name, func(t *testing.T) { f(t, hc) })
	}
}

// randHalf returns a tensor of dtype hc.dt of random values in [-1, 1) and
// the same (exact) values as float64.
func randHalf(t *testing.T, hc halfCase, rng *rand.Rand, shape ...int) (*tensor.Dense, *tensor.Dense) {
	t.Helper()
	h, err := hc.to(gradcheck.Rand(rng, shape...))
	if err != nil {
		t.Fatal(err)
	}
	if h.Dtype() != hc.dt {
		t.Fatalf("dtype %v, want %v", h.Dtype(), hc.dt)
	}
	f, err := hc.from(h, tensor.Float64)
	if err != nil {
		t.Fatal(err)
	}
	return h, f
}

// The mixed products' gradients with respect to x, in float64 with the
// half-precision (bfloat16, float16) weight widened, against central differences; the weight gets
// none.
func TestMatMulHalfGradient(t *testing.T) {
	forHalves(t, func(t *testing.T, hc halfCase) {
		rng := rand.New(rand.NewSource(61))
		for _, xs := range []tensor.Shape{{3, 4}, {2, 3, 4}, {2, 2, 3, 4}, {1, 1}} {
			k, n := xs[len(xs)-1], 1+rng.Intn(5)
			w, _ := randHalf(t, hc, rng, k, n)
			wt, _ := randHalf(t, hc, rng, n, k)
			in := []gradcheck.Input{{Name: "x", Value: gradcheck.Rand(rng, xs...), Diff: true}}
			for name, f := range map[string]func(g *G.ExprGraph, x *G.Node) (*G.Node, error){
				"MatMul":       func(g *G.ExprGraph, x *G.Node) (*G.Node, error) { return MatMul(x, leaf(g, "w", w)) },
				"MatMulScaled": func(g *G.ExprGraph, x *G.Node) (*G.Node, error) { return MatMulScaled(x, leaf(g, "w", w), -1.5) },
				"MatMulNT":     func(g *G.ExprGraph, x *G.Node) (*G.Node, error) { return MatMulNT(x, leaf(g, "w", wt)) },
			} {
				t.Run(fmt.Sprint(name, xs), func(t *testing.T) {
					gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) { return f(g, n[0]) }, in, gradcheck.Options{})
				})
			}
		}
	})
}

// A float32 forward and x-gradient with a half-precision weight equal those with
// the weight's values in float32 (bit for bit on package gemm; to summation
// order where OpenBLAS computes the float32 products).
func TestMatMulHalfMatchesFloat32(t *testing.T) {
	forHalves(t, func(t *testing.T, hc halfCase) {
		rng := rand.New(rand.NewSource(62))
		tol := 0.0
		if BLAS != "gemm" {
			tol = 1e-4 // float32 sums in two orders, then a gradient through them
		}
		for _, nt := range []bool{false, true} {
			for _, sz := range [][3]int{{7, 33, 17}, {64, 100, 129}, {3, 1, 300}} {
				m, k, n := sz[0], sz[1], sz[2]
				ws := []int{k, n}
				if nt {
					ws = []int{n, k}
				}
				wh, w64 := randHalf(t, hc, rng, ws...)
				w32, x32 := as32(w64), as32(gradcheck.Rand(rng, 2, m, k))
				fwd := func(w *tensor.Dense) (y, dx []float64) {
					g := G.NewGraph()
					x := leaf(g, "x", x32.Clone().(*tensor.Dense))
					var out *G.Node
					var err error
					if nt {
						out, err = MatMulNT(x, leaf(g, "w", w))
					} else {
						out, err = MatMul(x, leaf(g, "w", w))
					}
					if err != nil {
						t.Fatal(err)
					}
					sq, err := G.Square(out)
					if err != nil {
						t.Fatal(err)
					}
					loss, err := G.Sum(sq)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := G.Grad(loss, x); err != nil {
						t.Fatal(err)
					}
					vm := G.NewTapeMachine(g, G.BindDualValues(x))
					defer vm.Close()
					if err := vm.RunAll(); err != nil {
						t.Fatalf("%+v", err)
					}
					gx, err := x.Grad()
					if err != nil {
						t.Fatal(err)
					}
					return floats(out.Value().(*tensor.Dense)), floats(gx.(*tensor.Dense))
				}
				y1, d1 := fwd(wh)
				y2, d2 := fwd(w32)
				assertClose(t, "forward", y1, y2, tol)
				assertClose(t, "x gradient", d1, d2, tol)
			}
		}
	})
}

// A half-precision weight cannot be a learnable: Grad refuses it with an error.
func TestMatMulHalfWeightNotDifferentiable(t *testing.T) {
	forHalves(t, func(t *testing.T, hc halfCase) {
		rng := rand.New(rand.NewSource(63))
		wh, _ := randHalf(t, hc, rng, 3, 2)
		g := G.NewGraph()
		x := leaf(g, "x", as32(gradcheck.Rand(rng, 4, 3)))
		w := leaf(g, "w", wh)
		y, err := MatMul(x, w)
		if err != nil {
			t.Fatal(err)
		}
		loss, err := G.Sum(y)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := G.Grad(loss, w); err == nil {
			t.Fatal("Grad with respect to a half-precision weight succeeded")
		}
		// A half-precision x is refused when the graph is built.
		if _, err := MatMul(w, leaf(g, "w2", wh)); err == nil || !strings.Contains(err.Error(), "bfloat16") {
			t.Fatalf("half-precision x: %v", err)
		}
	})
}

// Embedding rows of a half-precision table are its exact values, in float32 or
// float64; the gradient reaches what follows, not the table.
func TestEmbedHalf(t *testing.T) {
	forHalves(t, func(t *testing.T, hc halfCase) {
		rng := rand.New(rand.NewSource(64))
		const vocab, d = 7, 5
		wh, w64 := randHalf(t, hc, rng, vocab, d)
		ids := randIDs(rng, 6, vocab)
		for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
			got := run(t, func(g *G.ExprGraph) (*G.Node, error) {
				return EmbedAs(leaf(g, "table", wh), idsNode(g, ids, 2, 3), dt)
			})
			if got.Dtype() != dt || !got.Shape().Eq(tensor.Shape{2, 3, d}) {
				t.Fatalf("got %v %v", got.Dtype(), got.Shape())
			}
			var want []float64
			for _, id := range ids {
				want = append(want, w64.Data().([]float64)[id*d:(id+1)*d]...)
			}
			assertClose(t, "EmbedAs", floats(got), want, 0)
		}
		// Embed gives float32 rows by default; any other dtype is refused.
		g := G.NewGraph()
		tab := leaf(g, "table", wh)
		if e, err := Embed(tab, idsNode(g, ids, 6)); err != nil || e.Dtype() != tensor.Float32 {
			t.Fatalf("Embed: %v", err)
		}
		if _, err := EmbedAs(tab, idsNode(g, ids, 6), tensor.Int); err == nil {
			t.Fatal("EmbedAs int accepted")
		}
		// Gradient with respect to what the rows feed, through a float64 graph.
		in := []gradcheck.Input{{Name: "v", Value: gradcheck.Rand(rng, d, 2), Diff: true}}
		gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) {
			e, err := EmbedAs(leaf(g, "table", wh), idsNode(g, ids, 2, 3), tensor.Float64)
			if err != nil {
				return nil, err
			}
			return MatMul(e, n[0])
		}, in, gradcheck.Options{})
	})
}

// Widen converts exactly, and an RMSNorm with a widened half-precision gain has
// the input gradient that the float64 check expects.
func TestWidenHalf(t *testing.T) {
	forHalves(t, func(t *testing.T, hc halfCase) {
		rng := rand.New(rand.NewSource(65))
		wh, w64 := randHalf(t, hc, rng, 6)
		for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
			got := run(t, func(g *G.ExprGraph) (*G.Node, error) { return Widen(leaf(g, "w", wh), dt) })
			if got.Dtype() != dt {
				t.Fatalf("dtype %v", got.Dtype())
			}
			assertClose(t, "Widen", floats(got), w64.Data().([]float64), 0)
		}
		g := G.NewGraph()
		x := leaf(g, "x", gradcheck.Rand(rng, 2))
		if same, err := Widen(x, tensor.Float64); err != nil || same != x {
			t.Fatalf("Widen of a float64 node to float64: %v", err)
		}
		if _, err := Widen(x, tensor.Float32); err == nil {
			t.Fatal("Widen float64 → float32 accepted")
		}
		in := []gradcheck.Input{{Name: "x", Value: gradcheck.Rand(rng, 3, 6), Diff: true}}
		gradcheck.Check(t, func(g *G.ExprGraph, n G.Nodes) (*G.Node, error) {
			w, err := Widen(leaf(g, "w", wh), tensor.Float64)
			if err != nil {
				return nil, err
			}
			return RMSNorm(n[0], w, 1e-5)
		}, in, gradcheck.Options{})
	})
}

// ToBF16 rounds to nearest even; FromBF16 is exact; both refuse other
// dtypes.
func TestBF16Conversions(t *testing.T) {
	src := tensor.New(tensor.WithShape(2, 2), tensor.WithBacking([]float32{1, 1 + 1.0/256, float32(math.Inf(-1)), -3.140625}))
	h, err := ToBF16(src)
	if err != nil {
		t.Fatal(err)
	}
	if h.Dtype() != BFloat16 || BFloat16.Name() != "BF16" {
		t.Fatalf("dtype %v", h.Dtype())
	}
	want := []gemm.BF16{gemm.ToBF16(1), gemm.ToBF16(1), gemm.ToBF16(float32(math.Inf(-1))), gemm.ToBF16(-3.140625)}
	for i, v := range h.Data().([]gemm.BF16) {
		if v != want[i] {
			t.Fatalf("element %d: %#x, want %#x", i, v, want[i])
		}
	}
	back, err := FromBF16(h, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Data().([]float32); got[1] != 1 || got[3] != -3.140625 || !math.IsInf(float64(got[2]), -1) {
		t.Fatalf("FromBF16: %v", got)
	}
	if _, err := FromBF16(src, tensor.Float32); err == nil {
		t.Fatal("FromBF16 of a float32 tensor accepted")
	}
	if _, err := ToBF16(tensor.New(tensor.WithBacking([]int{1}))); err == nil {
		t.Fatal("ToBF16 of ints accepted")
	}
	if _, err := NewBF16([]int{2, 2}, make([]gemm.BF16, 3)); err == nil {
		t.Fatal("NewBF16 with a wrong length accepted")
	}
}

// An op without a half-precision path refuses a half-precision input when the graph is
// built (the function type does not unify), rather than at run time.
func TestOpsWithoutHalfPathRefuse(t *testing.T) {
	forHalves(t, func(t *testing.T, hc halfCase) {
		rng := rand.New(rand.NewSource(66))
		wh, _ := randHalf(t, hc, rng, 4)
		g := G.NewGraph()
		x := leaf(g, "x", as32(gradcheck.Rand(rng, 3, 4)))
		w := leaf(g, "w", wh)
		if _, err := RMSNorm(x, w, 1e-5); err == nil {
			t.Fatal("RMSNorm with a half-precision gain accepted")
		}
		if _, err := AddBias(x, w); err == nil {
			t.Fatal("AddBias with a half-precision bias accepted")
		}
		if _, err := G.Add(x, w); err == nil {
			t.Fatal("gorgonia.Add of float32 and a half-precision tensor accepted")
		}
	})
}

// ToF16 rounds to nearest even with overflow to infinity; FromF16 is exact;
// bfloat16 and float16 tensors convert into each other through float32;
// other dtypes are refused.
func TestF16Conversions(t *testing.T) {
	src := tensor.New(tensor.WithShape(2, 2), tensor.WithBacking([]float32{1, 1 + 1.0/4096, 70000, -3.14159}))
	h, err := ToF16(src)
	if err != nil {
		t.Fatal(err)
	}
	if h.Dtype() != Float16 || Float16.Name() != "F16" {
		t.Fatalf("dtype %v", h.Dtype())
	}
	want := []gemm.F16{gemm.ToF16(1), gemm.ToF16(1), gemm.ToF16(float32(math.Inf(1))), gemm.ToF16(-3.140625)}
	for i, v := range h.Data().([]gemm.F16) {
		if v != want[i] {
			t.Fatalf("ToF16[%d] = %#x, want %#x", i, v, want[i])
		}
	}
	back, err := FromF16(h, tensor.Float64)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Data().([]float64); got[0] != 1 || !math.IsInf(got[2], 1) || got[3] != -3.140625 {
		t.Fatalf("FromF16: %v", got)
	}
	bf, err := ToBF16(h)
	if err != nil || bf.Data().([]gemm.BF16)[3] != gemm.ToBF16(-3.140625) {
		t.Fatalf("ToBF16 of float16: %v", err)
	}
	if f, err := ToF16(bf); err != nil || f.Data().([]gemm.F16)[0] != gemm.ToF16(1) {
		t.Fatalf("ToF16 of bfloat16: %v", err)
	}
	if _, err := FromF16(bf, tensor.Float32); err == nil {
		t.Fatal("FromF16 of a bfloat16 tensor accepted")
	}
	if _, err := FromF16(h, tensor.Int); err == nil {
		t.Fatal("FromF16 to int accepted")
	}
	if _, err := ToF16(tensor.New(tensor.WithBacking([]int{1}))); err == nil {
		t.Fatal("ToF16 of ints accepted")
	}
	if _, err := NewF16([]int{2, 2}, make([]gemm.F16, 3)); err == nil {
		t.Fatal("NewF16 with a wrong length accepted")
	}
	if n, err := NewF16([]int{3}, make([]gemm.F16, 3)); err != nil || n.Dtype() != Float16 {
		t.Fatalf("NewF16: %v", err)
	}
}
