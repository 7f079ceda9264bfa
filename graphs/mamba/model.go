package mamba

import (
	"fmt"

	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Input node names; Build creates them in its graph.
const (
	inputIDsName      = "input_ids"
	labelsName        = "labels"
	attentionMaskName = "attention_mask"
)

// IgnoreIndex marks a label that the loss skips, as PyTorch's
// cross_entropy and Hugging Face's causal-LM losses do (-100).
const IgnoreIndex = lilyop.IgnoreIndex

// Model is one Mamba language-model graph for a fixed batch size and
// sequence length, bound to the store of the layers.Graph it was built in.
// Fill its inputs with SetInputs before each run.
type Model struct {
	// Config is the model's configuration.
	Config Config
	// Batch and SeqLen are the graph's fixed input shape.
	Batch, SeqLen int
	// Graph is the graph the model was built in.
	Graph *layers.Graph

	// InputIDs [batch, seq] (tensor.Int) are the token ids.
	InputIDs *G.Node
	// Labels [batch, seq] (tensor.Int) are the token each position must
	// predict, or IgnoreIndex; NextTokenLabels derives them from ids.
	Labels *G.Node
	// AttentionMask [batch, seq] (the store's dtype) is 1 for real tokens
	// and 0 for padding. The model itself ignores it (it is causal, so
	// right padding never reaches real tokens); it is the graph's padding
	// mask (layers.Graph.SetPadMask), which Lily's sequence routing and
	// masked batch routing read.
	AttentionMask *G.Node

	// Hidden [batch, seq, hidden] is the final RMSNorm's output.
	Hidden *G.Node
	// Logits [batch, seq, vocab] are the LM head's output.
	Logits *G.Node
	// Loss is the mean cross-entropy of Logits against Labels over the
	// labels that are not IgnoreIndex, 0 when there are none: one fused
	// lilyop.CrossEntropy node.
	Loss *G.Node

	targets int // labels that are not IgnoreIndex, from the last SetInputs
}

// builder carries what every block of one Build needs.
type builder struct {
	g     *layers.Graph
	cfg   Config
	ad    layers.Adapter
	units map[int]*G.Node // unit weights of the mixer RMSNorms, by width
}

// Build adds a Mamba language model to g, computing what Hugging Face's
// MambaForCausalLM (FalconMambaForCausalLM with mixer_rms_eps) computes:
// embedding, num_hidden_layers pre-norm residual blocks
// x + mixer(RMSNorm(x)), the final RMSNorm, and the LM head (the embedding
// transposed when tied). The mixer is in_proj → split into x and the gate
// z; x → causal depthwise conv1d → SiLU → x_proj → (dt, B, C); dt →
// dt_proj → softplus → delta; the selective scan with A = −exp(A_log) and
// skip D; the output gated by SiLU(z) → out_proj. The four linears go
// through layers.Linear with adapter (nil means none) at the sites
// cfg.Sites() lists. Build also adds the loss against Labels.
//
// Several graphs (shape buckets, training and evaluation) may be built on
// one store; they share its tensors. Mamba has no dropout, so training and
// evaluation graphs compute the same.
func Build(g *layers.Graph, cfg Config, adapter layers.Adapter, batch, seqLen int) (*Model, error) {
	if g == nil {
		return nil, errors.New("mamba.Build: nil graph")
	}
	if err := cfg.Validate(); err != nil {
		return nil, errors.Wrap(err, "mamba.Build")
	}
	if batch < 1 || seqLen < 1 {
		return nil, errors.Errorf("mamba.Build: batch %d and sequence length %d must be positive", batch, seqLen)
	}
	if adapter == nil {
		adapter = layers.None{}
	}
	m := &Model{Config: cfg, Batch: batch, SeqLen: seqLen, Graph: g}
	bd := &builder{g: g, cfg: cfg, ad: adapter, units: map[int]*G.Node{}}
	if err := bd.build(m); err != nil {
		return nil, errors.Wrap(err, "mamba.Build")
	}
	return m, nil
}

// build adds inputs, embedding, blocks, final norm, head and loss.
func (bd *builder) build(m *Model) error {
	g, cfg := bd.g, bd.cfg
	m.InputIDs = layers.IDs(g, inputIDsName, m.Batch, m.SeqLen)
	m.Labels = layers.IDs(g, labelsName, m.Batch, m.SeqLen)
	m.AttentionMask = g.Input(attentionMaskName, m.Batch, m.SeqLen)
	if err := m.SetInputs(make([]int, m.Batch*m.SeqLen), nil, nil); err != nil {
		return err
	}
	g.SetPadMask(m.AttentionMask)
	x, err := layers.Embedding(g, m.InputIDs, EmbeddingName)
	if err != nil {
		return err
	}
	sites := cfg.Sites()
	for l := 0; l < cfg.NumHiddenLayers; l++ {
		if x, err = bd.block(l, sites[4*l:4*l+4], x); err != nil {
			return errors.Wrapf(err, "block %d", l)
		}
	}
	if m.Hidden, err = layers.RMSNorm(g, x, NormFName, cfg.LayerNormEpsilon); err != nil {
		return err
	}
	if cfg.TieWordEmbeddings {
		table, err := g.Param(EmbeddingName)
		if err != nil {
			return err
		}
		// The LM head is tied to the embeddings: x·tableᵀ, one GEMM
		// without a transpose node.
		m.Logits, err = lilyop.MatMulNT(m.Hidden, table)
		if err != nil {
			return err
		}
	} else {
		head, err := g.Param(LMHeadName)
		if err != nil {
			return err
		}
		if m.Logits, err = lilyop.MatMul(m.Hidden, head); err != nil {
			return err
		}
	}
	m.Loss, err = lilyop.CrossEntropy(m.Logits, m.Labels)
	return err
}

// fill sets every element of a float tensor to v.
func fill(t *tensor.Dense, v float64) {
	switch d := t.Data().(type) {
	case []float32:
		for i := range d {
			d[i] = float32(v)
		}
	case []float64:
		for i := range d {
			d[i] = v
		}
	}
}

// block returns x + mixer(RMSNorm(x)) for block l with sites in_proj,
// x_proj, dt_proj, out_proj.
func (bd *builder) block(l int, sites []layers.Site, x *G.Node) (*G.Node, error) {
	g, cfg := bd.g, bd.cfg
	di, r, n := cfg.DInner(), cfg.TimeStepRank, cfg.StateSize
	p := mixerPath(l)
	h, err := layers.RMSNorm(g, x, LayerPath(l)+".norm.weight", cfg.LayerNormEpsilon)
	if err != nil {
		return nil, err
	}
	xz, err := layers.Linear(g, bd.ad, sites[0], h)
	if err != nil {
		return nil, err
	}
	u, err := Narrow(xz, 0, di)
	if err != nil {
		return nil, err
	}
	z, err := Narrow(xz, di, 2*di)
	if err != nil {
		return nil, err
	}
	convW, err := g.Param(p + ".conv1d.weight")
	if err != nil {
		return nil, err
	}
	var convB *G.Node
	if cfg.UseConvBias {
		if convB, err = g.Param(p + ".conv1d.bias"); err != nil {
			return nil, err
		}
	}
	if u, err = CausalConv1D(u, convW, convB); err != nil {
		return nil, err
	}
	if u, err = layers.SiLU(u); err != nil {
		return nil, err
	}
	ssm, err := layers.Linear(g, bd.ad, sites[1], u)
	if err != nil {
		return nil, err
	}
	parts := make([]*G.Node, 3) // dt, B, C
	for i, cols := range [][2]int{{0, r}, {r, r + n}, {r + n, r + 2*n}} {
		if parts[i], err = Narrow(ssm, cols[0], cols[1]); err != nil {
			return nil, err
		}
		if cfg.MixerRMSEps != nil {
			if parts[i], err = bd.unitRMSNorm(parts[i], cols[1]-cols[0]); err != nil {
				return nil, err
			}
		}
	}
	dt, err := layers.Linear(g, bd.ad, sites[2], parts[0])
	if err != nil {
		return nil, err
	}
	aLog, err := g.Param(p + ".A_log")
	if err != nil {
		return nil, err
	}
	D, err := g.Param(p + ".D")
	if err != nil {
		return nil, err
	}
	A, err := G.Exp(aLog)
	if err != nil {
		return nil, err
	}
	if A, err = G.Neg(A); err != nil {
		return nil, err
	}
	y, err := SelectiveScan(u, dt, A, parts[1], parts[2], D, ScanOptions{DeltaSoftplus: true})
	if err != nil {
		return nil, err
	}
	gate, err := layers.SiLU(z)
	if err != nil {
		return nil, err
	}
	if y, err = G.HadamardProd(y, gate); err != nil {
		return nil, err
	}
	out, err := layers.Linear(g, bd.ad, sites[3], y)
	if err != nil {
		return nil, err
	}
	return G.Add(x, out)
}

// unitRMSNorm is Falcon-Mamba's weightless RMSNorm over a last axis of
// width w: RMSNorm with a unit weight.
func (bd *builder) unitRMSNorm(x *G.Node, w int) (*G.Node, error) {
	ones, ok := bd.units[w]
	if !ok {
		ones = bd.g.Input(fmt.Sprintf("mamba.mixer_rms_unit_weight.%d", w), w)
		fill(ones.Value().(*tensor.Dense), 1)
		bd.units[w] = ones
	}
	return lilyop.RMSNorm(x, ones, *bd.cfg.MixerRMSEps)
}

// SetInputs fills the model's inputs for one batch, each [batch, seq]
// flattened row-major: token ids, labels (the token each position predicts,
// or IgnoreIndex; nil means all ignored) and the attention mask (1 real, 0
// padding; nil means all ones).
func (m *Model) SetInputs(ids, labels, mask []int) error {
	n := m.Batch * m.SeqLen
	if len(ids) != n || labels != nil && len(labels) != n || mask != nil && len(mask) != n {
		return errors.Errorf("mamba.SetInputs: %d ids, %d labels and %d mask values for a [%d, %d] graph", len(ids), len(labels), len(mask), m.Batch, m.SeqLen)
	}
	v := m.Config.VocabSize
	targets := 0
	for i := range ids {
		if ids[i] < 0 || ids[i] >= v {
			return errors.Errorf("mamba.SetInputs: id %d at %d is outside [0, %d)", ids[i], i, v)
		}
		if labels != nil && labels[i] != IgnoreIndex {
			if labels[i] < 0 || labels[i] >= v {
				return errors.Errorf("mamba.SetInputs: label %d at %d is outside [0, %d) and not IgnoreIndex", labels[i], i, v)
			}
			targets++
		}
		if mask != nil && mask[i] != 0 && mask[i] != 1 {
			return errors.Errorf("mamba.SetInputs: mask value %d at %d is not 0 or 1", mask[i], i)
		}
	}
	copy(m.InputIDs.Value().Data().([]int), ids)
	lab := m.Labels.Value().Data().([]int)
	if labels == nil {
		for i := range lab {
			lab[i] = IgnoreIndex
		}
	} else {
		copy(lab, labels)
	}
	mk := m.AttentionMask.Value().(*tensor.Dense)
	fill(mk, 1)
	for i, x := range mask {
		if x == 0 {
			switch d := mk.Data().(type) {
			case []float32:
				d[i] = 0
			case []float64:
				d[i] = 0
			}
		}
	}
	m.targets = targets
	return nil
}

// Targets returns the number of labels of the current inputs that are not
// IgnoreIndex: the count Loss averages over.
func (m *Model) Targets() int { return m.targets }

// NextTokenLabels returns the causal-LM labels of ids ([rows, seqLen]
// flattened): each position predicts the next token of its row, and the
// last position of every row, as well as positions whose next token is
// padding (mask 0; mask may be nil), get IgnoreIndex. This is the shift
// Hugging Face's causal-LM loss applies to labels = input_ids.
func NextTokenLabels(ids, mask []int, seqLen int) ([]int, error) {
	if seqLen < 1 || len(ids)%seqLen != 0 || mask != nil && len(mask) != len(ids) {
		return nil, errors.Errorf("mamba.NextTokenLabels: %d ids (%d mask values) do not form rows of %d", len(ids), len(mask), seqLen)
	}
	out := make([]int, len(ids))
	for i := range ids {
		out[i] = IgnoreIndex
		if (i+1)%seqLen != 0 && (mask == nil || mask[i+1] == 1) {
			out[i] = ids[i+1]
		}
	}
	return out, nil
}
