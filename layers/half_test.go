package layers

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/lilygo/lily/gemm"
	"github.com/lilygo/lily/lilyop"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// halfCase is one half-precision frozen dtype: name as error messages
// spell it, and a tensor [1, NaN or ±Inf] of it.
type halfCase struct {
	name string
	dt   tensor.Dtype
	bad  func() (*tensor.Dense, error)
}

// halfCases are the dtypes the half-precision store tests run over.
var halfCases = []halfCase{
	{"bfloat16", lilyop.BFloat16, func() (*tensor.Dense, error) {
		return lilyop.NewBF16([]int{2}, []gemm.BF16{gemm.ToBF16(1), 0x7fc0})
	}},
	{"float16", lilyop.Float16, func() (*tensor.Dense, error) {
		return lilyop.NewF16([]int{2}, []gemm.F16{gemm.ToF16(1), 0x7c00})
	}},
}

// forHalves runs f as a subtest for each of halfCases.
func forHalves(t *testing.T, f func(t *testing.T, hc halfCase)) {
	for _, hc := range halfCases {
		t.Run(hc.name, func(t *testing.T) { f(t, hc) })
	}
}

// Adapter gradients through frozen weights and biases kept in half precision pass
// the float64 central-difference check (the bfloat16 values widen exactly
// into a float64 store's products).
func TestHalfBaseGradients(t *testing.T) {
	forHalves(t, func(t *testing.T, hc halfCase) {
		for _, name := range []string{"lily", "lora"} {
			t.Run(name, func(t *testing.T) {
				m := newToy(t, tensor.Float64, 2, 4, 11)
				n, err := m.store.ConvertFrozen(hc.dt, nil)
				if err != nil || n != 8 {
					t.Fatalf("converted %d: %v", n, err)
				}
				var a Adapter
				if name == "lily" {
					cfg := lilyCfg(lilyop.Sequence)
					cfg.NonZeroB = true
					if a, err = NewLily(cfg); err != nil {
						t.Fatal(err)
					}
				} else if a, err = NewLoRA(LoRAConfig{R: 2, Alpha: 3, TargetModules: []string{"query", "value"}}); err != nil {
					t.Fatal(err)
				}
				if err := Attach(m.store, a, m.sites, rand.New(rand.NewPCG(12, 12))); err != nil {
					t.Fatal(err)
				}
				for _, p := range m.store.Trainable() {
					copyInto(p.Value, randSlice(rand.New(rand.NewPCG(13, 13)), p.Value.Shape().TotalSize()))
				}
				gradCheckStore(t, m, a, 2, 3, []float64{1, 1, 0, 1, 1, 1}, 14)
			})
		}
	})
}

// A float32 model whose matrices are kept in half precision computes what the
// float32 model with the matrices rounded to that half computes.
func TestHalfForwardMatchesRounded(t *testing.T) {
	forHalves(t, func(t *testing.T, hc halfCase) {
		half := newToy(t, tensor.Float32, 2, 16, 15)
		ref := newToy(t, tensor.Float32, 2, 16, 15)
		if _, err := half.store.ConvertFrozen(hc.dt, Matrices); err != nil {
			t.Fatal(err)
		}
		// The reference: round to bfloat16 and widen back.
		if _, err := ref.store.ConvertFrozen(hc.dt, Matrices); err != nil {
			t.Fatal(err)
		}
		if _, err := ref.store.ConvertFrozen(tensor.Float32, nil); err != nil {
			t.Fatal(err)
		}
		for _, p := range half.store.Params() {
			want := hc.dt
			if p.Value.Dims() == 1 {
				want = tensor.Float32
			}
			if p.Value.Dtype() != want {
				t.Fatalf("%s is %v, want %v", p.Name, p.Value.Dtype(), want)
			}
		}
		rng := rand.New(rand.NewPCG(16, 16))
		xv := randSlice(rng, 3*5*16)
		var outs [2][]float64
		for i, m := range []*toy{half, ref} {
			lg := m.build(t, None{}, false, false, 3, 5, nil)
			copyInto(lg.x.Value().(*tensor.Dense), xv)
			lg.run(t)
			outs[i] = Float64s(lg.out.Value().(*tensor.Dense))
			lg.vm.Close()
		}
		if d := maxAbsDiff(outs[0], outs[1]); d > 1e-5 {
			t.Fatalf("bfloat16 and rounded float32 outputs differ by %g", d)
		}
	})
}

// Memory accounting, the dtype rules and the errors of a store with
// half-precision parameters.
func TestHalfStore(t *testing.T) {
	forHalves(t, func(t *testing.T, hc halfCase) {
		m := newToy(t, tensor.Float32, 1, 4, 17)
		_, before := m.store.Bytes()
		if before != 2*(16+4)*4 {
			t.Fatalf("float32 bytes %d", before)
		}
		if n, err := m.store.ConvertFrozen(hc.dt, Matrices); err != nil || n != 2 {
			t.Fatalf("converted %d: %v", n, err)
		}
		if _, total := m.store.Bytes(); total != 2*(16*2+4*4) {
			t.Fatalf("bytes after conversion %d", total)
		}
		if ElementSize(hc.dt) != 2 || ElementSize(tensor.Float64) != 8 || ElementSize(tensor.Dtype{}) != 0 {
			t.Fatal("ElementSize")
		}
		if _, total := m.store.Count(); total != 2*(16+4) {
			t.Fatalf("count %d", total)
		}
		// Converting back is exact.
		w, _ := m.store.Get(m.sites[0].Weight)
		h := Float64s(w.Value)
		if _, err := m.store.ConvertFrozen(tensor.Float32, nil); err != nil {
			t.Fatal(err)
		}
		for i, v := range w.Value.Data().([]float32) {
			if float64(v) != h[i] {
				t.Fatalf("element %d: %g, want %g", i, v, h[i])
			}
		}
		if _, err := m.store.ConvertFrozen(tensor.Float64, nil); err == nil {
			t.Fatal("conversion of a float32 store to float64 accepted")
		}
		if err := CheckFinite("w", w.Value); err != nil {
			t.Fatal(err)
		}
		bad, err := hc.bad()
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckFinite("bad", bad); err == nil || !strings.Contains(err.Error(), "bad") || !strings.Contains(err.Error(), "element 1 ") {
			t.Fatalf("CheckFinite of a non-finite %s: %v", hc.name, err)
		}
		if got := Float64s(bad); len(got) != 2 || got[0] != 1 {
			t.Fatalf("Float64s: %v", got)
		}
		// No trainable parameter in half precision.
		if err := m.store.Add(&Param{Name: "t", Value: bad, Trainable: true}); err == nil {
			t.Fatal("a trainable half-precision parameter was added")
		}
		if err := m.store.Add(&Param{Name: "f", Value: bad}); err != nil {
			t.Fatalf("a frozen half-precision parameter was refused: %v", err)
		}
		lora, err := NewLoRA(LoRAConfig{R: 1, Alpha: 1, TargetModules: []string{"query"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := Attach(m.store, lora, m.sites, rand.New(rand.NewPCG(1, 1))); err != nil {
			t.Fatal(err)
		}
		if _, err := m.store.ConvertFrozen(hc.dt, nil); err == nil || !strings.Contains(err.Error(), "trainable") {
			t.Fatalf("converting trainable parameters: %v", err)
		}
		if p, _ := m.store.Get("f"); p.Value.Dtype() != hc.dt {
			t.Fatal("a failed conversion changed a parameter")
		}
		if _, err := m.store.ConvertFrozen(hc.dt, Matrices); err == nil {
			t.Fatal("converting trainable matrices accepted")
		}
		if _, err := m.store.ConvertFrozen(hc.dt, func(p *Param) bool { return !p.Trainable && p.Value.Dims() == 2 }); err != nil {
			t.Fatal(err)
		}
		// Merging into a half-precision weight would round the update away.
		if err := Merge(m.store, lora, m.sites); err == nil || !strings.Contains(err.Error(), hc.name) {
			t.Fatalf("Merge into %s: %v", hc.name, err)
		}
		// A half-precision parameter made trainable afterwards is refused by Machine.
		w.Trainable = true
		g := m.store.NewGraph(false)
		x := g.Input("x", 2, 4)
		y, err := Linear(g, lora, m.sites[0], x)
		if err != nil {
			t.Fatalf("%+v", err)
		}
		loss, err := G.Sum(y)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.Machine(loss); err == nil || !strings.Contains(err.Error(), hc.name) {
			t.Fatalf("Machine with a trainable %s weight: %v", hc.name, err)
		}
		w.Trainable = false
		vm, err := g.Machine(loss)
		if err != nil {
			t.Fatalf("%+v", err)
		}
		if err := vm.RunAll(); err != nil {
			t.Fatalf("%+v", err)
		}
		vm.Close()
	})
}
