package main

import (
	"math"
	"math/rand/v2"
	"strings"

	"github.com/lilygo/lily/graphs/roberta"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/tokenizers/bytebpe"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// headPrefix starts the names of the classification head's parameters.
const headPrefix = "classifier."

// loadEncoder reads a Hugging Face RoBERTa directory (weights and tokenizer,
// with the classification head when classifier is true) and checks that the
// tokenizer fits the model.
func loadEncoder(dir string, classifier bool) (*roberta.Checkpoint, *bytebpe.Tokenizer, error) {
	ck, err := roberta.Load(dir, roberta.LoadOptions{Classifier: classifier})
	if err != nil {
		return nil, nil, err
	}
	tok, err := bytebpe.Load(dir)
	if err != nil {
		return nil, nil, errors.Wrapf(err, "reading the tokenizer of %s", dir)
	}
	if err := checkTokenizer(tok, ck.Config); err != nil {
		return nil, nil, errors.Wrap(err, dir)
	}
	return ck, tok, nil
}

// checkTokenizer verifies that every id the tokenizer produces is a row of
// the model's embedding table and that padding agrees.
func checkTokenizer(tok *bytebpe.Tokenizer, cfg roberta.Config) error {
	if tok.VocabSize() > cfg.VocabSize {
		return errors.Errorf("the tokenizer has %d ids but the model only %d embeddings", tok.VocabSize(), cfg.VocabSize)
	}
	for _, s := range []string{bytebpe.BOS, bytebpe.EOS, bytebpe.Pad} {
		if _, ok := tok.TokenToID(s); !ok {
			return errors.Errorf("the tokenizer has no %s token", s)
		}
	}
	if pad, _ := tok.TokenToID(bytebpe.Pad); pad != cfg.PadTokenID {
		return errors.Errorf("the tokenizer's <pad> is id %d but config.json says pad_token_id %d", pad, cfg.PadTokenID)
	}
	return nil
}

// newAdapter builds the adapter c asks for.
func newAdapter(c ftConfig) (layers.Adapter, error) {
	switch c.Adapter {
	case "lily":
		routing, err := lilyop.ParseRouting(c.LilyRouting)
		if err != nil {
			return nil, err
		}
		return layers.NewLily(layers.LilyConfig{R: c.LilyR, StrideA: c.LilyStrideA, NumB: c.LilyNumB, Scaling: c.LilyScaling,
			TargetModules: splitList(c.LilyTargets), Routing: routing})
	case "lora":
		return layers.NewLoRA(layers.LoRAConfig{R: c.LoraR, Alpha: c.LoraAlpha, TargetModules: splitList(c.LoraTargets)})
	case "none":
		return layers.None{}, nil
	}
	return nil, errors.Errorf("unknown adapter %q", c.Adapter)
}

// adapterConfig returns the adapter's own configuration for results.json.
func adapterConfig(a layers.Adapter) any {
	switch ad := a.(type) {
	case *layers.Lily:
		return ad.Config()
	case *layers.LoRA:
		return ad.Config()
	}
	return map[string]string{"method": a.Method()}
}

// shapeKey identifies one compiled graph.
type shapeKey struct {
	train         bool
	batch, length int
}

// seqGraph is one compiled sequence-classification graph.
type seqGraph struct {
	g      *layers.Graph
	m      *roberta.Model
	vm     G.VM
	loss   *G.Node // training graphs only
	labels *G.Node // int [batch]: classification targets
	scores *G.Node // [batch, 1]: regression targets
}

// seqModel is a RoBERTa encoder with a classification (or, with one label,
// regression) head and an adapter in one store, compiled lazily into one
// graph per (mode, batch size, length), kept in a bounded cache.
type seqModel struct {
	cfg        roberta.Config
	store      *layers.Store
	adapter    layers.Adapter
	regression bool
	pad        int
	graphs     *graphCache
}

// cachedGraphs is how many graphs of the largest shape (batch × max_len)
// the cache holds at most.
const cachedGraphs = 2

// graphCache holds compiled graphs within a budget of batch·length tokens,
// evicting the least recently used. Gorgonia keeps every activation (and
// gradient) of a graph's last run alive: about 500 MB for a training graph
// of a 4-layer, 128-wide model at 32 × 128 ids, so
// keeping a graph for every length bucket of both modes took 7 GB on RTE.
// Building a graph again takes a fraction of a second.
type graphCache struct {
	budget, used, clock int
	items               map[shapeKey]*cacheEntry
}

// cacheEntry is a cached graph and when it was last used.
type cacheEntry struct {
	sg   *seqGraph
	last int
}

// newGraphCache returns an empty cache of the given token budget.
func newGraphCache(budget int) *graphCache {
	return &graphCache{budget: budget, items: map[shapeKey]*cacheEntry{}}
}

// get returns the graph for key, if cached, and marks it used.
func (c *graphCache) get(key shapeKey) (*seqGraph, bool) {
	e, ok := c.items[key]
	if !ok {
		return nil, false
	}
	c.clock++
	e.last = c.clock
	return e.sg, true
}

// put adds a graph, first closing the least recently used ones until it
// fits (the new one is kept even if it alone exceeds the budget).
func (c *graphCache) put(key shapeKey, sg *seqGraph) {
	cost := key.batch * key.length
	for c.used+cost > c.budget && len(c.items) > 0 {
		var oldest shapeKey
		first := true
		for k, e := range c.items {
			if first || e.last < c.items[oldest].last {
				oldest, first = k, false
			}
		}
		c.remove(oldest)
	}
	c.clock++
	c.items[key] = &cacheEntry{sg: sg, last: c.clock}
	c.used += cost
}

// remove closes and forgets one graph.
func (c *graphCache) remove(key shapeKey) {
	c.items[key].sg.vm.Close()
	delete(c.items, key)
	c.used -= key.batch * key.length
}

// closeAll closes every graph.
func (c *graphCache) closeAll() {
	for k := range c.items {
		c.remove(k)
	}
}

// newSeqModel freezes the encoder in ck and attaches the adapter
// (initialised from seed) and a fresh head with numLabels outputs. Graphs
// are cached for up to cachedGraphs batches of batch × maxLen ids.
func newSeqModel(ck *roberta.Checkpoint, a layers.Adapter, numLabels int, seed uint64, batch, maxLen int) (*seqModel, error) {
	ck.Store.Freeze()
	if err := layers.Attach(ck.Store, a, ck.Config.Sites(), rand.New(rand.NewPCG(seed, 3))); err != nil {
		return nil, err
	}
	if err := roberta.AddClassifier(ck.Store, ck.Config, numLabels, seed); err != nil {
		return nil, err
	}
	return &seqModel{cfg: ck.Config, store: ck.Store, adapter: a, regression: numLabels == 1, pad: ck.Config.PadTokenID,
		graphs: newGraphCache(cachedGraphs * batch * maxLen)}, nil
}

// groups returns the optimiser groups: the classifier head and the
// adapter, each with its AdamW at its own peak rate.
func (s *seqModel) groups(headLR, adapterLR, wd float64) []*train.Group {
	var head, ad []*layers.Param
	for _, p := range s.store.Trainable() {
		if strings.HasPrefix(p.Name, headPrefix) {
			head = append(head, p)
		} else {
			ad = append(ad, p)
		}
	}
	return []*train.Group{train.NewGroup("head", head, headLR, wd), train.NewGroup("adapter", ad, adapterLR, wd)}
}

// counts returns the trainable parameters of the head and of the adapter,
// and all parameters.
func (s *seqModel) counts() (head, adapter, total int) {
	for _, p := range s.store.Trainable() {
		if strings.HasPrefix(p.Name, headPrefix) {
			head += p.Value.Shape().TotalSize()
		} else {
			adapter += p.Value.Shape().TotalSize()
		}
	}
	_, total = s.store.Count()
	return head, adapter, total
}

// graph returns the compiled graph for a mode and shape, building it on
// first use.
func (s *seqModel) graph(trainMode bool, batch, length int) (*seqGraph, error) {
	key := shapeKey{trainMode, batch, length}
	if sg, ok := s.graphs.get(key); ok {
		return sg, nil
	}
	g := s.store.NewGraph(trainMode)
	m, err := roberta.Build(g, s.cfg, s.adapter, batch, length, roberta.Options{Classifier: true})
	if err != nil {
		return nil, err
	}
	sg := &seqGraph{g: g, m: m}
	if !trainMode {
		if sg.vm, err = g.Machine(nil, m.Logits); err != nil {
			return nil, err
		}
		s.graphs.put(key, sg)
		return sg, nil
	}
	if s.regression {
		sg.scores = g.Input("scores", batch, 1)
		diff, err := G.Sub(m.Logits, sg.scores)
		if err != nil {
			return nil, errors.Wrap(err, "regression loss")
		}
		sq, err := G.Square(diff)
		if err != nil {
			return nil, errors.Wrap(err, "regression loss")
		}
		if sg.loss, err = G.Mean(sq); err != nil {
			return nil, errors.Wrap(err, "regression loss")
		}
	} else {
		sg.labels = layers.IDs(g, "labels", batch)
		if sg.loss, err = lilyop.CrossEntropy(m.Logits, sg.labels); err != nil {
			return nil, err
		}
	}
	if sg.vm, err = g.Machine(sg.loss); err != nil {
		return nil, err
	}
	s.graphs.put(key, sg)
	return sg, nil
}

// forward runs forward and backward on the examples idx, with dropout
// masks drawn from dropRNG; it returns the loss, the graph's parameter
// nodes (which hold the gradients) and the number of real (unpadded)
// tokens.
func (s *seqModel) forward(exs []example, idx []int, maxLen int, dropRNG *rand.Rand) (float64, G.Nodes, int, error) {
	ids, mask, t := padBatch(exs, idx, s.pad, maxLen)
	sg, err := s.graph(true, len(idx), t)
	if err != nil {
		return 0, nil, 0, err
	}
	if err := sg.m.SetInputs(ids, mask, nil); err != nil {
		return 0, nil, 0, err
	}
	if s.regression {
		setFloats(sg.scores.Value().(*tensor.Dense), func(r int) float64 { return exs[idx[r]].gold })
	} else {
		lab := sg.labels.Value().Data().([]int)
		for r, i := range idx {
			lab[r] = int(exs[i].gold)
		}
	}
	if err := sg.g.RefillDropout(dropRNG); err != nil {
		return 0, nil, 0, err
	}
	sg.vm.Reset()
	if err := sg.vm.RunAll(); err != nil {
		return 0, nil, 0, errors.Wrap(err, "training forward and backward pass")
	}
	return scalar(sg.loss.Value()), sg.g.Learnables(), sum(mask), nil
}

// predict returns, for every example, the predicted class index (argmax of
// the logits) or the regression output, evaluating the fixed evalBatches.
func (s *seqModel) predict(exs []example, batch, maxLen int) ([]float64, error) {
	return s.predictObserving(exs, batch, maxLen, nil)
}

// predictObserving is predict calling observe (when not nil) with the graph
// after every batch, e.g. to read Lily's mixing weights.
func (s *seqModel) predictObserving(exs []example, batch, maxLen int, observe func(*layers.Graph) error) ([]float64, error) {
	logits, err := s.logits(exs, batch, maxLen, observe)
	if err != nil {
		return nil, err
	}
	return s.decide(logits), nil
}

// decide turns every example's logits into its prediction: the class index
// of the largest, or the regression output.
func (s *seqModel) decide(logits [][]float64) []float64 {
	preds := make([]float64, len(logits))
	for i, row := range logits {
		if s.regression {
			preds[i] = row[0]
		} else {
			preds[i] = float64(argmax(row))
		}
	}
	return preds
}

// logits returns the head's outputs for every example (numLabels each),
// evaluating the fixed evalBatches and calling observe (when not nil) with
// the graph after every batch.
func (s *seqModel) logits(exs []example, batch, maxLen int, observe func(*layers.Graph) error) ([][]float64, error) {
	out := make([][]float64, len(exs))
	for _, idx := range evalBatches(lengths(exs), batch) {
		rows, err := s.batchLogits(exs, idx, maxLen, observe)
		if err != nil {
			return nil, err
		}
		for r, i := range idx {
			out[i] = rows[r]
		}
	}
	return out, nil
}

// batchLogits returns the head's outputs for the examples idx (one row
// each), calling observe (when not nil) with the graph.
func (s *seqModel) batchLogits(exs []example, idx []int, maxLen int, observe func(*layers.Graph) error) ([][]float64, error) {
	ids, mask, t := padBatch(exs, idx, s.pad, maxLen)
	sg, err := s.graph(false, len(idx), t)
	if err != nil {
		return nil, err
	}
	if err := sg.m.SetInputs(ids, mask, nil); err != nil {
		return nil, err
	}
	sg.vm.Reset()
	if err := sg.vm.RunAll(); err != nil {
		return nil, errors.Wrap(err, "evaluation")
	}
	if observe != nil {
		if err := observe(sg.g); err != nil {
			return nil, err
		}
	}
	logits := layers.Float64s(sg.m.Logits.Value().(*tensor.Dense))
	n := len(logits) / len(idx)
	rows := make([][]float64, len(idx))
	for r := range idx {
		rows[r] = logits[r*n : (r+1)*n]
	}
	return rows, nil
}

// close releases every compiled graph.
func (s *seqModel) close() { s.graphs.closeAll() }

// setFloats sets element i of a float32 or float64 tensor to f(i).
func setFloats(t *tensor.Dense, f func(i int) float64) {
	switch d := t.Data().(type) {
	case []float32:
		for i := range d {
			d[i] = float32(f(i))
		}
	case []float64:
		for i := range d {
			d[i] = f(i)
		}
	}
}

// scalar reads a float32 or float64 scalar value.
func scalar(v G.Value) float64 {
	switch x := v.Data().(type) {
	case float32:
		return float64(x)
	case float64:
		return x
	}
	return math.NaN()
}

// argmax returns the index of the largest value (the first on ties).
func argmax(v []float64) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// sum adds up ints.
func sum(v []int) int {
	n := 0
	for _, x := range v {
		n += x
	}
	return n
}
