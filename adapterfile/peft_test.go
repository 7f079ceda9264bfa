package adapterfile

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lilygo/lily/graphs/llama"
	"github.com/lilygo/lily/graphs/roberta"
	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/tensorfile"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// This file checks adapter files against Hugging Face PEFT itself, in both
// directions, with reference vectors that testdata/peft/make_reference.py
// computed with PyTorch and PEFT (docs/peft.md says how and with which
// versions):
//
//   - testdata/peft/in holds what this package hands to PEFT: a tiny LLaMA
//     and a tiny RoBERTa as Hugging Face directories, our adapters for them,
//     and the input ids. TestPEFTInputsUpToDate regenerates it and
//     -update_peft_inputs rewrites it.
//   - testdata/peft/out holds what came back: the adapters PEFT created and
//     trained (saved with save_pretrained), report.json (versions, PEFT's
//     warnings and key checks) and reference.safetensors (logits and
//     gradients PyTorch computed for every adapter of both kinds).

var updatePEFTInputs = flag.Bool("update_peft_inputs", false,
	"rewrite testdata/peft/in (base models, our adapters, inputs); then rerun testdata/peft/make_reference.py where PyTorch and PEFT are installed")

const (
	peftIn  = "testdata/peft/in"
	peftOut = "testdata/peft/out"
)

// peftLlamaConfig is the tiny LLaMA: grouped-query attention (4 heads, 2
// key/value heads), 4 layers so that stride_A 3 leaves an uneven last
// block, transformers' default rope_theta and rms_norm_eps.
func peftLlamaConfig() llama.Config {
	return llama.Config{Dim: 16, HiddenDim: 24, NLayers: 4, NHeads: 4, NKVHeads: 2, VocabSize: 64, MaxSeqLen: 32,
		NormEps: 1e-6, RopeTheta: 10000}
}

// peftRobertaConfig is the tiny RoBERTa with a 3-label classifier.
func peftRobertaConfig() roberta.Config {
	c := roberta.BaseConfig()
	c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.IntermediateSize, c.MaxPositionEmbeddings =
		50, 16, 3, 2, 32, 16
	return c
}

const peftLabels = 3

// peftInputs are the batches both sides run: two sequences each, the second
// padded, so that batch routing mixes them. LLaMA pads with id 0 and runs
// without an attention mask (causal attention alone; padding then takes
// part in batch routing as in PEFT); RoBERTa pads with id 1 and masks.
type peftInputs struct {
	Llama struct {
		InputIDs [][]int `json:"input_ids"`
		Lengths  []int   `json:"lengths"`
	} `json:"llama"`
	Roberta struct {
		InputIDs      [][]int `json:"input_ids"`
		AttentionMask [][]int `json:"attention_mask"`
	} `json:"roberta"`
	// LossWeights says how the scalar whose gradients are compared is made
	// from the logits: loss = Σ_i logits_i · sin(0.7·i + 0.3), i the
	// row-major index.
	LossWeights string `json:"loss_weights"`
}

// newPEFTInputs returns the reference batches.
func newPEFTInputs() peftInputs {
	var in peftInputs
	in.Llama.InputIDs = [][]int{{5, 17, 42, 8, 63, 21, 9}, {33, 2, 50, 11, 7, 0, 0}}
	in.Llama.Lengths = []int{7, 5}
	in.Roberta.InputIDs = [][]int{{0, 23, 8, 41, 17, 2}, {0, 35, 12, 2, 1, 1}}
	in.Roberta.AttentionMask = [][]int{{1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 0, 0}}
	in.LossWeights = "sin(0.7*i+0.3)"
	return in
}

// lossWeight is the weight of logit i in the loss.
func lossWeight(i int) float64 { return math.Sin(0.7*float64(i) + 0.3) }

// peftCase is one adapter of ours handed to PEFT.
type peftCase struct {
	name, model string
	adapter     func() (layers.Adapter, error)
	peftLayout  bool
}

// oursCases are our adapters that make_reference.py hands to PEFT.
func oursCases() []peftCase {
	lily := func(c layers.LilyConfig) func() (layers.Adapter, error) {
		return func() (layers.Adapter, error) { return layers.NewLily(c) }
	}
	lora := func(c layers.LoRAConfig) func() (layers.Adapter, error) {
		return func() (layers.Adapter, error) { return layers.NewLoRA(c) }
	}
	llamaLily := layers.LilyConfig{R: 4, StrideA: 3, NumB: 3, Scaling: 0.8, TargetModules: []string{"q_proj", "k_proj", "down_proj"}, NonZeroB: true}
	return []peftCase{
		{"llama-lily", "llama", lily(llamaLily), true},
		// The same adapter in our default layout: shared tensors once.
		{"llama-lily-once", "llama", lily(llamaLily), false},
		{"llama-lora", "llama", lora(layers.LoRAConfig{R: 3, Alpha: 5, RSLoRA: true, TargetModules: []string{"v_proj", "o_proj", "up_proj"}, NonZeroB: true}), true},
		{"roberta-lily", "roberta", lily(layers.LilyConfig{R: 4, StrideA: 2, NumB: 2, Scaling: 0.5, TargetModules: []string{"query", "value"}, NonZeroB: true}), true},
		{"roberta-lora", "roberta", lora(layers.LoRAConfig{R: 4, Alpha: 8, TargetModules: []string{"query", "value"}, NonZeroB: true}), true},
	}
}

// randomize overwrites every parameter of s with values from seed: norm
// weights 1 ± 0.3, everything else ± 0.5, large enough for every part of
// the model to matter.
func randomize(s *layers.Store, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, p := range s.Params() {
		v := make([]float64, p.Value.Shape().TotalSize())
		for i := range v {
			v[i] = rng.Float64() - 0.5
			if strings.HasSuffix(strings.ToLower(p.Name), "norm.weight") {
				v[i] = 1 + 0.6*v[i]
			}
		}
		setValues(p, v)
	}
}

// peftModel is a base model loaded from testdata/peft/in for one dtype.
type peftModel struct {
	kind    string
	llama   llama.Config
	roberta roberta.Config
	store   *layers.Store
	sites   []layers.Site
}

// loadPEFTBase loads the base model kind ("llama" or "roberta") from dir;
// every parameter is frozen except RoBERTa's classifier head, which the
// adapters train as PEFT's modules_to_save.
func loadPEFTBase(dir, kind string, dt tensor.Dtype) (*peftModel, error) {
	m := &peftModel{kind: kind}
	path := filepath.Join(dir, kind)
	switch kind {
	case "llama":
		c, s, err := llama.LoadHF(path, dt)
		if err != nil {
			return nil, err
		}
		m.llama, m.store, m.sites = c, s, c.Sites()
	case "roberta":
		ck, err := roberta.Load(path, roberta.LoadOptions{Dtype: dt, Classifier: true})
		if err != nil {
			return nil, err
		}
		ck.Store.Freeze()
		for _, p := range ck.Store.Params() {
			p.Trainable = strings.HasPrefix(p.Name, "classifier.")
		}
		m.roberta, m.store, m.sites = ck.Config, ck.Store, ck.Config.Sites()
	default:
		return nil, errors.Errorf("unknown model %q", kind)
	}
	return m, nil
}

// writePEFTInputs writes testdata/peft/in's content to dir.
func writePEFTInputs(dir string) error {
	lc := peftLlamaConfig()
	ls, err := llama.NewStore(lc, tensor.Float64, 1)
	if err != nil {
		return err
	}
	randomize(ls, 1)
	if err := llama.SaveHF(filepath.Join(dir, "llama"), lc, ls); err != nil {
		return err
	}
	rc := peftRobertaConfig()
	rs, err := layers.NewStore(tensor.Float64)
	if err != nil {
		return err
	}
	if err := roberta.InitStore(rs, rc, 1); err != nil {
		return err
	}
	if err := roberta.AddClassifier(rs, rc, peftLabels, 1); err != nil {
		return err
	}
	randomize(rs, 2)
	if err := roberta.Save(filepath.Join(dir, "roberta"), rs, rc); err != nil {
		return err
	}
	for i, c := range oursCases() {
		m, err := loadPEFTBase(dir, c.model, tensor.Float64)
		if err != nil {
			return err
		}
		// The saved head differs from the base model's, so that a loader
		// that ignored modules_to_save would be caught.
		rng := rand.New(rand.NewPCG(3, uint64(i)))
		for _, p := range m.store.Trainable() {
			v := layers.Float64s(p.Value)
			for j := range v {
				v[j] += 0.6*rng.Float64() - 0.3
			}
			setValues(p, v)
		}
		a, err := c.adapter()
		if err != nil {
			return err
		}
		// Both llama-lily layouts hold the same values: same seed.
		seed := uint64(i)
		if c.name == "llama-lily-once" {
			seed = 0
		}
		if err := layers.Attach(m.store, a, m.sites, rand.New(rand.NewPCG(4, seed))); err != nil {
			return err
		}
		task := map[string]string{"llama": "CAUSAL_LM", "roberta": "SEQ_CLS"}[c.model]
		if err := Save(filepath.Join(dir, "ours", c.name), m.store, a, m.sites, Options{PEFTLayout: c.peftLayout, TaskType: task}); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(newPEFTInputs(), "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(filepath.Join(dir, "inputs.json"), append(b, '\n'))
}

// The committed inputs are exactly what writePEFTInputs makes, so the
// reference vectors stay reproducible from this file and the script.
func TestPEFTInputsUpToDate(t *testing.T) {
	if *updatePEFTInputs {
		if err := os.RemoveAll(peftIn); err != nil {
			t.Fatal(err)
		}
		if err := writePEFTInputs(peftIn); err != nil {
			t.Fatalf("%+v", err)
		}
	}
	fresh := t.TempDir()
	if err := writePEFTInputs(fresh); err != nil {
		t.Fatalf("%+v", err)
	}
	files := func(root string) map[string][]byte {
		out := map[string][]byte{}
		err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			rel, _ := filepath.Rel(root, p)
			out[rel] = b
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	want, got := files(fresh), files(peftIn)
	if len(got) != len(want) {
		t.Errorf("%s has %d files, the generator makes %d", peftIn, len(got), len(want))
	}
	for name, b := range want {
		if !bytes.Equal(got[name], b) {
			t.Errorf("%s/%s differs from what the generator makes; rerun with -update_peft_inputs and then make_reference.py", peftIn, name)
		}
	}
}

// peftRef is reference.safetensors and report.json.
type peftRef struct {
	f      *tensorfile.File
	report peftReport
}

// peftReport is the part of report.json the tests read.
type peftReport struct {
	Versions map[string]string `json:"versions"`
	// Cases are keyed "<case>.<f64|f32>".
	Cases map[string]struct {
		// Warnings are what PEFT and transformers said while
		// PeftModel.from_pretrained loaded the adapter.
		Warnings []string `json:"load_warnings"`
		// Missing and Unexpected compare the file's keys with PEFT's state
		// dict for the adapter (get_peft_model_state_dict).
		Missing    []string `json:"missing_keys"`
		Unexpected []string `json:"unexpected_keys"`
		// Trainable counts PEFT's trainable parameters, shared ones once.
		Trainable int `json:"trainable_params"`
	} `json:"cases"`
	Errors map[string]string `json:"errors"`
}

func readPEFTRef(t *testing.T) *peftRef {
	t.Helper()
	f, err := tensorfile.Open(filepath.Join(peftOut, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(peftOut, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	r := &peftRef{f: f}
	if err := json.Unmarshal(b, &r.report); err != nil {
		t.Fatal(err)
	}
	if len(r.report.Errors) > 0 {
		t.Fatalf("the reference run reported errors: %v", r.report.Errors)
	}
	return r
}

// values returns the reference tensor key.
func (r *peftRef) values(t *testing.T, key string) []float64 {
	t.Helper()
	v, _, err := r.f.Float64(key)
	if err != nil {
		t.Fatalf("reference: %v", err)
	}
	return v
}

// peftRun is what one model with one adapter computed.
type peftRun struct {
	logits []float64
	grads  map[string][]float64 // store name → gradient, store layout
	mix    map[string][]float64 // Lily site path → mixing vector
}

// run computes the logits of the reference inputs (and Lily's mixing
// vectors) and the gradients of Σ logits·sin(0.7·i + 0.3) with respect to
// every trainable parameter. The logits come from a graph of their own:
// in the loss graph Gorgonia's HadamardProd overwrites the logits with the
// product (see GORGONIA.md on operands overwritten in place).
func (m *peftModel) run(t *testing.T, a layers.Adapter) peftRun {
	t.Helper()
	r := peftRun{grads: map[string][]float64{}, mix: map[string][]float64{}}
	g, logits := m.graph(t, a)
	vm, err := g.Machine(nil, logits)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if err := vm.RunAll(); err != nil {
		t.Fatalf("%+v", err)
	}
	r.logits = layers.Float64s(logits.Value().(*tensor.Dense))
	for path, n := range g.Mixing() {
		r.mix[path] = layers.Float64s(n.Value().(*tensor.Dense))
	}

	g, logits = m.graph(t, a)
	shape := logits.Shape()
	w := make([]float64, shape.TotalSize())
	for i := range w {
		w[i] = lossWeight(i)
	}
	wn := g.Input("loss_weights", shape...)
	setValues(&layers.Param{Value: wn.Value().(*tensor.Dense)}, w)
	prod, err := G.HadamardProd(logits, wn)
	if err != nil {
		t.Fatal(err)
	}
	loss, err := G.Sum(prod)
	if err != nil {
		t.Fatal(err)
	}
	if vm, err = g.Machine(loss); err != nil {
		t.Fatalf("%+v", err)
	}
	if err := vm.RunAll(); err != nil {
		t.Fatalf("%+v", err)
	}
	for _, n := range g.Learnables() {
		gv, err := n.Grad()
		if err != nil {
			t.Fatalf("gradient of %s: %v", n.Name(), err)
		}
		r.grads[n.Name()] = layers.Float64s(gv.(*tensor.Dense))
	}
	return r
}

// graph builds the model with adapter a (nil: none) in an evaluation graph
// and fills its inputs with the reference batch.
func (m *peftModel) graph(t *testing.T, a layers.Adapter) (*layers.Graph, *G.Node) {
	t.Helper()
	in := newPEFTInputs()
	g := m.store.NewGraph(false)
	var logits *G.Node
	var err error
	switch m.kind {
	case "llama":
		ids := in.Llama.InputIDs
		var mod *llama.Model
		if mod, err = llama.Build(g, m.llama, a, len(ids), len(ids[0])); err == nil {
			var seqs [][]int
			for i, s := range ids {
				seqs = append(seqs, s[:in.Llama.Lengths[i]])
			}
			logits, err = mod.Logits, mod.SetBatch(seqs)
		}
	case "roberta":
		ids := in.Roberta.InputIDs
		var mod *roberta.Model
		if mod, err = roberta.Build(g, m.roberta, a, len(ids), len(ids[0]), roberta.Options{Classifier: true}); err == nil {
			logits, err = mod.Logits, mod.SetInputs(flatten(ids), flatten(in.Roberta.AttentionMask), nil)
		}
	}
	if err != nil {
		t.Fatalf("%+v", err)
	}
	return g, logits
}

func flatten(rows [][]int) []int {
	var out []int
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

// peftDtypes are the precisions compared, by the reference's names.
var peftDtypes = map[string]tensor.Dtype{"f64": tensor.Float64, "f32": tensor.Float32}

// peftTol bounds |ours − PEFT| / (1 + |PEFT|) per precision and quantity.
// In float64 both sides agree to ~1e-13. In float32 the gradients differ
// by up to 6e-5 through four LLaMA layers, about as far as either side's
// float32 gradients are from the float64 ones (checkCase checks that).
var peftTol = map[string]struct{ logits, grads float64 }{
	"f64": {1e-10, 1e-10},
	"f32": {2e-5, 2e-4},
}

// compare checks got against want and returns the largest scaled
// difference |got − want| / (1 + |want|).
func compare(t *testing.T, what string, got, want []float64, tol float64) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, the reference has %d", what, len(got), len(want))
		return math.Inf(1)
	}
	worst, at := scaledDiff(got, want)
	if !(worst <= tol) {
		t.Errorf("%s[%d]: ours %.12g, PEFT %.12g (scaled difference %.3g > %.0g)", what, at, got[at], want[at], worst, tol)
	}
	return worst
}

// scaledDiff returns the largest |a − b| / (1 + |b|) and where it is.
func scaledDiff(a, b []float64) (float64, int) {
	worst, at := 0.0, 0
	for i := range b {
		if d := math.Abs(a[i]-b[i]) / (1 + math.Abs(b[i])); d > worst || math.IsNaN(d) {
			worst, at = d, i
		}
	}
	return worst, at
}

// checkCase loads the adapter directory dir onto the base model in both
// precisions and compares logits, gradients, Lily's mixing vectors and the
// trainable parameter count with the reference of case name.
func (r *peftRef) checkCase(t *testing.T, name, kind, dir string) {
	for _, dn := range []string{"f64", "f32"} {
		m, err := loadPEFTBase(peftIn, kind, peftDtypes[dn])
		if err != nil {
			t.Fatalf("%+v", err)
		}
		base := m.run(t, nil)
		a, err := Load(dir, m.store, m.sites)
		if err != nil {
			t.Fatalf("%s: %+v", name, err)
		}
		got := m.run(t, a)
		// The adapter must matter far beyond the tolerance, or agreeing
		// with PEFT would prove nothing.
		if d, _ := scaledDiff(got.logits, base.logits); d < 1e-3 {
			t.Errorf("%s %s: the adapter moves the logits by only %.3g", name, dn, d)
		}
		key := name + "." + dn + "."
		tol := peftTol[dn]
		worst := compare(t, key+"logits", got.logits, r.values(t, key+"logits"), tol.logits)
		n := 0
		var oursF32, torchF32 float64 // float32 gradient errors against PEFT's float64 ones
		for p, g := range got.grads {
			n += len(g)
			want, err := readParam(r.f, key+"grad."+p, m.store, p, nil)
			if err != nil {
				t.Errorf("%s: PEFT has no gradient for our %s: %v", name, p, err)
				continue
			}
			// readParam turned PyTorch's layout into ours.
			worst = max(worst, compare(t, key+"grad."+p, g, want, tol.grads))
			if dn == "f32" {
				o, th := r.f32Errors(t, name, p, m, g)
				oursF32, torchF32 = max(oursF32, o), max(torchF32, th)
			}
		}
		// Our float32 gradients are about as accurate as PyTorch's.
		if oursF32 > 3*torchF32+1e-6 {
			t.Errorf("%s: our float32 gradients are off the float64 ones by %.3g, PyTorch's by %.3g", name, oursF32, torchF32)
		}
		for _, k := range r.f.Names() {
			if p, ok := strings.CutPrefix(k, key+"grad."); ok && got.grads[p] == nil {
				t.Errorf("%s: PEFT trains %s, we do not", name, p)
			}
		}
		if want := r.report.Cases[name+"."+dn].Trainable; n != want {
			t.Errorf("%s %s: %d trainable parameters, PEFT counts %d", name, dn, n, want)
		}
		if dn == "f64" {
			for path, mix := range got.mix {
				worst = max(worst, compare(t, key+"mix."+path, mix, r.values(t, key+"mix."+path), tol.logits))
			}
		}
		t.Logf("%s %s: %d logits, %d gradient tensors, %d mixing vectors; largest scaled difference from PEFT %.2g",
			name, dn, len(got.logits), len(got.grads), len(got.mix), worst)
		if dn == "f32" {
			t.Logf("%s f32 gradients against PEFT's float64 ones: ours %.2g, PyTorch's %.2g", name, oursF32, torchF32)
		}
	}
}

// f32Errors returns how far our float32 gradient of p (got) and PyTorch's
// are from PEFT's float64 gradient, as largest scaled differences.
func (r *peftRef) f32Errors(t *testing.T, name, p string, m *peftModel, got []float64) (ours, torch float64) {
	t.Helper()
	truth, err := readParam(r.f, name+".f64.grad."+p, m.store, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := readParam(r.f, name+".f32.grad."+p, m.store, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	ours, _ = scaledDiff(got, truth)
	torch, _ = scaledDiff(theirs, truth)
	return ours, torch
}

// The base models agree with transformers before any adapter: the
// premise of every comparison below.
func TestPEFTBaseModels(t *testing.T) {
	r := readPEFTRef(t)
	for _, kind := range []string{"llama", "roberta"} {
		for dn, dt := range peftDtypes {
			m, err := loadPEFTBase(peftIn, kind, dt)
			if err != nil {
				t.Fatalf("%+v", err)
			}
			key := kind + "-base." + dn + ".logits"
			worst := compare(t, key, m.run(t, nil).logits, r.values(t, key), peftTol[dn].logits)
			t.Logf("%s: largest scaled difference %.2g", key, worst)
		}
	}
}

// Our adapters, saved in the PEFT layout, load into PEFT without a warning
// and with exactly PEFT's keys, and PEFT computes with them what we do.
func TestPEFTLoadsOurAdapters(t *testing.T) {
	r := readPEFTRef(t)
	for _, c := range oursCases() {
		t.Run(c.name, func(t *testing.T) {
			for _, dn := range []string{"f64", "f32"} {
				rc := r.report.Cases[c.name+"."+dn]
				if c.peftLayout && (len(rc.Warnings) > 0 || len(rc.Missing) > 0 || len(rc.Unexpected) > 0) {
					t.Errorf("%s: PEFT warned %q; missing keys %v, unexpected %v", dn, rc.Warnings, rc.Missing, rc.Unexpected)
				}
				// Our default layout stores shared tensors once: PEFT loads
				// it right (the copies it misses are aliases of what it
				// loads) but warns, which is why PEFTLayout exists.
				if !c.peftLayout && (len(rc.Missing) == 0 || len(rc.Warnings) == 0) {
					t.Errorf("%s: expected PEFT to warn about the shared-once layout; it reported %q, missing %v", dn, rc.Warnings, rc.Missing)
				}
			}
			r.checkCase(t, c.name, c.model, filepath.Join(peftIn, "ours", c.name))
		})
	}
}

// Adapters that PEFT created, trained and saved load here and compute what
// PEFT computes.
func TestPEFTAdaptersLoadHere(t *testing.T) {
	r := readPEFTRef(t)
	for _, c := range []struct{ name, model string }{
		{"llama-lily", "llama"}, {"llama-lora", "llama"}, {"roberta-lily", "roberta"}, {"roberta-lora", "roberta"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r.checkCase(t, "peft-"+c.name, c.model, filepath.Join(peftOut, "peft", c.name))
		})
	}
}
