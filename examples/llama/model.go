package main

import (
	"math"

	"github.com/lilygo/lily/adapterfile"
	"github.com/lilygo/lily/graphs/llama"
	"github.com/lilygo/lily/internal/memcheck"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// base is a loaded checkpoint with its tokenizer.
type base struct {
	cfg   llama.Config
	store *layers.Store
	tok   llama.Tokenizer
	// hf is set for a Hugging Face checkpoint directory, unset for a
	// llama2.c file.
	hf bool
}

// baseWeights maps the values of -base_dtype to the dtype the frozen
// weight matrices are kept in.
var baseWeights = map[string]tensor.Dtype{"f32": tensor.Float32, "bf16": lilyop.BFloat16, "f16": lilyop.Float16}

// baseDtypes lists the values of -base_dtype, for error messages.
const baseDtypes = "f32, bf16 or f16"

// validBaseDtype reports whether s is a value of -base_dtype.
func validBaseDtype(s string) bool {
	_, ok := baseWeights[s]
	return ok
}

// loadBase reads a checkpoint (float32, weights frozen) and its tokenizer:
// a Hugging Face LLaMA directory (config.json, model.safetensors or its
// shards, tokenizer.json), or a llama2.c checkpoint file, converted to
// Hugging Face's rotary layout so that adapters on q_proj and k_proj (and
// adapter files) use the layout PEFT expects (the logits do not change).
// baseDtype "bf16" keeps the frozen weight matrices in bfloat16, "f16" in
// float16 (rounded to it from a file of another dtype), "f32" in float32. need (may be nil) lists what
// the command needs beyond the weights; for a Hugging Face directory it is
// checked with the loading itself before any weight is read, for a llama2.c
// file after loading.
func loadBase(checkpoint, tokenizer, baseDtype string, need func(llama.Config) memcheck.Need) (*base, error) {
	weights, ok := baseWeights[baseDtype]
	if !ok {
		return nil, errors.Errorf("-base_dtype %q: use %s", baseDtype, baseDtypes)
	}
	hf := isHFDir(checkpoint)
	tok, err := loadTokenizer(tokenizer, checkpoint)
	if err != nil {
		return nil, errors.Wrap(err, "loading the tokenizer")
	}
	var cfg llama.Config
	var s *layers.Store
	if hf {
		if err := checkHFLoad(checkpoint, weights, need); err != nil {
			return nil, err
		}
		cfg, s, err = loadHFWeights(checkpoint, weights)
	} else {
		if err := llama2cLoadNeed(checkpoint).Check(); err != nil {
			return nil, errors.Wrapf(err, "loading %s", checkpoint)
		}
		cfg, s, err = llama.LoadLlama2C(checkpoint, tensor.Float32)
	}
	if err != nil {
		return nil, errors.Wrap(err, "loading the checkpoint")
	}
	if !hf && need != nil {
		if err := need(cfg).Check(); err != nil {
			return nil, err
		}
	}
	switch {
	case !hf && tok.VocabSize() != cfg.VocabSize:
		return nil, errors.Errorf("the tokenizer %s has %d tokens but the model %s has %d", tokenizer, tok.VocabSize(), checkpoint, cfg.VocabSize)
	case hf && tok.VocabSize() > cfg.VocabSize:
		return nil, errors.Errorf("the tokenizer %s has %d tokens but the model %s only %d (vocab_size of config.json); give the model's own tokenizer", tokenizer, tok.VocabSize(), checkpoint, cfg.VocabSize)
	}
	if cfg, err = llama.ToHFLayout(cfg, s); err != nil {
		return nil, errors.Wrap(err, "converting to the Hugging Face rotary layout")
	}
	if !hf && lilyop.IsHalfDtype(weights) {
		if _, err := s.ConvertFrozen(weights, layers.Matrices); err != nil {
			return nil, errors.Wrapf(err, "keeping the weights in %s", baseDtype)
		}
	}
	return &base{cfg: cfg, store: s, tok: tok, hf: hf}, nil
}

// loadAdapter reads an adapter directory written by finetune into the
// model's store and returns the adapter to build graphs with.
func (b *base) loadAdapter(dir string) (layers.Adapter, error) {
	a, err := adapterfile.Load(dir, b.store, b.cfg.Sites())
	return a, errors.Wrapf(err, "loading the adapter %s", dir)
}

// shapeKey identifies one compiled graph.
type shapeKey struct {
	train         bool
	batch, length int
}

// lmGraph is one compiled language-model graph with its loss.
type lmGraph struct {
	g    *layers.Graph
	m    *llama.Model
	loss *G.Node
	vm   G.VM
}

// maxTrainGraphs bounds the training graphs kept compiled. A graph keeps the
// activations and gradients of its last run (about 80 KB per token position
// for stories260K), so keeping one per length bucket costs gigabytes, while
// compiling one takes only tens of milliseconds.
const maxTrainGraphs = 2

// lm is a model with its adapter (layers.None for full fine-tuning, where
// every weight is trainable), compiled lazily into one graph per (mode, batch,
// length): the most recently used maxTrainGraphs training graphs are kept,
// an evaluation graph only while it is used. All graphs share the store's
// tensors and one AdamW.
type lm struct {
	cfg     llama.Config
	store   *layers.Store
	adapter layers.Adapter
	graphs  map[shapeKey]*lmGraph
	recent  []shapeKey // training graphs, least recently used first
	evalKey shapeKey   // the evaluation graph in use
}

// newLM wraps a model for evaluation and training.
func newLM(cfg llama.Config, s *layers.Store, a layers.Adapter) *lm {
	return &lm{cfg: cfg, store: s, adapter: a, graphs: map[shapeKey]*lmGraph{}}
}

// graph returns the compiled graph for a mode and shape, building it on
// first use. Evaluation graphs compute only the loss, no gradients.
func (l *lm) graph(trainMode bool, batch, length int) (*lmGraph, error) {
	key := shapeKey{trainMode, batch, length}
	if trainMode {
		l.touch(key)
	}
	if lg, ok := l.graphs[key]; ok {
		return lg, nil
	}
	g := l.store.NewGraph(trainMode)
	m, err := llama.Build(g, l.cfg, l.adapter, batch, length)
	if err != nil {
		return nil, err
	}
	loss, err := m.Loss()
	if err != nil {
		return nil, err
	}
	lg := &lmGraph{g: g, m: m, loss: loss}
	if trainMode {
		lg.vm, err = g.Machine(loss)
	} else {
		lg.vm, err = g.Machine(nil, loss)
	}
	if err != nil {
		return nil, errors.Wrapf(err, "compiling the %d×%d graph", batch, length)
	}
	l.graphs[key] = lg
	return lg, nil
}

// touch marks the training graph key as the most recently used and releases
// the least recently used ones beyond maxTrainGraphs.
func (l *lm) touch(key shapeKey) {
	for i, k := range l.recent {
		if k == key {
			l.recent = append(l.recent[:i], l.recent[i+1:]...)
			break
		}
	}
	l.recent = append(l.recent, key)
	for len(l.recent) > maxTrainGraphs {
		l.release(l.recent[0])
		l.recent = l.recent[1:]
	}
}

// release closes and forgets the graph of key, if compiled.
func (l *lm) release(key shapeKey) {
	if lg, ok := l.graphs[key]; ok {
		lg.vm.Close()
		delete(l.graphs, key)
	}
}

// forward fills the graph for seqs (padded to length) and runs it; it
// returns the graph and the mean loss over the predicted tokens.
func (l *lm) forward(trainMode bool, seqs [][]int, length int) (*lmGraph, float64, error) {
	lg, err := l.graph(trainMode, len(seqs), length)
	if err != nil {
		return nil, 0, err
	}
	if err := lg.m.SetBatch(seqs); err != nil {
		return nil, 0, err
	}
	lg.vm.Reset()
	if err := lg.vm.RunAll(); err != nil {
		return nil, 0, errors.Wrap(err, "running the model")
	}
	return lg, scalar(lg.loss.Value()), nil
}

// evalResult is the held-out loss of a set of sequences.
type evalResult struct {
	NLL        float64 `json:"nll"` // mean negative log-likelihood per predicted token (nats)
	Perplexity float64 `json:"perplexity"`
	Tokens     int     `json:"tokens"` // predicted tokens: every real token after the first of each sequence
}

// evaluate returns the token-weighted held-out loss of seqs in the fixed
// batches: the sum of every batch's mean loss times its number of predicted
// tokens, over all predicted tokens. Padding is never predicted. Each
// evaluation graph is released when the next batch needs another shape
// (batches sorted by length use each shape once in a row).
func (l *lm) evaluate(seqs [][]int, batches [][]int, maxLen int) (evalResult, error) {
	return l.evaluateObserving(seqs, batches, maxLen, nil)
}

// evaluateObserving is evaluate calling observe (when not nil) with the
// graph after every batch, e.g. to read Lily's mixing weights.
func (l *lm) evaluateObserving(seqs [][]int, batches [][]int, maxLen int, observe func(*layers.Graph) error) (evalResult, error) {
	defer l.releaseEval()
	stats := make([][]float64, len(batches))
	for i, idx := range batches {
		stats[i] = make([]float64, 2)
		if err := l.evalBatch(seqs, idx, maxLen, observe, stats[i]); err != nil {
			return evalResult{}, err
		}
	}
	return sumEval(stats)
}

// evalBatch evaluates one batch of seqs into out: its summed loss (the
// mean over its predicted tokens times their number) and that number. The
// evaluation graph of the previous batch is released when this one needs
// another shape (batches sorted by length use each shape once in a row).
func (l *lm) evalBatch(seqs [][]int, idx []int, maxLen int, observe func(*layers.Graph) error, out []float64) error {
	batch, length := gather(seqs, idx, maxLen)
	if key := (shapeKey{false, len(batch), length}); key != l.evalKey {
		l.releaseEval()
		l.evalKey = key
	}
	lg, loss, err := l.forward(false, batch, length)
	if err != nil {
		return errors.Wrap(err, "evaluation")
	}
	if observe != nil {
		if err := observe(lg.g); err != nil {
			return err
		}
	}
	k := predicted(batch)
	out[0], out[1] = loss*float64(k), float64(k)
	return nil
}

// releaseEval releases the last evaluation graph.
func (l *lm) releaseEval() {
	l.release(l.evalKey)
	l.evalKey = shapeKey{}
}

// sumEval adds up the batches' statistics of evalBatch, in batch order, into
// the token-weighted loss and perplexity.
func sumEval(stats [][]float64) (evalResult, error) {
	var sum float64
	var n int
	for _, st := range stats {
		sum += st[0]
		n += int(st[1])
	}
	if n == 0 {
		return evalResult{}, errors.New("evaluation: no token to predict")
	}
	nll := sum / float64(n)
	return evalResult{NLL: nll, Perplexity: math.Exp(nll), Tokens: n}, nil
}

// close releases every compiled graph.
func (l *lm) close() {
	for _, lg := range l.graphs {
		lg.vm.Close()
	}
	l.graphs, l.recent = map[shapeKey]*lmGraph{}, nil
}

// scalar reads a float32 or float64 scalar value (NaN otherwise).
func scalar(v G.Value) float64 {
	switch x := v.Data().(type) {
	case float32:
		return float64(x)
	case float64:
		return x
	}
	return math.NaN()
}

// lilyConfig builds the Lily configuration c asks for.
func lilyConfig(c ftConfig) (layers.LilyConfig, error) {
	routing, err := lilyop.ParseRouting(c.LilyRouting)
	if err != nil {
		return layers.LilyConfig{}, errors.Wrap(err, "-lily_routing")
	}
	return layers.LilyConfig{R: c.LilyR, StrideA: c.LilyStrideA, NumB: c.LilyNumB, Scaling: c.LilyScaling,
		TargetModules: splitList(c.LilyTargets), Routing: routing, Uniform: c.LilyUniform}, nil
}

// newAdapter builds the adapter c asks for; full fine-tuning uses
// layers.None (no adapter: the weights themselves are trained).
func newAdapter(c ftConfig) (layers.Adapter, error) {
	switch c.Adapter {
	case "lily":
		lc, err := lilyConfig(c)
		if err != nil {
			return nil, err
		}
		return layers.NewLily(lc)
	case "lora":
		return layers.NewLoRA(layers.LoRAConfig{R: c.LoraR, Alpha: c.LoraAlpha, TargetModules: splitList(c.LoraTargets)})
	case "full":
		return layers.None{}, nil
	}
	return nil, errors.Errorf("unknown adapter %q (use lily, lora or full)", c.Adapter)
}

// loadHFWeights loads a Hugging Face checkpoint into a float32 store with
// its weight matrices in weights (tensor.Float32, or lilyop.BFloat16 or
// lilyop.Float16: rounded to that half if the file is not in it, kept as
// they are if it is).
func loadHFWeights(dir string, weights tensor.Dtype) (llama.Config, *layers.Store, error) {
	return llama.LoadHFWith(dir, llama.HFOptions{Dtype: tensor.Float32, Weights: weights})
}
