package adapterfile

import (
	"encoding/binary"
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
	"github.com/lilygo/lily/tensorfile"
	"gorgonia.org/tensor"
)

// model makes a store with frozen query/value weights of n layers, a
// trainable classifier head, and the sites.
func model(t testing.TB, dt tensor.Dtype, n, d int) (*layers.Store, []layers.Site) {
	t.Helper()
	s, err := layers.NewStore(dt)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	var sites []layers.Site
	for l := 0; l < n; l++ {
		for _, tg := range []string{"query", "value"} {
			path := fmt.Sprintf("roberta.encoder.layer.%d.attention.self.%s", l, tg)
			if _, err := s.New(layers.ParamSpec{Name: path + ".weight", Shape: tensor.Shape{d, d}, Init: layers.Normal(0.02), Torch: layers.Transposed}, false, rng); err != nil {
				t.Fatal(err)
			}
			sites = append(sites, layers.Site{Layer: l, Target: tg, Path: path, DIn: d, DOut: d, Weight: path + ".weight"})
		}
	}
	if _, err := s.New(layers.ParamSpec{Name: "classifier.dense.weight", Shape: tensor.Shape{d, 3}, Init: layers.Normal(1), Torch: layers.Transposed}, true, rng); err != nil {
		t.Fatal(err)
	}
	if _, err := s.New(layers.ParamSpec{Name: "classifier.dense.bias", Shape: tensor.Shape{3}, Init: layers.Normal(1)}, true, rng); err != nil {
		t.Fatal(err)
	}
	return s, sites
}

// lilyAdapter returns a Lily adapter with sequence routing (which PEFT
// lacks).
func lilyAdapter(t testing.TB) *layers.Lily {
	return lilyWith(t, lilyop.Sequence)
}

func lilyWith(t testing.TB, routing lilyop.Routing) *layers.Lily {
	l, err := layers.NewLily(layers.LilyConfig{R: 2, StrideA: 2, NumB: 3, Scaling: 0.5, TargetModules: []string{"query", "value"}, NonZeroB: true, Routing: routing})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func sameStores(t *testing.T, a, b *layers.Store) {
	t.Helper()
	for _, p := range a.Params() {
		q, ok := b.Get(p.Name)
		if !ok {
			t.Fatalf("%s missing after load", p.Name)
		}
		if q.Trainable != p.Trainable {
			t.Errorf("%s: trainable %v after load, was %v", p.Name, q.Trainable, p.Trainable)
		}
		x, y := layers.Float64s(p.Value), layers.Float64s(q.Value)
		for i := range x {
			if x[i] != y[i] {
				t.Fatalf("%s[%d]: %v after load, was %v", p.Name, i, y[i], x[i])
			}
		}
	}
}

func TestRoundTripBitExact(t *testing.T) {
	for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
		for _, peft := range []bool{false, true} {
			// PEFT computes only batch routing, so only a batch-routed Lily
			// has a PEFT layout.
			routing := lilyop.Sequence
			if peft {
				routing = lilyop.Batch
			}
			for _, mk := range []func() layers.Adapter{
				func() layers.Adapter { return lilyWith(t, routing) },
				func() layers.Adapter {
					l, _ := layers.NewLoRA(layers.LoRAConfig{R: 2, Alpha: 4, TargetModules: []string{"value"}, NonZeroB: true})
					return l
				},
				func() layers.Adapter { return layers.None{} },
			} {
				a := mk()
				name := fmt.Sprintf("%s/%v/peft=%t", a.Method(), dt, peft)
				src, sites := model(t, dt, 5, 4)
				if err := layers.Attach(src, a, sites, rand.New(rand.NewPCG(2, 2))); err != nil {
					t.Fatal(err)
				}
				dir := t.TempDir()
				if err := Save(dir, src, a, sites, Options{PEFTLayout: peft, TaskType: "SEQ_CLS"}); err != nil {
					t.Fatalf("%s: %+v", name, err)
				}
				dst, sites2 := model(t, dt, 5, 4)
				for _, n := range []string{"classifier.dense.weight", "classifier.dense.bias"} {
					p, _ := dst.Get(n)
					setValues(p, make([]float64, p.Value.Shape().TotalSize()))
				}
				back, err := Load(dir, dst, sites2)
				if err != nil {
					t.Fatalf("%s: %+v", name, err)
				}
				if back.Method() != a.Method() {
					t.Fatalf("%s: loaded a %s adapter", name, back.Method())
				}
				sameStores(t, src, dst)
				if l, ok := back.(*layers.Lily); ok && l.Config().Routing != routing {
					t.Errorf("%s: routing not restored", name)
				}
			}
		}
	}
}

// The file uses PEFT's key names and PyTorch shapes; the shared layout stores
// each shared tensor once, PEFT's repeats it per layer.
func TestPEFTKeysAndShapes(t *testing.T) {
	src, sites := model(t, tensor.Float32, 5, 4)
	lily := lilyWith(t, lilyop.Batch)
	if err := layers.Attach(src, lily, sites, rand.New(rand.NewPCG(2, 2))); err != nil {
		t.Fatal(err)
	}
	count := func(peft bool) map[string][]int {
		dir := t.TempDir()
		if err := Save(dir, src, lily, sites, Options{PEFTLayout: peft}); err != nil {
			t.Fatal(err)
		}
		f, err := tensorfile.Open(filepath.Join(dir, WeightsName))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]int{}
		for _, n := range f.Names() {
			out[n], _ = f.Shape(n)
		}
		return out
	}
	once, rep := count(false), count(true)
	// 5 layers, stride 2: 3 A's per target; 1 B per target; 5 routers per target; 2 head tensors.
	if len(once) != 2*(3+1+5)+2 {
		t.Errorf("shared-once file has %d tensors: %v", len(once), once)
	}
	if len(rep) != 2*5*3+2 {
		t.Errorf("PEFT-layout file has %d tensors", len(rep))
	}
	pre := Prefix + "roberta.encoder.layer.3.attention.self.query."
	for key, want := range map[string][]int{"lily_A.weight": {2, 4}, "lily_B.weight": {6, 4}, "lily_router.weight": {3, 2}} {
		if got := rep[pre+key]; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s%s has shape %v, PEFT uses %v", pre, key, got, want)
		}
	}
	if _, ok := once[pre+"lily_A.weight"]; ok {
		t.Error("layer 3 shares layer 2's A; the shared-once file must not repeat it")
	}
	if got := rep[Prefix+"classifier.dense.weight"]; fmt.Sprint(got) != "[3 4]" {
		t.Errorf("head weight saved as %v, PyTorch uses [out, in] = [3 4]", got)
	}
	cfg, err := ReadConfig(func() string { d := t.TempDir(); Save(d, src, lily, sites, Options{}); return d }())
	if err != nil || cfg.PEFTType != "LILY" || cfg.StrideA != 2 || cfg.NumB != 3 || fmt.Sprint(cfg.ModulesToSave) != "[classifier.dense]" {
		t.Errorf("config %+v, %v", cfg, err)
	}
}

// The PEFT layout's config holds only PEFT's keys (PEFT warns about any
// other), and Save refuses it for a Lily adapter PEFT cannot compute.
func TestPEFTLayoutConfig(t *testing.T) {
	for _, a := range []layers.Adapter{
		lilyWith(t, lilyop.Batch),
		func() layers.Adapter {
			l, _ := layers.NewLoRA(layers.LoRAConfig{R: 2, Alpha: 4, TargetModules: []string{"value"}})
			return l
		}(),
	} {
		src, sites := model(t, tensor.Float32, 3, 4)
		if err := layers.Attach(src, a, sites, rand.New(rand.NewPCG(2, 2))); err != nil {
			t.Fatal(err)
		}
		for _, peft := range []bool{false, true} {
			dir := t.TempDir()
			if err := Save(dir, src, a, sites, Options{PEFTLayout: peft}); err != nil {
				t.Fatalf("%s: %+v", a.Method(), err)
			}
			b, err := os.ReadFile(filepath.Join(dir, ConfigName))
			if err != nil {
				t.Fatal(err)
			}
			if has := strings.Contains(string(b), `"lily_go"`); has == peft {
				t.Errorf("%s, PEFT layout %t: config has lily_go %t:\n%s", a.Method(), peft, has, b)
			}
		}
	}
	frozen := lilyWith(t, lilyop.Batch)
	src, sites := model(t, tensor.Float32, 3, 4)
	if err := layers.Attach(src, frozen, sites, rand.New(rand.NewPCG(2, 2))); err != nil {
		t.Fatal(err)
	}
	mix := map[string][]float64{}
	for _, s := range sites {
		mix[s.Path] = []float64{0.2, 0.3, 0.5}
	}
	if err := frozen.FreezeMixing(mix); err != nil {
		t.Fatal(err)
	}
	refused := map[string]layers.Adapter{"sequence routing": lilyWith(t, lilyop.Sequence), "token routing": lilyWith(t, lilyop.Token), "frozen mixing": frozen}
	for _, c := range []layers.LilyConfig{
		{R: 2, StrideA: 1, NumB: 2, Scaling: 1, TargetModules: []string{"query"}, MaskBatch: true},
		{R: 2, StrideA: 1, NumB: 2, Scaling: 1, TargetModules: []string{"query"}, Uniform: true},
	} {
		l, err := layers.NewLily(c)
		if err != nil {
			t.Fatal(err)
		}
		refused[map[bool]string{true: "mask_batch", false: "uniform"}[c.MaskBatch]] = l
	}
	for what, a := range refused {
		s, sites := model(t, tensor.Float32, 3, 4)
		if err := layers.Attach(s, a, sites, rand.New(rand.NewPCG(2, 2))); err != nil {
			t.Fatal(err)
		}
		err := Save(t.TempDir(), s, a, sites, Options{PEFTLayout: true})
		if err == nil || !strings.Contains(err.Error(), what) || !strings.Contains(err.Error(), "without PEFTLayout") {
			t.Errorf("%s: PEFT layout error %v, want one naming %q and the fix", what, err, what)
		}
	}
}

// PEFT adds its task's head to modules_to_save itself and cannot load a
// file that also lists a module inside that head.
func TestModulesToSaveForTask(t *testing.T) {
	for _, c := range []struct{ module, task, want string }{
		{"classifier.dense", "SEQ_CLS", "classifier"},
		{"classifier.out_proj", "TOKEN_CLS", "classifier"},
		{"model.score", "SEQ_CLS", "model.score"},
		{"qa_outputs", "QUESTION_ANS", "qa_outputs"},
		{"classifier.dense", "", "classifier.dense"},
		{"classifier.dense", "CAUSAL_LM", "classifier.dense"},
		{"pooler.dense", "SEQ_CLS", "pooler.dense"},
	} {
		if got := savedModule(c.module, c.task); got != c.want {
			t.Errorf("savedModule(%q, %q) = %q, want %q", c.module, c.task, got, c.want)
		}
	}
	src, sites := model(t, tensor.Float32, 2, 4)
	lily := lilyWith(t, lilyop.Batch)
	if err := layers.Attach(src, lily, sites, rand.New(rand.NewPCG(2, 2))); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := Save(dir, src, lily, sites, Options{PEFTLayout: true, TaskType: "SEQ_CLS"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := ReadConfig(dir)
	if err != nil || fmt.Sprint(cfg.ModulesToSave) != "[classifier]" {
		t.Errorf("SEQ_CLS modules_to_save %v (%v), want [classifier]", cfg.ModulesToSave, err)
	}
}

func writeFile(t *testing.T, dir, name string, tensors []tensorfile.Tensor) {
	t.Helper()
	if err := tensorfile.Write(filepath.Join(dir, name), tensors, nil); err != nil {
		t.Fatal(err)
	}
}

func TestLoadErrors(t *testing.T) {
	src, sites := model(t, tensor.Float64, 4, 4)
	lily := lilyWith(t, lilyop.Batch)
	if err := layers.Attach(src, lily, sites, rand.New(rand.NewPCG(2, 2))); err != nil {
		t.Fatal(err)
	}
	good := t.TempDir()
	if err := Save(good, src, lily, sites, Options{PEFTLayout: true}); err != nil {
		t.Fatal(err)
	}
	f, _ := tensorfile.Open(filepath.Join(good, WeightsName))
	all := func(skip string, edit func(*tensorfile.Tensor)) string {
		dir := t.TempDir()
		b, _ := os.ReadFile(filepath.Join(good, ConfigName))
		os.WriteFile(filepath.Join(dir, ConfigName), b, 0o644)
		var ts []tensorfile.Tensor
		for _, n := range f.Names() {
			if n == skip {
				continue
			}
			tt, _ := f.Tensor(n)
			if edit != nil {
				edit(&tt)
			}
			ts = append(ts, tt)
		}
		writeFile(t, dir, WeightsName, ts)
		return dir
	}
	fresh := func() *layers.Store { s, _ := model(t, tensor.Float64, 4, 4); return s }
	key := Prefix + "roberta.encoder.layer.0.attention.self.value.lily_B.weight"
	router := Prefix + "roberta.encoder.layer.2.attention.self.value.lily_router.weight"
	cases := map[string]struct {
		dir  string
		want string
	}{
		"missing": {all(router, nil), "missing keys [" + router + "]"},
		"unexpected": {all("", func(tt *tensorfile.Tensor) {
			if tt.Name == key {
				tt.Name = Prefix + "bogus.weight"
			}
		}), "unexpected keys [" + Prefix + "bogus.weight]"},
		"shape": {all("", func(tt *tensorfile.Tensor) {
			if tt.Name == key {
				tt.Shape = []int{tt.Shape[1], tt.Shape[0]}
			}
		}), key + " has shape"},
		"NaN": {all("", func(tt *tensorfile.Tensor) {
			if tt.Name == key {
				tt.Data = append([]byte(nil), tt.Data...)
				binary.LittleEndian.PutUint64(tt.Data[8:], math.Float64bits(math.NaN()))
			}
		}), key + " holds NaN at element 1"},
		"-Inf": {all("", func(tt *tensorfile.Tensor) {
			if tt.Name == key {
				tt.Data = append([]byte(nil), tt.Data...)
				binary.LittleEndian.PutUint64(tt.Data, math.Float64bits(math.Inf(-1)))
			}
		}), key + " holds -Inf at element 0"},
		"inconsistent copy": {all("", func(tt *tensorfile.Tensor) {
			if tt.Name == Prefix+"roberta.encoder.layer.1.attention.self.query.lily_A.weight" {
				tt.Data = append([]byte(nil), tt.Data...)
				tt.Data[3] ^= 0x40
			}
		}), "different values"},
	}
	for name, c := range cases {
		s := fresh()
		before := fmt.Sprint(len(s.Params()))
		_, err := Load(c.dir, s, sites)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", name, err, c.want)
		}
		if fmt.Sprint(len(s.Params())) != before {
			t.Errorf("%s: a failed load changed the store", name)
		}
	}
	// Config problems.
	for cfg, want := range map[string]string{
		`{"peft_type":"IA3"}`:                         "not supported",
		`{"peft_type":"LILY","target_modules":".*q"}`: "regular expression",
		`{"peft_type":"LILY","r":0,"stride_A":1,"num_B":2,"target_modules":["query"]}`: "r = 0",
		`{not json`: "parsing",
		`{"peft_type":"LORA","r":2,"target_modules":["value"],"use_dora":true}`:                                  "use_dora is true",
		`{"peft_type":"LORA","r":2,"target_modules":["value"],"alpha_pattern":{"value":4}}`:                      "alpha_pattern is",
		`{"peft_type":"LILY","r":2,"stride_A":1,"num_B":2,"target_modules":["query"],"layers_to_transform":[0]}`: "layers_to_transform is [0]",
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, ConfigName), []byte(cfg), 0o644)
		if _, err := Load(dir, fresh(), sites); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %s: error %v, want %q", cfg, err, want)
		}
	}
	if _, err := Load(t.TempDir(), fresh(), sites); err == nil {
		t.Error("an empty directory must fail")
	}
	// The good weights under a config with an absurd rank or scaling: the
	// rank fails on the first shape, before anything of its size is
	// allocated; the scalings are refused.
	for field, v := range map[string]any{"r": 1 << 40, "scaling": 1e300, "num_B": 1 << 40} {
		var cfg map[string]any
		b, _ := os.ReadFile(filepath.Join(good, ConfigName))
		if err := json.Unmarshal(b, &cfg); err != nil {
			t.Fatal(err)
		}
		cfg[field] = v
		b, _ = json.Marshal(cfg)
		dir := all("", nil)
		os.WriteFile(filepath.Join(dir, ConfigName), b, 0o644)
		want := map[string]string{"r": "has shape", "num_B": "has shape", "scaling": "scaling 1e+300 is not a number within ±1e+06"}[field]
		if _, err := Load(dir, fresh(), sites); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s %v: %v, want %q", field, v, err, want)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ConfigName), []byte(`{"peft_type":"LORA","r":1,"lora_alpha":1e9,"target_modules":["query"]}`), 0o644)
	if _, err := Load(dir, fresh(), sites); err == nil || !strings.Contains(err.Error(), "scaling 1e+09") {
		t.Errorf("LoRA alpha/r 1e9: %v", err)
	}
}

// A truncated or corrupted weights file is an error, never a panic.
func TestCorruptWeights(t *testing.T) {
	src, sites := model(t, tensor.Float32, 2, 4)
	lily := lilyAdapter(t)
	layers.Attach(src, lily, sites, rand.New(rand.NewPCG(2, 2)))
	dir := t.TempDir()
	if err := Save(dir, src, lily, sites, Options{}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, WeightsName))
	for n := 0; n < len(data); n += 7 {
		os.WriteFile(filepath.Join(dir, WeightsName), data[:n], 0o644)
		s, _ := model(t, tensor.Float32, 2, 4)
		if _, err := Load(dir, s, sites); err == nil {
			t.Fatalf("a file truncated to %d of %d bytes loaded", n, len(data))
		}
	}
}

func FuzzLoad(f *testing.F) {
	src, sites := model(f, tensor.Float32, 2, 3)
	lily := lilyAdapter(f)
	layers.Attach(src, lily, sites, rand.New(rand.NewPCG(2, 2)))
	dir := f.TempDir()
	if err := Save(dir, src, lily, sites, Options{}); err != nil {
		f.Fatal(err)
	}
	weights, _ := os.ReadFile(filepath.Join(dir, WeightsName))
	cfg, _ := os.ReadFile(filepath.Join(dir, ConfigName))
	f.Add(weights, cfg)
	f.Fuzz(func(t *testing.T, w, c []byte) {
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, WeightsName), w, 0o644)
		os.WriteFile(filepath.Join(d, ConfigName), c, 0o644)
		s, sites := model(t, tensor.Float32, 2, 3)
		Load(d, s, sites) // must not panic
	})
}
