package llama

import (
	"github.com/lilygo/lily/gemm"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Model is one LLaMA graph for a fixed (batch, sequence length), bound to a
// store: its inputs, its logits and, once Loss has been called, its loss.
type Model struct {
	// Config is the model's configuration.
	Config Config
	// Batch and SeqLen are the graph's fixed input shape.
	Batch, SeqLen int
	// Tokens is the int input [Batch, SeqLen] of token ids.
	Tokens *G.Node
	// Positions is the int input [SeqLen] of rotary positions; Build fills
	// it with 0..SeqLen-1.
	Positions *G.Node
	// Mask is the padding mask [Batch, SeqLen] (1 for real tokens, 0 for
	// padding), in the store's dtype; Build fills it with ones. It is the
	// graph's pad mask, which Lily's sequence routing (and batch routing
	// with masking) reads.
	Mask *G.Node
	// Logits is the output [Batch, SeqLen, VocabSize].
	Logits *G.Node
	// Targets is the int input [Batch, SeqLen] of next-token targets
	// (lilyop.IgnoreIndex where no loss is taken); nil until Loss is called.
	Targets *G.Node

	graph *layers.Graph
	loss  *G.Node
}

// Build adds the LLaMA forward pass for inputs of shape [batch, seqLen] to
// g: token embedding; per block x += o_proj(attn(rope(q), rope(k), v)) on
// RMSNorm(x) and x += down_proj(silu(gate_proj(h))·up_proj(h)) on
// RMSNorm(x); the final RMSNorm; the output head (tied to the embedding or
// lm_head). Attention is causal, so right padding never changes the
// outputs at real positions. Every linear of Config.Sites goes through
// adapter (nil means none), which must have been attached to the store
// (layers.Attach) when it has parameters.
func Build(g *layers.Graph, c Config, adapter layers.Adapter, batch, seqLen int) (*Model, error) {
	return build(g, c, adapter, batch, seqLen, nil)
}

// build is Build; with caches (one per layer) attention stores and reads
// past keys and values for incremental decoding.
func build(g *layers.Graph, c Config, adapter layers.Adapter, batch, seqLen int, caches []*kvCache) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if g == nil {
		return nil, errors.New("llama.Build: no graph")
	}
	if batch <= 0 || seqLen <= 0 || seqLen > c.MaxSeqLen {
		return nil, errors.Errorf("llama.Build: batch %d, sequence length %d (the model allows 1..%d)", batch, seqLen, c.MaxSeqLen)
	}
	if err := checkStore(c, g.Store()); err != nil {
		return nil, errors.Wrap(err, "llama.Build")
	}
	m := &Model{Config: c, Batch: batch, SeqLen: seqLen, graph: g}
	m.Tokens = layers.IDs(g, "tokens", batch, seqLen)
	m.Positions = layers.IDs(g, "positions", seqLen)
	pos := m.Positions.Value().Data().([]int)
	for i := range pos {
		pos[i] = i
	}
	m.Mask = g.Input("mask", batch, seqLen)
	fill(m.Mask.Value().(*tensor.Dense), 1)
	g.SetPadMask(m.Mask)

	x, err := layers.Embedding(g, m.Tokens, EmbedName)
	if err != nil {
		return nil, errors.Wrap(err, "llama.Build")
	}
	sites := c.Sites()
	for l := 0; l < c.NLayers; l++ {
		var cache *kvCache
		if caches != nil {
			cache = caches[l]
		}
		if x, err = m.block(g, adapter, l, sites[7*l:7*l+7], x, cache); err != nil {
			return nil, errors.Wrapf(err, "llama.Build: layer %d", l)
		}
	}
	if x, err = layers.RMSNorm(g, x, FinalNormName, c.NormEps); err != nil {
		return nil, errors.Wrap(err, "llama.Build")
	}
	if c.TiedEmbeddings {
		table, err := g.Param(EmbedName)
		if err != nil {
			return nil, errors.Wrap(err, "llama.Build")
		}
		m.Logits, err = lilyop.MatMulNT(x, table)
		if err != nil {
			return nil, errors.Wrap(err, "llama.Build")
		}
		return m, nil
	}
	w, err := g.Param(HeadName)
	if err != nil {
		return nil, errors.Wrap(err, "llama.Build")
	}
	if m.Logits, err = layers.Base(x, w, nil); err != nil {
		return nil, errors.Wrap(err, "llama.Build")
	}
	return m, nil
}

// block adds transformer block l to x.
func (m *Model) block(g *layers.Graph, adapter layers.Adapter, l int, sites []layers.Site, x *G.Node, cache *kvCache) (*G.Node, error) {
	c := m.Config
	lin := func(i int, in *G.Node) (*G.Node, error) { return layers.Linear(g, adapter, sites[i], in) }
	h, err := layers.RMSNorm(g, x, inputNormName(l), c.NormEps)
	if err != nil {
		return nil, err
	}
	var qkv [3]*G.Node
	for i := range qkv {
		if qkv[i], err = lin(i, h); err != nil {
			return nil, err
		}
	}
	hd := c.HeadDim()
	q, err := ropeScaled(qkv[0], m.Positions, c.NHeads, hd, c.RopeTheta, c.Rope, c.RopeScaling)
	if err != nil {
		return nil, err
	}
	k, err := ropeScaled(qkv[1], m.Positions, c.NKVHeads, hd, c.RopeTheta, c.Rope, c.RopeScaling)
	if err != nil {
		return nil, err
	}
	var a *G.Node
	if cache != nil {
		a, err = cachedAttention(q, k, qkv[2], m.Positions, c.NHeads, c.NKVHeads, hd, cache)
	} else {
		a, err = attention(q, k, qkv[2], c.NHeads, c.NKVHeads, hd)
	}
	if err != nil {
		return nil, err
	}
	o, err := lin(3, a)
	if err != nil {
		return nil, err
	}
	if x, err = G.Add(x, o); err != nil {
		return nil, err
	}
	if h, err = layers.RMSNorm(g, x, postNormName(l), c.NormEps); err != nil {
		return nil, err
	}
	gate, err := lin(4, h)
	if err != nil {
		return nil, err
	}
	up, err := lin(5, h)
	if err != nil {
		return nil, err
	}
	act, err := layers.SiLU(gate)
	if err != nil {
		return nil, err
	}
	prod, err := G.HadamardProd(act, up)
	if err != nil {
		return nil, err
	}
	down, err := lin(6, prod)
	if err != nil {
		return nil, err
	}
	return G.Add(x, down)
}

// Loss returns the mean next-token cross-entropy (lilyop.CrossEntropy) over
// the positions whose target is not lilyop.IgnoreIndex, adding the Targets
// input on first use. Fill Targets with SetBatch, or directly.
func (m *Model) Loss() (*G.Node, error) {
	if m.loss != nil {
		return m.loss, nil
	}
	m.Targets = layers.IDs(m.graph, "targets", m.Batch, m.SeqLen)
	fillInts(m.Targets, lilyop.IgnoreIndex)
	loss, err := lilyop.CrossEntropy(m.Logits, m.Targets)
	if err != nil {
		return nil, errors.Wrap(err, "llama.Model.Loss")
	}
	m.loss = loss
	return loss, nil
}

// SetBatch fills the inputs with up to Batch token sequences of at most
// SeqLen tokens each, right-padded: Tokens (padding id 0), Mask (1 on real
// tokens) and, when Loss has been called, Targets (the next token of each
// real position; lilyop.IgnoreIndex at the last real position and on
// padding).
// Rows beyond len(seqs) are all padding.
func (m *Model) SetBatch(seqs [][]int) error {
	if len(seqs) > m.Batch {
		return errors.Errorf("llama.SetBatch: %d sequences for a batch of %d", len(seqs), m.Batch)
	}
	for i, s := range seqs {
		if len(s) > m.SeqLen {
			return errors.Errorf("llama.SetBatch: sequence %d has %d tokens, the graph holds %d", i, len(s), m.SeqLen)
		}
		for _, id := range s {
			if id < 0 || id >= m.Config.VocabSize {
				return errors.Errorf("llama.SetBatch: sequence %d holds token %d outside [0, %d)", i, id, m.Config.VocabSize)
			}
		}
	}
	tok := m.Tokens.Value().Data().([]int)
	var tgt []int
	if m.Targets != nil {
		tgt = m.Targets.Value().Data().([]int)
	}
	mask := make([]float64, m.Batch*m.SeqLen)
	for b := 0; b < m.Batch; b++ {
		var s []int
		if b < len(seqs) {
			s = seqs[b]
		}
		for t := 0; t < m.SeqLen; t++ {
			i := b*m.SeqLen + t
			tok[i] = 0
			if t < len(s) {
				tok[i] = s[t]
				mask[i] = 1
			}
			if tgt != nil {
				tgt[i] = lilyop.IgnoreIndex
				if t+1 < len(s) {
					tgt[i] = s[t+1]
				}
			}
		}
	}
	setFloats(m.Mask.Value().(*tensor.Dense), mask)
	return nil
}

// fill sets every element of a float32 or float64 tensor to v.
func fill(t *tensor.Dense, v float64) {
	n := t.Shape().TotalSize()
	vals := make([]float64, n)
	for i := range vals {
		vals[i] = v
	}
	setFloats(t, vals)
}

// setFloats copies vals into a float32, float64, bfloat16 or float16 tensor
// (into the halves rounded to nearest even: exact for their values).
func setFloats(t *tensor.Dense, vals []float64) {
	switch d := t.Data().(type) {
	case []gemm.BF16:
		for i, v := range vals {
			d[i] = gemm.ToBF16(float32(v))
		}
	case []gemm.F16:
		for i, v := range vals {
			d[i] = gemm.ToF16(float32(v))
		}
	case []float64:
		copy(d, vals)
	case []float32:
		for i, v := range vals {
			d[i] = float32(v)
		}
	}
}

func fillInts(n *G.Node, v int) {
	d := n.Value().Data().([]int)
	for i := range d {
		d[i] = v
	}
}
