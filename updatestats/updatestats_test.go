package updatestats

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"gonum.org/v1/gonum/mat"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// shape is one target of the toy model: its name and widths.
type shape struct {
	target    string
	dIn, dOut int
}

// toy is a model of frozen random weights: nLayers layers with one site per
// shape each.
type toy struct {
	store *layers.Store
	sites []layers.Site
}

func newToy(t *testing.T, dt tensor.Dtype, nLayers int, shapes ...shape) *toy {
	t.Helper()
	s, err := layers.NewStore(dt)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	m := &toy{store: s}
	for l := 0; l < nLayers; l++ {
		for _, sh := range shapes {
			path := fmt.Sprintf("m.%d.%s", l, sh.target)
			w, err := s.New(layers.ParamSpec{Name: path + ".weight", Shape: tensor.Shape{sh.dIn, sh.dOut}, Init: layers.Normal(1)}, false, rng)
			if err != nil {
				t.Fatal(err)
			}
			m.sites = append(m.sites, layers.Site{Layer: l, Target: sh.target, Path: path, DIn: sh.dIn, DOut: sh.dOut, Weight: w.Name})
		}
	}
	return m
}

func (m *toy) attach(t *testing.T, a layers.Adapter) {
	t.Helper()
	if err := layers.Attach(m.store, a, m.sites, rand.New(rand.NewPCG(3, 4))); err != nil {
		t.Fatal(err)
	}
}

// observe runs an evaluation graph with every site on its own random input
// [2, 4, d_in] runs times and returns a calibrator that observed each run.
func (m *toy) observe(t *testing.T, a layers.Adapter, runs, keep int) *layers.MixingCalibrator {
	t.Helper()
	g := m.store.NewGraph(false)
	var xs []*G.Node
	for _, s := range m.sites {
		x := g.Input("x."+s.Path, 2, 4, s.DIn)
		if _, err := layers.Linear(g, a, s, x); err != nil {
			t.Fatal(err)
		}
		xs = append(xs, x)
	}
	vm := G.NewTapeMachine(g.G)
	defer vm.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	cal := &layers.MixingCalibrator{Keep: keep}
	for i := 0; i < runs; i++ {
		for _, x := range xs {
			d := x.Value().Data().([]float64)
			for j := range d {
				d[j] = 3 * rng.NormFloat64()
			}
		}
		vm.Reset()
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		if err := cal.Observe(g); err != nil {
			t.Fatal(err)
		}
	}
	return cal
}

func (m *toy) param(t *testing.T, name string) []float64 {
	t.Helper()
	p, ok := m.store.Get(name)
	if !ok {
		t.Fatalf("no parameter %q", name)
	}
	return layers.Float64s(p.Value)
}

// setParam overwrites a float64 parameter.
func (m *toy) setParam(t *testing.T, name string, v []float64) {
	t.Helper()
	p, _ := m.store.Get(name)
	copy(p.Value.Data().([]float64), v)
}

// denseDelta forms ΔW = s·A·Σ_e w_e·B_e [dIn, dOut] entry by entry from A
// [dIn, r] and the pool b [E, r, dOut].
func denseDelta(a, b, w []float64, dIn, r, dOut int, s float64) *mat.Dense {
	d := mat.NewDense(dIn, dOut, nil)
	for i := 0; i < dIn; i++ {
		for j := 0; j < dOut; j++ {
			var v float64
			for k := 0; k < r; k++ {
				for e, we := range w {
					v += a[i*r+k] * we * b[(e*r+k)*dOut+j]
				}
			}
			d.Set(i, j, s*v)
		}
	}
	return d
}

// want is what a dense computation says about one update.
type want struct {
	values    []float64 // all min(dIn, dOut) singular values
	rank      int
	effective float64
	norm      float64
}

// denseWant measures a formed ΔW: a full SVD, the rank at
// max(dIn, dOut)·eps·σ_1, Roy & Vetterli's effective rank over every
// singular value, and the norm summed entry by entry.
func denseWant(t *testing.T, d *mat.Dense, eps float64) want {
	t.Helper()
	var svd mat.SVD
	if !svd.Factorize(d, mat.SVDNone) {
		t.Fatal("dense SVD failed")
	}
	w := want{values: svd.Values(nil)}
	r, c := d.Dims()
	var sum, sq float64
	for _, v := range w.values {
		if v > float64(max(r, c))*eps*w.values[0] {
			w.rank++
		}
		sum += v
	}
	if sum > 0 {
		var h float64
		for _, v := range w.values {
			if p := v / sum; p > 0 {
				h -= p * math.Log(p)
			}
		}
		w.effective = math.Exp(h)
	}
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			sq += d.At(i, j) * d.At(i, j)
		}
	}
	w.norm = math.Sqrt(sq)
	return w
}

// check compares a measured update with the dense one: the kept singular
// values equal the largest dense ones and the dropped ones are zero.
func check(t *testing.T, what string, sv []float64, rank int, effective, norm float64, w want) {
	t.Helper()
	tol := 1e-10 * math.Max(w.values[0], 1e-300)
	if len(sv) > len(w.values) {
		t.Fatalf("%s: %d singular values, ΔW has only %d", what, len(sv), len(w.values))
	}
	for i, v := range w.values {
		got := 0.0
		if i < len(sv) {
			got = sv[i]
		}
		if math.Abs(got-v) > tol+1e-12 {
			t.Errorf("%s: σ_%d = %.15g, dense SVD %.15g (all: %v vs %v)", what, i, got, v, sv, w.values)
		}
	}
	if rank != w.rank {
		t.Errorf("%s: numerical rank %d, dense %d", what, rank, w.rank)
	}
	if math.Abs(effective-w.effective) > 1e-9 {
		t.Errorf("%s: effective rank %.12g, dense %.12g", what, effective, w.effective)
	}
	if math.Abs(norm-w.norm) > 1e-10*math.Max(w.norm, 1) {
		t.Errorf("%s: ‖ΔW‖ %.15g, dense %.15g", what, norm, w.norm)
	}
}

func frob(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

// Shapes with d_in < r and d_out < num_B·r take the no-QR branch of the
// factorisation; the others the QR branch.
var lilyShapes = []shape{{"q", 7, 5}, {"v", 2, 4}, {"o", 9, 11}}

// checkLily compares every site and pool of a Lily report with dense
// computations from the store's tensors and the mixing vectors means.
func checkLily(t *testing.T, m *toy, lily *layers.Lily, rep *Report, means map[string][]float64, samples map[string][][]float64) {
	t.Helper()
	c := lily.Config()
	names := lily.PEFTNames()
	if len(rep.Sites) != len(m.sites) {
		t.Fatalf("%d sites reported, want %d", len(rep.Sites), len(m.sites))
	}
	for i, s := range m.sites {
		su := rep.Sites[i]
		if su.Path != s.Path || su.Layer != s.Layer || su.Target != s.Target {
			t.Fatalf("site %d is %s, want %s", i, su.Path, s.Path)
		}
		a := m.param(t, names[s.Path+".lily_A.weight"])
		b := m.param(t, names[s.Path+".lily_B.weight"])
		w := means[s.Path]
		for e := range w {
			if su.Mixing.Mean[e] != w[e] {
				t.Fatalf("%s: mixing %v, want %v", s.Path, su.Mixing.Mean, w)
			}
		}
		dw := denseWant(t, denseDelta(a, b, w, s.DIn, c.R, s.DOut, c.Scaling), 0x1p-52)
		check(t, s.Path, su.SingularValues, su.Rank, su.EffectiveRank, su.Norm, dw)
		if got := len(su.SingularValues); got != min(c.R, s.DIn, s.DOut) {
			t.Errorf("%s: %d singular values, want min(r, d_in, d_out) = %d", s.Path, got, min(c.R, s.DIn, s.DOut))
		}
		wn := frob(m.param(t, s.Weight))
		if math.Abs(su.WeightNorm-wn) > 1e-12*wn || math.Abs(su.RelativeNorm-dw.norm/wn) > 1e-10 {
			t.Errorf("%s: ‖W‖ %g relative %g, want %g and %g", s.Path, su.WeightNorm, su.RelativeNorm, wn, dw.norm/wn)
		}
		var h float64
		for _, x := range w {
			if x > 0 {
				h -= x * math.Log(x)
			}
		}
		if math.Abs(su.Mixing.Entropy-h) > 1e-12 {
			t.Errorf("%s: mixing entropy %g, want %g", s.Path, su.Mixing.Entropy, h)
		}
		smp := samples[s.Path]
		if len(smp) == 0 {
			if su.Mixing.Spread != nil {
				t.Errorf("%s: a spread without samples", s.Path)
			}
			continue
		}
		sp := su.Mixing.Spread
		if sp == nil || sp.Samples != len(smp) {
			t.Fatalf("%s: spread %+v for %d samples", s.Path, sp, len(smp))
		}
		lo, hi, sum := math.Inf(1), math.Inf(-1), 0.0
		for _, v := range smp {
			e := denseWant(t, denseDelta(a, b, v, s.DIn, c.R, s.DOut, c.Scaling), 0x1p-52).effective
			lo, hi, sum = math.Min(lo, e), math.Max(hi, e), sum+e
		}
		if g := sp.EffectiveRank; math.Abs(g.Min-lo) > 1e-9 || math.Abs(g.Max-hi) > 1e-9 || math.Abs(g.Mean-sum/float64(len(smp))) > 1e-9 {
			t.Errorf("%s: effective rank over samples %+v, dense min %g mean %g max %g", s.Path, g, lo, sum/float64(len(smp)), hi)
		}
		for e := range sp.Std {
			var mu, v float64
			for _, x := range smp {
				mu += x[e] / float64(len(smp))
			}
			for _, x := range smp {
				v += (x[e] - mu) * (x[e] - mu) / float64(len(smp))
			}
			if math.Abs(sp.Std[e]-math.Sqrt(v)) > 1e-12 {
				t.Errorf("%s: std of expert %d %g, want %g", s.Path, e, sp.Std[e], math.Sqrt(v))
			}
		}
	}
	checkPools(t, m, lily, rep, means)
}

// checkPools compares every pool with dense computations: cosines entry by
// entry, the mixing matrix's singular values from the eigenvalues of MᵀM.
func checkPools(t *testing.T, m *toy, lily *layers.Lily, rep *Report, means map[string][]float64) {
	t.Helper()
	c := lily.Config()
	if len(rep.Pools) != len(lilyShapes) {
		t.Fatalf("%d pools, want one per target", len(rep.Pools))
	}
	for _, p := range rep.Pools {
		b := m.param(t, p.B)
		n := len(b) / c.NumB
		maxCos := 0.0
		for e := 0; e < c.NumB; e++ {
			for f := 0; f < c.NumB; f++ {
				var dot, ne, nf float64
				for i := 0; i < n; i++ {
					dot += b[e*n+i] * b[f*n+i]
					ne += b[e*n+i] * b[e*n+i]
					nf += b[f*n+i] * b[f*n+i]
				}
				want := 0.0
				if ne > 0 && nf > 0 {
					want = dot / math.Sqrt(ne*nf)
				}
				if math.Abs(p.Cosine[e][f]-want) > 1e-12 {
					t.Errorf("%s: cos(B_%d, B_%d) = %g, want %g", p.B, e, f, p.Cosine[e][f], want)
				}
				if e != f {
					maxCos = math.Max(maxCos, math.Abs(want))
				}
			}
		}
		if math.Abs(p.MaxAbsCosine-maxCos) > 1e-12 {
			t.Errorf("%s: max |cos| %g, want %g", p.B, p.MaxAbsCosine, maxCos)
		}
		mm := mat.NewDense(len(p.Sites), c.NumB, nil)
		var tv float64
		for i, path := range p.Sites {
			mm.SetRow(i, means[path])
			for _, other := range p.Sites[:i] {
				var d float64
				for e := range means[path] {
					d += math.Abs(means[path][e]-means[other][e]) / 2
				}
				tv = math.Max(tv, d)
			}
		}
		if math.Abs(p.MaxSiteDistance-tv) > 1e-12 {
			t.Errorf("%s: largest site distance %g, want %g", p.B, p.MaxSiteDistance, tv)
		}
		var mtm mat.SymDense
		mtm.SymOuterK(1, mm.T())
		var eig mat.EigenSym
		if !eig.Factorize(&mtm, false) {
			t.Fatal("eigen decomposition failed")
		}
		ev := eig.Values(nil) // increasing
		for i, sv := range p.MixingSingularValues {
			want := math.Sqrt(math.Max(ev[len(ev)-1-i], 0))
			if math.Abs(sv-want) > 1e-7 {
				t.Errorf("%s: mixing σ_%d = %g, from the eigenvalues of MᵀM %g", p.B, i, sv, want)
			}
		}
	}
}

func TestLilyMatchesDense(t *testing.T) {
	for _, mode := range []lilyop.Routing{lilyop.Token, lilyop.Batch} {
		t.Run(mode.String(), func(t *testing.T) {
			m := newToy(t, tensor.Float64, 3, lilyShapes...)
			lily, err := layers.NewLily(layers.LilyConfig{R: 3, StrideA: 2, NumB: 3, Scaling: 0.7, TargetModules: []string{"q", "v", "o"}, NonZeroB: true, Routing: mode})
			if err != nil {
				t.Fatal(err)
			}
			m.attach(t, lily)
			cal := m.observe(t, lily, 4, 6)
			rep, err := Analyze(m.store, lily, m.sites, cal, Options{})
			if err != nil {
				t.Fatal(err)
			}
			samples := cal.Samples()
			if n := len(samples[m.sites[0].Path]); n < 2 {
				t.Fatalf("only %d samples kept: the spread is not tested", n)
			}
			checkLily(t, m, lily, rep, cal.Mean(), samples)
			for _, su := range rep.Sites {
				if su.Mixing.Source != FromRouter || su.Mixing.Vectors != cal.Count(su.Path) {
					t.Errorf("%s: mixing from %s over %d vectors, want the router over %d", su.Path, su.Mixing.Source, su.Mixing.Vectors, cal.Count(su.Path))
				}
				if su.Rank != min(3, su.DIn, su.DOut) {
					t.Errorf("%s: random factors of rank 3 gave numerical rank %d", su.Path, su.Rank)
				}
			}
			if rep.Summary.Lily == nil || rep.Summary.Lily.NumB != 3 || len(rep.Summary.Lily.MixingRanks) != 3 {
				t.Errorf("summary %+v", rep.Summary.Lily)
			}
		})
	}
}

// TestLilyDegenerate covers B = 0 (initialisation), a rank-deficient A,
// frozen mixing and a single expert.
func TestLilyDegenerate(t *testing.T) {
	cfg := layers.LilyConfig{R: 3, StrideA: 3, NumB: 3, Scaling: 2, TargetModules: []string{"q", "v", "o"}}
	t.Run("B zero", func(t *testing.T) {
		m := newToy(t, tensor.Float64, 2, lilyShapes...)
		lily, _ := layers.NewLily(cfg)
		m.attach(t, lily)
		cal := m.observe(t, lily, 2, 0)
		rep, err := Analyze(m.store, lily, m.sites, cal, Options{})
		if err != nil {
			t.Fatal(err)
		}
		checkLily(t, m, lily, rep, cal.Mean(), nil)
		for _, su := range rep.Sites {
			if su.Rank != 0 || su.EffectiveRank != 0 || su.Norm != 0 || su.RelativeNorm != 0 {
				t.Errorf("%s: B = 0 gave rank %d, effective rank %g, norm %g", su.Path, su.Rank, su.EffectiveRank, su.Norm)
			}
		}
		for _, p := range rep.Pools {
			if p.MaxAbsCosine != 0 {
				t.Errorf("%s: zero experts have max |cos| %g", p.B, p.MaxAbsCosine)
			}
		}
		// Undefined figures are reported as 0, never NaN, which JSON cannot hold.
		if _, err := json.Marshal(rep); err != nil {
			t.Errorf("the report of a zero update does not encode: %v", err)
		}
	})
	t.Run("rank-deficient A", func(t *testing.T) {
		m := newToy(t, tensor.Float64, 2, lilyShapes...)
		c := cfg
		c.NonZeroB = true
		lily, _ := layers.NewLily(c)
		m.attach(t, lily)
		// Every A's columns become multiples of its first: rank 1.
		for _, s := range m.sites {
			name := lily.PEFTNames()[s.Path+".lily_A.weight"]
			a := m.param(t, name)
			for i := 0; i < s.DIn; i++ {
				a[i*3+1], a[i*3+2] = -2*a[i*3], 0.5*a[i*3]
			}
			m.setParam(t, name, a)
		}
		cal := m.observe(t, lily, 2, 4)
		rep, err := Analyze(m.store, lily, m.sites, cal, Options{})
		if err != nil {
			t.Fatal(err)
		}
		checkLily(t, m, lily, rep, cal.Mean(), cal.Samples())
		for _, su := range rep.Sites {
			if su.Rank != 1 || math.Abs(su.EffectiveRank-1) > 1e-6 {
				t.Errorf("%s: rank-1 A gave rank %d, effective rank %g", su.Path, su.Rank, su.EffectiveRank)
			}
		}
	})
	t.Run("frozen", func(t *testing.T) {
		m := newToy(t, tensor.Float64, 2, lilyShapes...)
		c := cfg
		c.NonZeroB = true
		lily, _ := layers.NewLily(c)
		m.attach(t, lily)
		frozen := map[string][]float64{}
		for i, s := range m.sites {
			frozen[s.Path] = []float64{0.2, 0.5 + 0.05*float64(i), 0.3 - 0.05*float64(i)}
		}
		if err := lily.FreezeMixing(frozen); err != nil {
			t.Fatal(err)
		}
		rep, err := Analyze(m.store, lily, m.sites, nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		checkLily(t, m, lily, rep, frozen, nil)
		if rep.Sites[0].Mixing.Source != FromFrozen {
			t.Errorf("source %s, want frozen", rep.Sites[0].Mixing.Source)
		}
	})
	t.Run("one expert", func(t *testing.T) {
		m := newToy(t, tensor.Float64, 2, lilyShapes...)
		c := cfg
		c.NonZeroB, c.NumB, c.Uniform = true, 1, true
		lily, err := layers.NewLily(c)
		if err != nil {
			t.Fatal(err)
		}
		m.attach(t, lily)
		rep, err := Analyze(m.store, lily, m.sites, nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		ones := map[string][]float64{}
		for _, s := range m.sites {
			ones[s.Path] = []float64{1}
		}
		checkLily(t, m, lily, rep, ones, nil)
		for _, p := range rep.Pools {
			if p.MixingRank != 1 || p.MaxSiteDistance != 0 || p.Cosine[0][0] != 1 && math.Abs(p.Cosine[0][0]-1) > 1e-15 {
				t.Errorf("%s: one expert gave mixing rank %d, distance %g, cos %v", p.B, p.MixingRank, p.MaxSiteDistance, p.Cosine)
			}
		}
		if rep.Sites[0].Mixing.Source != FromUniform || rep.Sites[0].Mixing.Entropy != 0 {
			t.Errorf("mixing %+v, want uniform with entropy 0", rep.Sites[0].Mixing)
		}
	})
}

func TestLoRAMatchesDense(t *testing.T) {
	for _, tc := range []struct {
		name      string
		nonZeroB  bool
		deficient bool
	}{{"random", true, false}, {"B zero", false, false}, {"rank-deficient A", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			m := newToy(t, tensor.Float64, 2, shape{"q", 6, 5}, shape{"v", 2, 9})
			const r = 4
			lora, _ := layers.NewLoRA(layers.LoRAConfig{R: r, Alpha: 6, TargetModules: []string{"q", "v"}, NonZeroB: tc.nonZeroB})
			m.attach(t, lora)
			if tc.deficient {
				for _, s := range m.sites {
					a := m.param(t, s.Path+".lora_A.weight")
					for i := 0; i < s.DIn; i++ {
						a[i*r+2], a[i*r+3] = a[i*r]+a[i*r+1], a[i*r]-a[i*r+1]
					}
					m.setParam(t, s.Path+".lora_A.weight", a)
				}
			}
			rep, err := Analyze(m.store, lora, m.sites, nil, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Method != "lora" || len(rep.Sites) != 4 || rep.Pools != nil || rep.Summary.Lily != nil {
				t.Fatalf("report %+v", rep)
			}
			var meanRank float64
			for i, s := range m.sites {
				su := rep.Sites[i]
				a, b := m.param(t, s.Path+".lora_A.weight"), m.param(t, s.Path+".lora_B.weight")
				dw := denseWant(t, denseDelta(a, b, []float64{1}, s.DIn, r, s.DOut, 6.0/r), 0x1p-52)
				check(t, s.Path, su.SingularValues, su.Rank, su.EffectiveRank, su.Norm, dw)
				wantRank := min(r, s.DIn, s.DOut)
				switch {
				case !tc.nonZeroB:
					wantRank = 0
				case tc.deficient:
					wantRank = min(2, s.DIn)
				}
				if su.Rank != wantRank {
					t.Errorf("%s: numerical rank %d, want %d", s.Path, su.Rank, wantRank)
				}
				meanRank += float64(su.Rank) / 4
			}
			if rep.Summary.MeanRank != meanRank {
				t.Errorf("summary mean rank %g, want %g", rep.Summary.MeanRank, meanRank)
			}
		})
	}
}

// TestRankRule checks the default tolerance at float32 precision and an
// explicit one.
func TestRankRule(t *testing.T) {
	m := newToy(t, tensor.Float32, 1, shape{"q", 6, 10})
	lora, _ := layers.NewLoRA(layers.LoRAConfig{R: 3, Alpha: 3, TargetModules: []string{"q"}, NonZeroB: true})
	m.attach(t, lora)
	rep, err := Analyze(m.store, lora, m.sites, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	su := rep.Sites[0]
	if want := 10 * 0x1p-23 * su.SingularValues[0]; su.RankThreshold != want || !strings.Contains(rep.RankRule, "float32") {
		t.Errorf("float32 threshold %g (rule %q), want %g", su.RankThreshold, rep.RankRule, want)
	}
	// A tolerance between σ_2/σ_1 and σ_3/σ_1 leaves rank 2.
	sv := su.SingularValues
	tol := (sv[1] + sv[2]) / 2 / sv[0]
	rep, err = Analyze(m.store, lora, m.sites, nil, Options{RankTol: tol})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sites[0].Rank != 2 || !strings.Contains(rep.RankRule, fmt.Sprintf("%g", tol)) {
		t.Errorf("rank %d at tolerance %g (rule %q), want 2", rep.Sites[0].Rank, tol, rep.RankRule)
	}
}

func TestAnalyzeErrors(t *testing.T) {
	m := newToy(t, tensor.Float64, 2, shape{"q", 4, 4})
	lily, _ := layers.NewLily(layers.LilyConfig{R: 2, StrideA: 1, NumB: 2, Scaling: 1, TargetModules: []string{"q"}})
	for _, tc := range []struct {
		name string
		run  func() error
		want string
	}{
		{"not attached", func() error {
			if _, err := lily.Layout(m.sites); err != nil {
				return err
			}
			_, err := Analyze(m.store, lily, m.sites, &layers.MixingCalibrator{}, Options{})
			return err
		}, "attach or load the adapter"},
		{"no observations", func() error {
			m.attach(t, lily)
			_, err := Analyze(m.store, lily, m.sites, nil, Options{})
			return err
		}, "MixingCalibrator.Observe"},
		{"none", func() error {
			_, err := Analyze(m.store, layers.None{}, m.sites, nil, Options{})
			return err
		}, "use Lily or LoRA"},
		{"bad tolerance", func() error {
			_, err := Analyze(m.store, lily, m.sites, nil, Options{RankTol: -1})
			return err
		}, "RankTol"},
		{"no adapted site", func() error {
			_, err := Analyze(m.store, lily, nil, nil, Options{})
			return err
		}, "adapts none"},
		{"merged", func() error {
			cal := m.observe(t, lily, 1, 0)
			if err := lily.FreezeMixing(cal.Mean()); err != nil {
				return err
			}
			if err := layers.Merge(m.store, lily, m.sites); err != nil {
				return err
			}
			_, err := Analyze(m.store, lily, m.sites, nil, Options{})
			return err
		}, "unmerge"},
	} {
		err := tc.run()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestWritePlot(t *testing.T) {
	m := newToy(t, tensor.Float64, 3, shape{"q", 6, 5}, shape{"v", 6, 5})
	lora, _ := layers.NewLoRA(layers.LoRAConfig{R: 2, Alpha: 2, TargetModules: []string{"q", "v"}, NonZeroB: true})
	m.attach(t, lora)
	rep, err := Analyze(m.store, lora, m.sites, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "updates.png")
	if err := WritePlot(path, "toy", rep); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Error("not a PNG")
	}
	if err := WritePlot(path, "toy", &Report{}); err == nil {
		t.Error("an empty report was plotted")
	}
}

func TestMeasure(t *testing.T) {
	m := newToy(t, tensor.Float64, 2, shape{"q", 6, 5})
	lily, _ := layers.NewLily(layers.LilyConfig{R: 2, StrideA: 1, NumB: 2, Scaling: 1, TargetModules: []string{"q"}, NonZeroB: true, Routing: lilyop.Token})
	m.attach(t, lily)
	dir := t.TempDir()
	observed := 0
	rep, err := Measure(m.store, lily, m.sites, func(cal *layers.MixingCalibrator) error {
		observed++
		if cal.Keep != DefaultKeep {
			t.Errorf("calibrator keeps %d, want %d", cal.Keep, DefaultKeep)
		}
		*cal = *m.observe(t, lily, 2, cal.Keep)
		return nil
	}, filepath.Join(dir, "lily.png"), "toy")
	if err != nil {
		t.Fatal(err)
	}
	if observed != 1 || rep == nil || rep.Sites[0].Mixing.Spread == nil || rep.Sites[0].Mixing.Spread.Samples != 16 {
		t.Errorf("observed %d times, report %+v", observed, rep)
	}
	if _, err := os.Stat(filepath.Join(dir, "lily.png")); err != nil {
		t.Error(err)
	}
	// LoRA needs no observation; None has nothing to measure.
	lora, _ := layers.NewLoRA(layers.LoRAConfig{R: 2, Alpha: 2, TargetModules: []string{"q"}})
	m2 := newToy(t, tensor.Float64, 1, shape{"q", 6, 5})
	m2.attach(t, lora)
	fail := func(*layers.MixingCalibrator) error { return fmt.Errorf("LoRA needs no observation") }
	if rep, err := Measure(m2.store, lora, m2.sites, fail, filepath.Join(dir, "lora.png"), "toy"); err != nil || rep == nil {
		t.Errorf("LoRA: %v, %v", rep, err)
	}
	if rep, err := Measure(m2.store, layers.None{}, m2.sites, fail, filepath.Join(dir, "none.png"), "toy"); err != nil || rep != nil {
		t.Errorf("None: %v, %v", rep, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "none.png")); err == nil {
		t.Error("None wrote a plot")
	}
}
