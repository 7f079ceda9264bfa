package llama

import (
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Tokenizer is what text generation needs from a tokenizer;
// tokenizers/llama2c.Tokenizer implements it.
type Tokenizer interface {
	// Encode returns the ids of text, with BOS first and EOS last on
	// request.
	Encode(text string, bos, eos bool) ([]int, error)
	// Decode returns the text of token id following token prev.
	Decode(prev, id int) (string, error)
	// VocabSize is the number of tokens.
	VocabSize() int
	// BOS and EOS are the begin- and end-of-sequence ids.
	BOS() int
	EOS() int
}

// SampleOptions control decoding.
type SampleOptions struct {
	// Steps is the number of positions run through the model, prompt
	// included, as llama2.c's -n: the result holds at most Steps+1 tokens.
	// 0 or more than the model's MaxSeqLen means MaxSeqLen.
	Steps int
	// Temperature divides the logits; 0 decodes greedily (argmax).
	Temperature float64
	// TopP keeps the smallest set of most likely tokens whose probability
	// reaches TopP (nucleus sampling); 0 or ≥ 1 samples from all tokens.
	TopP float64
	// Seed seeds the sampler, so equal options give equal text.
	Seed uint64
	// Stop lists token ids that end the generation (they are not added).
	Stop []int
}

// Generation is the result of one decoding run.
type Generation struct {
	// Tokens holds the prompt's ids followed by the generated ones.
	Tokens []int
	// Prompt is the number of prompt tokens at the start of Tokens.
	Prompt int
	// Text is the decoded text of Tokens[1:] (Generate only).
	Text string
	// Elapsed is the time spent in forward passes and sampling.
	Elapsed time.Duration
}

// TokensPerSecond is the number of generated tokens per second of Elapsed.
func (g *Generation) TokensPerSecond() float64 {
	if g.Elapsed <= 0 {
		return 0
	}
	return float64(len(g.Tokens)-g.Prompt) / g.Elapsed.Seconds()
}

// Generator decodes with a key/value cache: the prompt runs through one
// graph of its length, then every new token through a one-token graph that
// reuses the cached keys and values, so each step costs one position. The
// graphs are built on first use and reused. With a Lily adapter in batch or
// sequence routing, the prompt pass mixes over the prompt's tokens and each
// later step over its own token, as Hugging Face's generate() does with a
// cache. A Generator is not safe for concurrent use.
type Generator struct {
	cfg     Config
	store   *layers.Store
	adapter layers.Adapter
	caches  []*kvCache
	graphs  map[int]*decodeGraph
}

// decodeGraph is a batch-1 graph of a fixed number of positions with its VM.
type decodeGraph struct {
	model *Model
	vm    G.VM
}

// NewGenerator returns a generator for the model in store s with adapter
// (nil for none), which must already be attached if it has parameters.
func NewGenerator(c Config, s *layers.Store, adapter layers.Adapter) (*Generator, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := checkStore(c, s); err != nil {
		return nil, errors.Wrap(err, "llama.NewGenerator")
	}
	gen := &Generator{cfg: c, store: s, adapter: adapter, graphs: map[int]*decodeGraph{}}
	for l := 0; l < c.NLayers; l++ {
		gen.caches = append(gen.caches, &kvCache{batch: 1, maxSeq: c.MaxSeqLen, width: c.KVDim()})
	}
	return gen, nil
}

// Close releases the generator's graphs.
func (gen *Generator) Close() {
	for _, d := range gen.graphs {
		d.vm.Close()
	}
	gen.graphs = map[int]*decodeGraph{}
}

// graph returns the decoding graph for n positions.
func (gen *Generator) graph(n int) (*decodeGraph, error) {
	if d, ok := gen.graphs[n]; ok {
		return d, nil
	}
	g := gen.store.NewGraph(false)
	m, err := build(g, gen.cfg, gen.adapter, 1, n, gen.caches)
	if err != nil {
		return nil, err
	}
	vm, err := g.Machine(nil, m.Logits)
	if err != nil {
		return nil, errors.Wrap(err, "llama: decoding graph")
	}
	d := &decodeGraph{model: m, vm: vm}
	gen.graphs[n] = d
	return d, nil
}

// forward runs tokens at positions start, start+1, ... and returns the
// logits of the last one.
func (gen *Generator) forward(tokens []int, start int) ([]float64, error) {
	d, err := gen.graph(len(tokens))
	if err != nil {
		return nil, err
	}
	copy(d.model.Tokens.Value().Data().([]int), tokens)
	pos := d.model.Positions.Value().Data().([]int)
	for i := range pos {
		pos[i] = start + i
	}
	d.vm.Reset()
	if err := d.vm.RunAll(); err != nil {
		return nil, errors.Wrap(err, "llama: forward pass")
	}
	v := gen.cfg.VocabSize
	all := d.model.Logits.Value().(*tensor.Dense)
	out := make([]float64, v)
	switch x := all.Data().(type) {
	case []float32:
		for i, f := range x[len(x)-v:] {
			out[i] = float64(f)
		}
	case []float64:
		copy(out, x[len(x)-v:])
	}
	if i := layers.FirstNonFinite(out); i >= 0 {
		return nil, errors.Errorf("llama: the logits at position %d are not finite (%v for token %d): the weights or the adapter overflow; generation stopped", start+len(tokens)-1, out[i], i)
	}
	return out, nil
}

// GenerateTokens continues the prompt ids (at least one, usually starting
// with BOS) until Steps positions have run or a Stop token is drawn. Logits
// that are not finite (NaN or ±Inf) stop it with an error: no token can be
// drawn from them.
func (gen *Generator) GenerateTokens(prompt []int, opt SampleOptions) (*Generation, error) {
	c := gen.cfg
	steps := opt.Steps
	if steps <= 0 || steps > c.MaxSeqLen {
		steps = c.MaxSeqLen
	}
	if len(prompt) == 0 || len(prompt) > steps {
		return nil, errors.Errorf("llama: the prompt has %d tokens; it needs 1..%d", len(prompt), steps)
	}
	for _, id := range prompt {
		if id < 0 || id >= c.VocabSize {
			return nil, errors.Errorf("llama: prompt token %d outside [0, %d)", id, c.VocabSize)
		}
	}
	if math.IsNaN(opt.Temperature) || opt.Temperature < 0 || math.IsNaN(opt.TopP) {
		return nil, errors.Errorf("llama: temperature %v / top-p %v", opt.Temperature, opt.TopP)
	}
	stop := map[int]bool{}
	for _, s := range opt.Stop {
		stop[s] = true
	}
	rng := rand.New(rand.NewPCG(opt.Seed, 0x5a3e))
	res := &Generation{Tokens: append([]int(nil), prompt...), Prompt: len(prompt)}
	begin := time.Now()
	logits, err := gen.forward(prompt, 0)
	if err != nil {
		return nil, err
	}
	for {
		next := sample(logits, opt.Temperature, opt.TopP, rng)
		if stop[next] {
			break
		}
		res.Tokens = append(res.Tokens, next)
		pos := len(res.Tokens) - 1
		if pos >= steps {
			break
		}
		if logits, err = gen.forward([]int{next}, pos); err != nil {
			return nil, err
		}
	}
	res.Elapsed = time.Since(begin)
	return res, nil
}

// Generate encodes prompt (with BOS), continues it as GenerateTokens does,
// stopping at BOS or EOS unless opt.Stop says otherwise, and decodes the
// result.
func (gen *Generator) Generate(tok Tokenizer, prompt string, opt SampleOptions) (*Generation, error) {
	if tok == nil {
		return nil, errors.New("llama: no tokenizer")
	}
	if tok.VocabSize() != gen.cfg.VocabSize {
		return nil, errors.Errorf("llama: the tokenizer has %d tokens, the model %d", tok.VocabSize(), gen.cfg.VocabSize)
	}
	ids, err := tok.Encode(prompt, true, false)
	if err != nil {
		return nil, errors.Wrap(err, "llama: encoding the prompt")
	}
	if opt.Stop == nil {
		opt.Stop = []int{tok.BOS(), tok.EOS()}
	}
	res, err := gen.GenerateTokens(ids, opt)
	if err != nil {
		return nil, err
	}
	var text []byte
	for i := 1; i < len(res.Tokens); i++ {
		s, err := tok.Decode(res.Tokens[i-1], res.Tokens[i])
		if err != nil {
			return nil, errors.Wrap(err, "llama: decoding")
		}
		text = append(text, s...)
	}
	res.Text = string(text)
	return res, nil
}

// Generate is NewGenerator followed by Generator.Generate, for one-off use.
func Generate(c Config, s *layers.Store, adapter layers.Adapter, tok Tokenizer, prompt string, opt SampleOptions) (*Generation, error) {
	gen, err := NewGenerator(c, s, adapter)
	if err != nil {
		return nil, err
	}
	defer gen.Close()
	return gen.Generate(tok, prompt, opt)
}

// sample picks the next token: the argmax (the first on ties) at
// temperature 0, else a draw from softmax(logits/temperature), restricted
// to the top-p nucleus when 0 < topP < 1.
func sample(logits []float64, temperature, topP float64, rng *rand.Rand) int {
	if temperature == 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return best
	}
	probs := make([]float64, len(logits))
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, v/temperature)
	}
	var z float64
	for i, v := range logits {
		probs[i] = math.Exp(v/temperature - mx)
		z += probs[i]
	}
	for i := range probs {
		probs[i] /= z
	}
	idx := make([]int, len(probs))
	for i := range idx {
		idx[i] = i
	}
	mass := 1.0
	if topP > 0 && topP < 1 {
		sort.SliceStable(idx, func(a, b int) bool { return probs[idx[a]] > probs[idx[b]] })
		var cum float64
		for k, i := range idx {
			cum += probs[i]
			if cum >= topP {
				idx = idx[:k+1]
				break
			}
		}
		mass = cum
	}
	r := rng.Float64() * mass
	var cum float64
	for _, i := range idx {
		cum += probs[i]
		if r < cum {
			return i
		}
	}
	return idx[len(idx)-1]
}
