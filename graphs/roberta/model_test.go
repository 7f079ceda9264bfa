package roberta

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// batchInputs returns ids, mask and token types for b sequences of length
// t: <s> (id 0) first, real tokens drawn from [3, vocab), then padding (id
// pad, mask 0) after a random length; row 0 is full length.
func batchInputs(rng *rand.Rand, c Config, b, t int) (ids, mask, types []int) {
	ids, mask, types = make([]int, b*t), make([]int, b*t), make([]int, b*t)
	for i := 0; i < b; i++ {
		n := t
		if i > 0 {
			n = 1 + rng.IntN(t)
		}
		for j := 0; j < t; j++ {
			k := i*t + j
			switch {
			case j >= n:
				ids[k] = c.PadTokenID
			case j == 0:
				ids[k], mask[k] = 0, 1
			default:
				ids[k], mask[k] = 3+rng.IntN(c.VocabSize-3), 1
			}
			if j >= n/2 {
				types[k] = rng.IntN(c.TypeVocabSize)
			}
		}
	}
	return ids, mask, types
}

// refOutputs is what the reference forward pass computes.
type refOutputs struct {
	hidden, logits, mlm []float64
}

// refForward computes RoBERTa in plain Go from the store's values, written
// from Hugging Face's modeling_roberta: embeddings (position ids from the
// padding offset), LayerNorm, post-LN layers, and both heads when present.
func refForward(s *layers.Store, c Config, ids, mask, types []int, b, t int) refOutputs {
	p := func(name string) []float64 {
		q, ok := s.Get(name)
		if !ok {
			return nil
		}
		return layers.Float64s(q.Value)
	}
	h := c.HiddenSize
	m := b * t
	// linear: y[m, out] = x[m, in]·W[in, out] + bias.
	linear := func(x []float64, path string, in, out int) []float64 {
		w, bias := p(path+".weight"), p(path+".bias")
		y := make([]float64, len(x)/in*out)
		for i := 0; i < len(x)/in; i++ {
			for o := 0; o < out; o++ {
				v := bias[o]
				for k := 0; k < in; k++ {
					v += x[i*in+k] * w[k*out+o]
				}
				y[i*out+o] = v
			}
		}
		return y
	}
	norm := func(x []float64, path string) []float64 {
		g, beta := p(path+".weight"), p(path+".bias")
		y := make([]float64, len(x))
		for i := 0; i < len(x)/h; i++ {
			row := x[i*h : (i+1)*h]
			var mean, v float64
			for _, a := range row {
				mean += a
			}
			mean /= float64(h)
			for _, a := range row {
				v += (a - mean) * (a - mean)
			}
			v /= float64(h)
			for j, a := range row {
				y[i*h+j] = (a-mean)/math.Sqrt(v+c.LayerNormEps)*g[j] + beta[j]
			}
		}
		return y
	}
	gelu := func(x []float64) []float64 {
		y := make([]float64, len(x))
		for i, a := range x {
			y[i] = 0.5 * a * (1 + math.Erf(a/math.Sqrt2))
		}
		return y
	}
	add := func(x, y []float64) []float64 {
		z := make([]float64, len(x))
		for i := range x {
			z[i] = x[i] + y[i]
		}
		return z
	}

	// Embeddings; position ids as create_position_ids_from_input_ids:
	// cumsum(ids != pad)·(ids != pad) + pad.
	word, posT, typT := p(wordEmbeddings), p(positionEmbeddings), p(tokenTypeEmbedding)
	x := make([]float64, m*h)
	for i := 0; i < b; i++ {
		cum := 0
		for j := 0; j < t; j++ {
			k := i*t + j
			notPad := 0
			if ids[k] != c.PadTokenID {
				notPad = 1
			}
			cum += notPad
			pos := cum*notPad + c.PadTokenID
			for d := 0; d < h; d++ {
				x[k*h+d] = word[ids[k]*h+d] + typT[types[k]*h+d] + posT[pos*h+d]
			}
		}
	}
	x = norm(x, "roberta.embeddings.LayerNorm")
	maskF := make([]float64, m)
	for i, v := range mask {
		maskF[i] = float64(v)
	}
	for l := 0; l < c.NumHiddenLayers; l++ {
		base := layerPath(l)
		q := linear(x, base+".attention.self.query", h, h)
		k := linear(x, base+".attention.self.key", h, h)
		v := linear(x, base+".attention.self.value", h, h)
		ctx := refAttention(q, k, v, maskF, nil, b, t, h, c.NumAttentionHeads)
		a := norm(add(linear(ctx, base+".attention.output.dense", h, h), x), base+".attention.output.LayerNorm")
		inter := gelu(linear(a, base+".intermediate.dense", h, c.IntermediateSize))
		x = norm(add(linear(inter, base+".output.dense", c.IntermediateSize, h), a), base+".output.LayerNorm")
	}
	out := refOutputs{hidden: x}
	if cls := p(classifierOut + ".bias"); cls != nil {
		first := make([]float64, b*h)
		for i := 0; i < b; i++ {
			copy(first[i*h:(i+1)*h], x[i*t*h:])
		}
		d := linear(first, classifierDense, h, h)
		for i := range d {
			d[i] = math.Tanh(d[i])
		}
		out.logits = linear(d, classifierOut, h, len(cls))
	}
	if bias := p(lmHeadBias); bias != nil {
		y := norm(gelu(linear(x, lmHeadDense, h, h)), lmHeadNorm)
		vsz := c.VocabSize
		out.mlm = make([]float64, m*vsz)
		for i := 0; i < m; i++ {
			for j := 0; j < vsz; j++ {
				acc := bias[j]
				for d := 0; d < h; d++ {
					acc += y[i*h+d] * word[j*h+d]
				}
				out.mlm[i*vsz+j] = acc
			}
		}
	}
	return out
}

// runModel builds an evaluation graph on s, runs it on the inputs and
// returns its outputs.
func runModel(t *testing.T, s *layers.Store, c Config, ad layers.Adapter, train bool, ids, mask, types []int, b, tl int) refOutputs {
	t.Helper()
	g := s.NewGraph(train)
	m, err := Build(g, c, ad, b, tl, Options{Classifier: true, MLM: true})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if err := m.SetInputs(ids, mask, types); err != nil {
		t.Fatalf("%+v", err)
	}
	vm := G.NewTapeMachine(g.G)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatalf("%+v", err)
	}
	return refOutputs{hidden: float64s(m.Hidden.Value()), logits: float64s(m.Logits.Value()), mlm: float64s(m.MLMLogits.Value())}
}

func compareOutputs(t *testing.T, got, want refOutputs, tol float64) {
	t.Helper()
	assertClose(t, "hidden states", got.hidden, want.hidden, tol)
	assertClose(t, "classification logits", got.logits, want.logits, tol)
	assertClose(t, "MLM logits", got.mlm, want.mlm, tol)
}

// The graph computes what the plain-Go transcription of Hugging Face's
// RobertaModel, classification head and LM head compute, padding included.
func TestForwardMatchesReference(t *testing.T) {
	c := tinyConfig()
	c.InitializerRange = 0.3 // large enough that every part matters
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		s := newFullStore(t, c, dt, 3)
		rng := rand.New(rand.NewPCG(5, 6))
		for _, shape := range [][2]int{{3, 5}, {1, 7}, {2, 1}} {
			ids, mask, types := batchInputs(rng, c, shape[0], shape[1])
			got := runModel(t, s, c, nil, false, ids, mask, types, shape[0], shape[1])
			want := refForward(s, c, ids, mask, types, shape[0], shape[1])
			tol := 1e-10
			if dt == tensor.Float32 {
				tol = 1e-5
			}
			compareOutputs(t, got, want, tol)
		}
	}
}

func TestPositionIDs(t *testing.T) {
	got, err := PositionIDs([]int{0, 5, 6, 2, 1, 1, 0, 1, 7, 2, 1, 1}, 6, 1)
	if err != nil {
		t.Fatal(err)
	}
	// A pad id inside a row keeps position pad and does not advance the count.
	want := []int{2, 3, 4, 5, 1, 1, 2, 1, 3, 4, 1, 1}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("position ids %v, want %v", got, want)
		}
	}
	if _, err := PositionIDs(make([]int, 5), 3, 1); err == nil {
		t.Error("5 ids in rows of 3 accepted")
	}
}

// Graphs for several buckets and both modes share one store: a change to a
// stored tensor is seen by all, and each matches the reference.
func TestGraphsShareOneStore(t *testing.T) {
	c := tinyConfig()
	c.InitializerRange = 0.3
	c.HiddenDropoutProb, c.AttentionProbsDropoutProb = 0, 0 // a training graph then equals evaluation
	s := newFullStore(t, c, tensor.Float64, 2)
	s.Freeze()
	lily, err := layers.NewLily(layers.LilyConfig{R: 2, StrideA: 2, NumB: 2, Scaling: 1, TargetModules: []string{"query", "value"}, Routing: lilyop.Sequence})
	if err != nil {
		t.Fatal(err)
	}
	if err := layers.Attach(s, lily, c.Sites(), rand.New(rand.NewPCG(1, 1))); err != nil {
		t.Fatal(err)
	}
	type bucket struct {
		b, t  int
		train bool
		g     *layers.Graph
		m     *Model
		vm    G.VM
	}
	buckets := []*bucket{{b: 2, t: 5}, {b: 3, t: 4}, {b: 2, t: 5, train: true}}
	rng := rand.New(rand.NewPCG(7, 8))
	inputs := map[*bucket][3][]int{}
	for _, bk := range buckets {
		bk.g = s.NewGraph(bk.train)
		if bk.m, err = Build(bk.g, c, lily, bk.b, bk.t, Options{Classifier: true, MLM: true}); err != nil {
			t.Fatalf("%+v", err)
		}
		if bk.train {
			if _, err := G.Grad(mustSum(t, bk.m.Logits), bk.g.Learnables()...); err != nil {
				t.Fatalf("%+v", err)
			}
			bk.vm = G.NewTapeMachine(bk.g.G, G.BindDualValues(bk.g.Learnables()...))
		} else {
			bk.vm = G.NewTapeMachine(bk.g.G)
		}
		defer bk.vm.Close()
		ids, mask, types := batchInputs(rng, c, bk.b, bk.t)
		inputs[bk] = [3][]int{ids, mask, types}
		if err := bk.m.SetInputs(ids, mask, types); err != nil {
			t.Fatal(err)
		}
	}
	check := func() {
		t.Helper()
		for _, bk := range buckets {
			bk.vm.Reset()
			if err := bk.vm.RunAll(); err != nil {
				t.Fatalf("%+v", err)
			}
			in := inputs[bk]
			want := refForward(s, c, in[0], in[1], in[2], bk.b, bk.t)
			got := refOutputs{hidden: float64s(bk.m.Hidden.Value()), logits: float64s(bk.m.Logits.Value()), mlm: float64s(bk.m.MLMLogits.Value())}
			compareOutputs(t, got, want, 1e-10) // Lily's B starts at zero
		}
	}
	check()
	for _, name := range []string{"roberta.encoder.layer.1.intermediate.dense.weight", wordEmbeddings, classifierOut + ".bias"} {
		p, _ := s.Get(name)
		d := p.Value.Data().([]float64)
		for i := range d {
			d[i] += 0.05 * float64(i%7-3)
		}
	}
	check()
}

func mustSum(t *testing.T, n *G.Node) *G.Node {
	t.Helper()
	s, err := G.Sum(n)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// projectedLoss returns Σ out⊙P over the given outputs, for fixed random P.
func projectedLoss(t *testing.T, g *layers.Graph, outs ...*G.Node) *G.Node {
	t.Helper()
	rng := rand.New(rand.NewPCG(11, 12))
	var loss *G.Node
	for i, out := range outs {
		vals := make([]float64, out.Shape().TotalSize())
		for j := range vals {
			vals[j] = 2*rng.Float64() - 1
		}
		pn := g.Input("projection."+string(rune('a'+i)), out.Shape()...)
		copy(pn.Value().Data().([]float64), vals)
		prod, err := G.HadamardProd(out, pn)
		if err != nil {
			t.Fatal(err)
		}
		term := mustSum(t, prod)
		if loss == nil {
			loss = term
		} else if loss, err = G.Add(loss, term); err != nil {
			t.Fatal(err)
		}
	}
	return loss
}

// gradCheckModel compares the symbolic gradient of every trainable store
// parameter (at most per elements of each, chosen at random) with central
// differences through a forward-only twin graph. In training mode both
// graphs draw identical dropout masks.
func gradCheckModel(t *testing.T, s *layers.Store, c Config, ad layers.Adapter, train bool, opts Options, per int) {
	t.Helper()
	const b, tl = 2, 4
	ids, mask, types := batchInputs(rand.New(rand.NewPCG(9, 10)), c, b, tl)
	build := func() (*layers.Graph, *G.Node) {
		g := s.NewGraph(train)
		m, err := Build(g, c, ad, b, tl, opts)
		if err != nil {
			t.Fatalf("%+v", err)
		}
		if err := m.SetInputs(ids, mask, types); err != nil {
			t.Fatal(err)
		}
		var outs []*G.Node
		for _, n := range []*G.Node{m.Logits, m.MLMLogits} {
			if n != nil {
				outs = append(outs, n)
			}
		}
		if err := g.RefillDropout(rand.New(rand.NewPCG(1, 2))); err != nil {
			t.Fatal(err)
		}
		return g, projectedLoss(t, g, outs...)
	}
	g, loss := build()
	params := g.Learnables()
	if len(params) == 0 {
		t.Fatal("nothing to check")
	}
	if _, err := G.Grad(loss, params...); err != nil {
		t.Fatalf("%+v", err)
	}
	vm := G.NewTapeMachine(g.G, G.BindDualValues(params...))
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatalf("%+v", err)
	}
	_, fwdLoss := build()
	fwd := G.NewTapeMachine(fwdLoss.Graph())
	defer fwd.Close()
	eval := func() float64 {
		fwd.Reset()
		if err := fwd.RunAll(); err != nil {
			t.Fatalf("%+v", err)
		}
		return fwdLoss.Value().Data().(float64)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	const eps = 1e-6
	checked := map[string]bool{}
	for _, n := range params {
		gv, err := n.Grad()
		if err != nil {
			t.Fatal(err)
		}
		if !gv.Shape().Eq(n.Shape()) || gv.Shape().Dims() != n.Dims() {
			t.Fatalf("gradient of %s has shape %v, want %v", n.Name(), gv.Shape(), n.Shape())
		}
		ana := gv.Data().([]float64)
		p, _ := s.Get(n.Name())
		vals := p.Value.Data().([]float64)
		idx := rng.Perm(len(vals))
		if len(idx) > per {
			idx = idx[:per]
		}
		for _, j := range idx {
			orig := vals[j]
			vals[j] = orig + eps
			fp := eval()
			vals[j] = orig - eps
			fm := eval()
			vals[j] = orig
			num := (fp - fm) / (2 * eps)
			if e := math.Abs(num-ana[j]) / math.Max(1, math.Abs(num)); e > 1e-6 || math.IsNaN(ana[j]) {
				t.Errorf("d/d%s[%d]: analytic %.10g, numeric %.10g", n.Name(), j, ana[j], num)
			}
		}
		checked[n.Name()] = true
	}
	for _, p := range s.Trainable() {
		if !checked[p.Name] {
			t.Errorf("trainable %s is not in the graph's learnables", p.Name)
		}
	}
}

// Lily on query,value (non-zero B) plus the classification head: every
// trainable parameter's gradient, in evaluation and training graphs, with
// batch and sequence routing.
func TestGradientLilyAndClassifier(t *testing.T) {
	c := tinyConfig()
	c.InitializerRange = 0.3
	for _, routing := range []lilyop.Routing{lilyop.Batch, lilyop.Sequence} {
		for _, train := range []bool{false, true} {
			s, _ := layers.NewStore(tensor.Float64)
			if err := InitStore(s, c, 1); err != nil {
				t.Fatal(err)
			}
			s.Freeze()
			lily, err := layers.NewLily(layers.LilyConfig{R: 2, StrideA: 1, NumB: 2, Scaling: 0.8, TargetModules: []string{"query", "value"}, NonZeroB: true, Routing: routing})
			if err != nil {
				t.Fatal(err)
			}
			if err := layers.Attach(s, lily, c.Sites(), rand.New(rand.NewPCG(2, 2))); err != nil {
				t.Fatal(err)
			}
			if err := AddClassifier(s, c, 3, 4); err != nil {
				t.Fatal(err)
			}
			gradCheckModel(t, s, c, lily, train, Options{Classifier: true}, 1000)
		}
	}
}

// Full training (every parameter trainable, both heads, dropout on):
// sampled elements of every tensor, the tied word embeddings included.
func TestGradientFullModel(t *testing.T) {
	c := tinyConfig()
	c.InitializerRange = 0.3
	s := newFullStore(t, c, tensor.Float64, 2)
	gradCheckModel(t, s, c, nil, true, Options{Classifier: true, MLM: true}, 6)
}

// Build and SetInputs reject what they cannot run.
func TestBuildAndInputErrors(t *testing.T) {
	c := tinyConfig()
	s := newFullStore(t, c, tensor.Float32, 2)
	bad := map[string]func() error{
		"too long": func() error { _, err := Build(s.NewGraph(false), c, nil, 1, c.MaxSeqLen()+1, Options{}); return err },
		"batch 0":  func() error { _, err := Build(s.NewGraph(false), c, nil, 0, 3, Options{}); return err },
		"nil graph": func() error {
			_, err := Build(nil, c, nil, 1, 3, Options{})
			return err
		},
		"bad config": func() error { _, err := Build(s.NewGraph(false), Config{}, nil, 1, 3, Options{}); return err },
	}
	empty, _ := layers.NewStore(tensor.Float32)
	if err := InitStore(empty, c, 1); err != nil {
		t.Fatal(err)
	}
	bad["no classifier"] = func() error {
		_, err := Build(empty.NewGraph(false), c, nil, 1, 3, Options{Classifier: true})
		return err
	}
	bad["no LM head"] = func() error { _, err := Build(empty.NewGraph(false), c, nil, 1, 3, Options{MLM: true}); return err }
	twice := s.NewGraph(false)
	if _, err := Build(twice, c, nil, 1, 3, Options{}); err != nil {
		t.Fatal(err)
	}
	bad["second model in a graph"] = func() error { _, err := Build(twice, c, nil, 2, 3, Options{}); return err }
	for name, f := range bad {
		if err := f(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	m, err := Build(s.NewGraph(false), c, nil, 2, 3, Options{})
	if err != nil {
		t.Fatal(err)
	}
	inputs := map[string][3][]int{
		"short ids":   {make([]int, 5), nil, nil},
		"id range":    {[]int{0, 1, 2, 3, 4, 11}, nil, nil},
		"mask length": {make([]int, 6), make([]int, 2), nil},
		"mask value":  {make([]int, 6), []int{1, 1, 2, 1, 1, 1}, nil},
		"type range":  {make([]int, 6), nil, []int{0, 0, 0, 0, 0, 2}},
	}
	for name, in := range inputs {
		if err := m.SetInputs(in[0], in[1], in[2]); err == nil {
			t.Errorf("%s: SetInputs accepted it", name)
		}
	}
	if err := m.SetInputs([]int{0, 4, 1, 0, 1, 1}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := float64s(m.AttentionMask.Value()); got[2] != 1 || got[5] != 1 {
		t.Errorf("a nil mask must mean all ones (Hugging Face's default), got %v", got)
	}
	if got := m.PositionIDs.Value().Data().([]int); got[1] != 3 || got[2] != 1 {
		t.Errorf("position ids %v", got)
	}
}

// countOps returns the number of operation (non-input) nodes of g.
func countOps(g *G.ExprGraph) int {
	n := 0
	for _, node := range g.AllNodes() {
		if node.Op() != nil {
			n++
		}
	}
	return n
}

// An encoder layer is 18 operation nodes in an evaluation graph without
// adapter; the report lists the counts with Lily and gradients.
func TestNodesPerLayer(t *testing.T) {
	perLayer := func(ad func(s *layers.Store, c Config) layers.Adapter, train, grad bool) int {
		counts := make([]int, 2)
		for i, n := range []int{1, 2} {
			c := tinyConfig()
			c.NumHiddenLayers = n
			s := newFullStore(t, c, tensor.Float32, 2)
			var a layers.Adapter
			if ad != nil {
				s.Freeze()
				a = ad(s, c)
			}
			g := s.NewGraph(train)
			m, err := Build(g, c, a, 2, 4, Options{Classifier: true})
			if err != nil {
				t.Fatal(err)
			}
			if grad {
				learn := g.Learnables()
				if len(learn) == 0 {
					learn = G.Nodes{m.Hidden}
				}
				if _, err := G.Grad(mustSum(t, m.Logits), learn...); err != nil {
					t.Fatalf("%+v", err)
				}
			}
			counts[i] = countOps(g.G)
		}
		return counts[1] - counts[0]
	}
	lily := func(s *layers.Store, c Config) layers.Adapter {
		l, err := layers.NewLily(layers.LilyConfig{R: 2, StrideA: 1, NumB: 2, Scaling: 1, TargetModules: []string{"query", "value"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := layers.Attach(s, l, c.Sites(), rand.New(rand.NewPCG(1, 1))); err != nil {
			t.Fatal(err)
		}
		return l
	}
	if n := perLayer(nil, false, false); n != 18 {
		t.Errorf("%d operation nodes per evaluation layer, want 18", n)
	}
	var report []string
	for _, v := range []struct {
		name        string
		ad          func(*layers.Store, Config) layers.Adapter
		train, grad bool
	}{{"eval", nil, false, false}, {"eval+lily(q,v)", lily, false, false}, {"train+lily(q,v)+grad", lily, true, true}, {"train full fine-tuning+grad", nil, true, true}} {
		report = append(report, fmt.Sprintf("%s: %d", v.name, perLayer(v.ad, v.train, v.grad)))
	}
	t.Log("operation nodes per encoder layer: " + strings.Join(report, ", "))
}

// A training graph has Hugging Face's dropouts (embeddings, attention
// probabilities, both block outputs, twice in the classifier), drawn from
// the caller's generator; an evaluation graph has none.
func TestTrainingDropout(t *testing.T) {
	c := tinyConfig()
	c.InitializerRange = 0.3
	c.HiddenDropoutProb, c.AttentionProbsDropoutProb = 0.3, 0.2
	s := newFullStore(t, c, tensor.Float64, 2)
	ids, mask, types := batchInputs(rand.New(rand.NewPCG(1, 1)), c, 2, 4)
	build := func(train bool) (*layers.Graph, *Model, G.VM) {
		g := s.NewGraph(train)
		m, err := Build(g, c, nil, 2, 4, Options{Classifier: true, MLM: true})
		if err != nil {
			t.Fatalf("%+v", err)
		}
		if err := m.SetInputs(ids, mask, types); err != nil {
			t.Fatal(err)
		}
		return g, m, G.NewTapeMachine(g.G)
	}
	g, m, vm := build(true)
	defer vm.Close()
	names := []string{"roberta.embeddings.dropout", "classifier.dropout.0", "classifier.dropout.1"}
	for l := 0; l < c.NumHiddenLayers; l++ {
		for _, d := range []string{".attention.self.dropout", ".attention.output.dropout", ".output.dropout"} {
			names = append(names, layerPath(l)+d)
		}
	}
	for _, n := range names {
		if len(g.G.ByName(n+".dropout_mask")) != 1 {
			t.Errorf("the training graph has no dropout %s", n)
		}
	}
	run := func(seed uint64) []float64 {
		if err := g.RefillDropout(rand.New(rand.NewPCG(seed, 0))); err != nil {
			t.Fatal(err)
		}
		vm.Reset()
		if err := vm.RunAll(); err != nil {
			t.Fatalf("%+v", err)
		}
		return append(float64s(m.Logits.Value()), float64s(m.MLMLogits.Value())...)
	}
	a, b, a2 := run(1), run(2), run(1)
	assertClose(t, "same seed", a2, a, 0)
	if a[0] == b[0] {
		t.Error("different dropout draws gave the same logits")
	}
	eg, em, evm := build(false)
	defer evm.Close()
	if err := evm.RunAll(); err != nil {
		t.Fatal(err)
	}
	for _, n := range eg.G.AllNodes() {
		if n.Op() == nil && strings.Contains(n.Name(), "dropout") {
			t.Errorf("evaluation graph has node %s", n.Name())
		}
	}
	assertClose(t, "evaluation", append(float64s(em.Logits.Value()), float64s(em.MLMLogits.Value())...),
		func() []float64 { r := refForward(s, c, ids, mask, types, 2, 4); return append(r.logits, r.mlm...) }(), 1e-10)
}
