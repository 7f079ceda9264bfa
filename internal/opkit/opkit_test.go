package opkit_test

import (
	"fmt"
	"hash"
	"hash/fnv"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/chewxy/hm"
	"github.com/lilygo/lily/internal/opkit"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// scaleOp multiplies its input by factor: the smallest op written with
// every piece of opkit. It is not differentiable.
type scaleOp struct {
	opkit.Base
	factor float64
	rank   int
}

func (op scaleOp) Arity() int            { return 1 }
func (op scaleOp) Type() hm.Type         { return opkit.FnType(op.rank, op.rank) }
func (op scaleOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op scaleOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op scaleOp) String() string        { return fmt.Sprintf("scale{%g,rank=%d}", op.factor, op.rank) }

func (op scaleOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, 1, in)
	if err != nil {
		return nil, err
	}
	if len(s[0]) != op.rank {
		return nil, errors.Errorf("%v: input %v", op, s[0])
	}
	return s[0], nil
}

func (op scaleOp) Do(vs ...G.Value) (G.Value, error) {
	return opkit.Dispatch(op, vs, doScale[float64], doScale[float32])
}

func doScale[T opkit.Float](op scaleOp, vs []G.Value) (G.Value, error) {
	in, _, want, err := opkit.Inputs[T](op, vs)
	if err != nil {
		return nil, err
	}
	out, o := opkit.NewDense[T](want)
	for i, v := range in[0] {
		o[i] = T(op.factor) * v
	}
	return out, opkit.CheckOut(op, out, want)
}

var _ G.Op = scaleOp{}

// An op built from opkit runs in a graph in both float types, its
// parameters keep differently parameterised nodes apart (GORGONIA.md's
// scale{2} and scale{3}), and identical ones are merged into one node.
func TestOpBuiltWithOpkit(t *testing.T) {
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		g := G.NewGraph()
		x := G.NewMatrix(g, dt, G.WithShape(2, 3), G.WithName("x"), G.WithInit(G.RangedFrom(1)))
		two := G.Must(G.ApplyOp(scaleOp{factor: 2, rank: 2}, x))
		three := G.Must(G.ApplyOp(scaleOp{factor: 3, rank: 2}, x))
		if two == three {
			t.Fatal("scale{2} and scale{3} of one input merged into one node")
		}
		if G.Must(G.ApplyOp(scaleOp{factor: 2, rank: 2}, x)) != two {
			t.Error("two identical scale{2} nodes were not merged")
		}
		m := G.NewTapeMachine(g)
		if err := m.RunAll(); err != nil {
			t.Fatalf("%v: %+v", dt, err)
		}
		m.Close()
		for name, n := range map[string]*G.Node{"scale 2": two, "scale 3": three} {
			f := 2.0
			if name == "scale 3" {
				f = 3
			}
			got := floats(t, n.Value())
			for i, v := range got {
				if v != f*float64(i+1) {
					t.Fatalf("%v %s: %v", dt, name, got)
				}
			}
			if !slices.Equal(n.Value().Shape(), tensor.Shape{2, 3}) || n.Dtype() != dt {
				t.Errorf("%v %s: value %v of %v", dt, name, n.Value().Shape(), n.Dtype())
			}
		}
	}
}

// Inputs checks the values Do gets as InferShape checked the graph.
func TestInputs(t *testing.T) {
	x := tensor.New(tensor.WithShape(2, 1, 2), tensor.WithBacking([]float64{1, 2, 3, 4}))
	if _, err := (scaleOp{factor: 2, rank: 2}).Do(x); err == nil || !strings.Contains(err.Error(), "scale{2,rank=2}") {
		t.Errorf("rank-3 value for a rank-2 op: %v", err)
	}
	in, shapes, want, err := opkit.Inputs[float64](scaleOp{factor: 2, rank: 3}, []G.Value{x})
	if err != nil || len(in) != 1 || len(in[0]) != 4 || !slices.Equal(shapes[0], x.Shape()) || !slices.Equal(want, x.Shape()) {
		t.Errorf("Inputs = %v, %v, %v, %v", in, shapes, want, err)
	}
	if _, _, _, err := opkit.Inputs[float32](scaleOp{factor: 2, rank: 3}, []G.Value{x}); err == nil {
		t.Error("float64 value read as float32: no error")
	}
}

func TestBase(t *testing.T) {
	var b opkit.Base
	if b.ReturnsPtr() || b.CallsExtern() || b.OverwritesInput() != -1 {
		t.Errorf("Base: ReturnsPtr %t, CallsExtern %t, OverwritesInput %d; want false, false, -1",
			b.ReturnsPtr(), b.CallsExtern(), b.OverwritesInput())
	}
}

// Every call builds a new type: a cached hm.FnType poisons hm's pool.
func TestFnTypeIsFresh(t *testing.T) {
	a, b := opkit.FnType(3, 2, 3), opkit.FnType(3, 2, 3)
	fa, ok := a.(*hm.FunctionType)
	if !ok {
		t.Fatalf("FnType returned a %T", a)
	}
	if fb := b.(*hm.FunctionType); fa == fb {
		t.Error("two calls returned the same *hm.FunctionType")
	}
	if a.String() != b.String() || !strings.Contains(a.String(), "→") {
		t.Errorf("types %v and %v", a, b)
	}
	if got := opkit.FnType(1, 2).String(); got != opkit.FnType(1, 2).String() || got == a.String() {
		t.Errorf("FnType(1, 2) = %v", got)
	}
}

type named string

func (n named) String() string { return string(n) }

func TestHash(t *testing.T) {
	h := fnv.New32a()
	h.Write([]byte("op{a=1}"))
	if got := opkit.Hashcode(named("op{a=1}")); got != h.Sum32() {
		t.Errorf("Hashcode = %#x, want FNV-1a of the description %#x", got, h.Sum32())
	}
	if opkit.Hashcode(named("op{a=1}")) == opkit.Hashcode(named("op{a=2}")) {
		t.Error("descriptions that differ in a parameter hash alike")
	}
	w := fnv.New32a()
	opkit.WriteHash(w, named("op{a=1}"))
	if w.Sum32() != h.Sum32() {
		t.Error("WriteHash does not write exactly the description")
	}
}

// notShape is a DimSizer that is not a tensor.Shape.
type notShape struct{}

func (notShape) DimSize(int) (int, error) { return 1, nil }

func TestShapes(t *testing.T) {
	op := named("op")
	in := tensor.Shape{2, 3}
	s, err := opkit.Shapes(op, 2, []G.DimSizer{in, tensor.Shape{4}})
	if err != nil || len(s) != 2 || !slices.Equal(s[0], in) || !slices.Equal(s[1], tensor.Shape{4}) {
		t.Fatalf("Shapes = %v, %v", s, err)
	}
	s[0][0] = 7
	if in[0] != 2 {
		t.Error("Shapes returned the caller's shape, not a copy")
	}
	for name, args := range map[string][]G.DimSizer{
		"count":     {in},
		"not shape": {in, notShape{}},
		"empty dim": {in, tensor.Shape{3, 0}},
	} {
		if _, err := opkit.Shapes(op, 2, args); err == nil || !strings.HasPrefix(err.Error(), "op: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestIsFloat64(t *testing.T) {
	op := named("op")
	f64 := tensor.New(tensor.WithShape(2), tensor.WithBacking([]float64{1, 2}))
	f32 := tensor.New(tensor.WithShape(2), tensor.WithBacking([]float32{1, 2}))
	ints := tensor.New(tensor.WithShape(2), tensor.WithBacking([]int{1, 2}))
	if is, err := opkit.IsFloat64(op, []G.Value{f64, f64}); !is || err != nil {
		t.Errorf("float64: %t, %v", is, err)
	}
	if is, err := opkit.IsFloat64(op, []G.Value{f32, G.NewF32(1)}); is || err != nil {
		t.Errorf("float32: %t, %v", is, err)
	}
	for name, vs := range map[string][]G.Value{"int": {ints}, "mixed": {f64, f32}, "none": nil} {
		if _, err := opkit.IsFloat64(op, vs); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestDispatch(t *testing.T) {
	op := named("op")
	var ran string
	kernel := func(name string) func(named, []G.Value) (G.Value, error) {
		return func(named, []G.Value) (G.Value, error) { ran = name; return nil, nil }
	}
	f64, f32 := kernel("float64"), kernel("float32")
	for want, v := range map[string]G.Value{"float64": G.NewF64(1), "float32": G.NewF32(1)} {
		ran = ""
		if _, err := opkit.Dispatch(op, []G.Value{v}, f64, f32); err != nil || ran != want {
			t.Errorf("%s input: ran the %q kernel, %v", want, ran, err)
		}
	}
	ran = ""
	ints := tensor.New(tensor.WithShape(1), tensor.WithBacking([]int{1}))
	if _, err := opkit.Dispatch(op, []G.Value{ints}, f64, f32); err == nil || ran != "" {
		t.Errorf("int input: ran %q, error %v", ran, err)
	}
}

func TestSlicesAndInts(t *testing.T) {
	op := named("op")
	m := tensor.New(tensor.WithShape(3, 2), tensor.WithBacking([]float64{1, 2, 3, 4, 5, 6}))
	view, err := m.Slice(nil, tensor.S(1)) // column 1: a strided view
	if err != nil {
		t.Fatal(err)
	}
	d, shapes, err := opkit.Slices[float64](op, []G.Value{m, view})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(d) != "[[1 2 3 4 5 6] [2 4 6]]" || !slices.Equal(shapes[0], tensor.Shape{3, 2}) || !slices.Equal(shapes[1], tensor.Shape{3}) {
		t.Errorf("Slices = %v, %v", d, shapes)
	}
	shapes[0][0] = 9
	if m.Shape()[0] != 3 {
		t.Error("Slices returned the tensor's own shape, not a copy")
	}
	if _, _, err := opkit.Slices[float32](op, []G.Value{m}); err == nil || !strings.Contains(err.Error(), "input 0") {
		t.Errorf("float64 read as float32: %v", err)
	}
	if _, _, err := opkit.Slices[float64](op, []G.Value{G.NewF64(1)}); err == nil {
		t.Error("a scalar that is no *tensor.Dense: no error")
	}
	ids := tensor.New(tensor.WithShape(1, 2), tensor.WithBacking([]int{5, 6}))
	is, s, err := opkit.Ints(op, 1, ids)
	if err != nil || fmt.Sprint(is) != "[5 6]" || !slices.Equal(s, tensor.Shape{1, 2}) {
		t.Errorf("Ints = %v, %v, %v", is, s, err)
	}
	if _, _, err := opkit.Ints(op, 1, m); err == nil || !strings.Contains(err.Error(), "input 1") {
		t.Errorf("floats read as ints: %v", err)
	}
}

func TestNewDenseAndCheckOut(t *testing.T) {
	op := named("op")
	want := tensor.Shape{2, 3}
	d, data := opkit.NewDense[float32](want)
	want[0] = 5
	if !slices.Equal(d.Shape(), tensor.Shape{2, 3}) || len(data) != 6 || &d.Data().([]float32)[0] != &data[0] {
		t.Fatalf("NewDense: %v, %d values", d.Shape(), len(data))
	}
	for _, v := range data {
		if v != 0 {
			t.Fatal("NewDense is not zeroed")
		}
	}
	if err := opkit.CheckOut(op, d, tensor.Shape{2, 3}); err != nil {
		t.Error(err)
	}
	// tensor.Shape.Eq equates [3, 1] and [3]; the check must not.
	col, _ := opkit.NewDense[float64](tensor.Shape{3, 1})
	if slices.Equal(col.Shape(), tensor.Shape{3}) || opkit.CheckOut(op, col, tensor.Shape{3}) == nil {
		t.Error("[3, 1] accepted for [3]")
	}
}

// Gemm matches a plain triple loop for every transposition, both float
// types, alpha, beta and row strides wider than the operands.
func TestGemm(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	const m, n, k, pad = 3, 4, 5, 2
	for _, tA := range []bool{false, true} {
		for _, tB := range []bool{false, true} {
			// Stored shapes: a is m×k (or k×m), b is k×n (or n×k), each
			// with pad extra columns; c is m×n with pad extra columns.
			ar, ac := m, k
			if tA {
				ar, ac = k, m
			}
			br, bc := k, n
			if tB {
				br, bc = n, k
			}
			lda, ldb, ldc := ac+pad, bc+pad, n+pad
			a, b, c := randSlice(rng, ar*lda), randSlice(rng, br*ldb), randSlice(rng, m*ldc)
			at := func(i, p int) float64 {
				if tA {
					return a[p*lda+i]
				}
				return a[i*lda+p]
			}
			bt := func(p, j int) float64 {
				if tB {
					return b[j*ldb+p]
				}
				return b[p*ldb+j]
			}
			const alpha, beta = 0.5, 2.0
			want := append([]float64(nil), c...)
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					s := 0.0
					for p := 0; p < k; p++ {
						s += at(i, p) * bt(p, j)
					}
					want[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
				}
			}
			got := append([]float64(nil), c...)
			opkit.Gemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, got, ldc)
			got32 := to32(c)
			opkit.Gemm(tA, tB, m, n, k, float32(alpha), to32(a), lda, to32(b), ldb, float32(beta), got32, ldc)
			for i := range want {
				if math.Abs(got[i]-want[i]) > 1e-12 || math.Abs(float64(got32[i])-want[i]) > 1e-5 {
					t.Fatalf("tA=%t tB=%t: c[%d] = %v (float32 %v), want %v", tA, tB, i, got[i], got32[i], want[i])
				}
			}
		}
	}
}

func randSlice(rng *rand.Rand, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = rng.Float64()*2 - 1
	}
	return out
}

func to32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

func floats(t *testing.T, v G.Value) []float64 {
	t.Helper()
	switch d := v.Data().(type) {
	case []float64:
		return d
	case []float32:
		out := make([]float64, len(d))
		for i, x := range d {
			out[i] = float64(x)
		}
		return out
	}
	t.Fatalf("value of %T", v.Data())
	return nil
}
