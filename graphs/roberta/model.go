package roberta

import (
	"github.com/lilygo/lily/gorgoniafix"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Options selects the heads Build adds on top of the encoder.
type Options struct {
	// Classifier adds RobertaClassificationHead's logits (the store needs
	// classifier.*, see AddClassifier).
	Classifier bool
	// MLM adds RobertaLMHead's logits (the store needs lm_head.*, see
	// AddLMHead); the decoder is tied to the word embeddings.
	MLM bool
}

// Input node names; Build creates them in its graph.
const (
	inputIDsName      = "input_ids"
	positionIDsName   = "position_ids"
	tokenTypeIDsName  = "token_type_ids"
	attentionMaskName = "attention_mask"
)

// Model is one RoBERTa graph for a fixed batch size and sequence length,
// bound to the store of the layers.Graph it was built in. Fill its inputs
// with SetInputs before each run.
type Model struct {
	// Config is the model's configuration.
	Config Config
	// Batch and SeqLen are the graph's fixed input shape.
	Batch, SeqLen int

	// InputIDs [batch, seq] (tensor.Int) are the token ids.
	InputIDs *G.Node
	// PositionIDs [batch, seq] (tensor.Int) are derived from InputIDs by
	// SetInputs as Hugging Face does.
	PositionIDs *G.Node
	// TokenTypeIDs [batch, seq] (tensor.Int) are the segment ids.
	TokenTypeIDs *G.Node
	// AttentionMask [batch, seq] (the store's dtype) is 1 for real tokens
	// and 0 for padding. It is also the graph's padding mask
	// (layers.Graph.SetPadMask), so Lily's sequence routing sees it.
	AttentionMask *G.Node

	// Hidden [batch, seq, hidden] is the encoder's last hidden state.
	Hidden *G.Node
	// Logits [batch, num_labels] are the classification head's output, or
	// nil without Options.Classifier.
	Logits *G.Node
	// MLMLogits [batch, seq, vocab] are the MLM head's output, or nil
	// without Options.MLM.
	MLMLogits *G.Node
}

// builder carries what every layer of one Build needs.
type builder struct {
	g    *layers.Graph
	cfg  Config
	ad   layers.Adapter
	b, t int
}

// Build adds a RoBERTa encoder (and the heads opts asks for) to g, computing
// exactly what Hugging Face's RobertaModel computes: word, position and
// token-type embeddings, embedding LayerNorm, then num_hidden_layers post-LN
// blocks of multi-head self-attention with an additive padding mask and an
// exact-GELU feed-forward network. Every linear of the blocks goes through
// layers.Linear with adapter (nil means none) at the sites cfg.Sites()
// lists. In a training graph, dropout follows Hugging Face (embeddings,
// attention probabilities, both block outputs, the classifier) through
// layers.Graph.Dropout; call g.RefillDropout before each training run.
//
// Several graphs (shape buckets, training and evaluation) may be built on
// one store; they share its tensors. A graph holds at most one model.
func Build(g *layers.Graph, cfg Config, adapter layers.Adapter, batch, seqLen int, opts Options) (*Model, error) {
	if g == nil {
		return nil, errors.New("roberta.Build: nil graph")
	}
	if err := cfg.Validate(); err != nil {
		return nil, errors.Wrap(err, "roberta.Build")
	}
	if batch < 1 || seqLen < 1 {
		return nil, errors.Errorf("roberta.Build: batch %d and sequence length %d must be positive", batch, seqLen)
	}
	if seqLen > cfg.MaxSeqLen() {
		return nil, errors.Errorf("roberta.Build: sequence length %d exceeds the %d positions the config allows", seqLen, cfg.MaxSeqLen())
	}
	if len(g.G.ByName(inputIDsName)) > 0 {
		return nil, errors.New("roberta.Build: the graph already holds a model; build one model per graph")
	}
	if adapter == nil {
		adapter = layers.None{}
	}
	m := &Model{Config: cfg, Batch: batch, SeqLen: seqLen}
	bd := &builder{g: g, cfg: cfg, ad: adapter, b: batch, t: seqLen}
	if err := bd.encoder(m); err != nil {
		return nil, errors.Wrap(err, "roberta.Build")
	}
	if opts.Classifier {
		if err := bd.classifier(m); err != nil {
			return nil, errors.Wrap(err, "roberta.Build: classification head")
		}
	}
	if opts.MLM {
		if err := bd.lmHead(m); err != nil {
			return nil, errors.Wrap(err, "roberta.Build: MLM head")
		}
	}
	return m, nil
}

// encoder builds the inputs, embeddings and layers.
func (bd *builder) encoder(m *Model) error {
	g, cfg := bd.g, bd.cfg
	m.InputIDs = layers.IDs(g, inputIDsName, bd.b, bd.t)
	m.PositionIDs = layers.IDs(g, positionIDsName, bd.b, bd.t)
	m.TokenTypeIDs = layers.IDs(g, tokenTypeIDsName, bd.b, bd.t)
	m.AttentionMask = g.Input(attentionMaskName, bd.b, bd.t)
	g.SetPadMask(m.AttentionMask)

	x, err := layers.Embedding(g, m.InputIDs, wordEmbeddings)
	if err != nil {
		return err
	}
	typ, err := layers.Embedding(g, m.TokenTypeIDs, tokenTypeEmbedding)
	if err != nil {
		return err
	}
	pos, err := layers.Embedding(g, m.PositionIDs, positionEmbeddings)
	if err != nil {
		return err
	}
	if x, err = lilyop.Add(x, typ); err != nil {
		return errors.Wrap(err, "embeddings")
	}
	if x, err = lilyop.Add(x, pos); err != nil {
		return errors.Wrap(err, "embeddings")
	}
	if x, err = bd.addNorm(x, nil, embeddingsNorm, prefix+"embeddings.dropout"); err != nil {
		return err
	}
	sites := cfg.Sites()
	for l := 0; l < cfg.NumHiddenLayers; l++ {
		if x, err = bd.layer(l, sites[6*l:6*l+6], x); err != nil {
			return errors.Wrapf(err, "layer %d", l)
		}
	}
	m.Hidden = x
	return nil
}

// addNorm returns LayerNorm(dropout(x) + residual) with the LayerNorm
// parameters norm.weight and norm.bias; residual may be nil.
func (bd *builder) addNorm(x, residual *G.Node, norm, dropName string) (*G.Node, error) {
	x, err := bd.g.Dropout(x, bd.cfg.HiddenDropoutProb, dropName)
	if err != nil {
		return nil, err
	}
	if residual != nil {
		if x, err = lilyop.Add(x, residual); err != nil {
			return nil, errors.Wrapf(err, "residual before %s", norm)
		}
	}
	return layers.LayerNorm(bd.g, x, norm+".weight", norm+".bias", bd.cfg.LayerNormEps)
}

// layer builds one encoder block; sites are its six linears in Sites order.
func (bd *builder) layer(l int, sites []layers.Site, x *G.Node) (*G.Node, error) {
	g, cfg := bd.g, bd.cfg
	// Query, key and value read the same x: an adapter may share the work
	// on it (Lily's and LoRA's down-projections become one GEMM).
	qkv, err := layers.LinearGroup(g, bd.ad, sites[:3], x)
	if err != nil {
		return nil, err
	}
	base := layerPath(l)
	var drop *G.Node
	if p := cfg.AttentionProbsDropoutProb; g.Train() && p > 0 {
		h := cfg.NumAttentionHeads
		ones := g.Input(base+".attention.self.dropout_ones", bd.b, h, bd.t, bd.t)
		fillOnes(ones.Value().(*tensor.Dense))
		name := base + ".attention.self.dropout"
		if drop, err = g.Dropout(ones, p, name); err != nil {
			return nil, err
		}
		// The dropout's output is ones⊙mask, i.e. the mask itself: give the
		// attention the mask input directly, so a machine that runs only
		// what the loss needs (layers.Graph.Machine) skips the product, a
		// [batch, heads, tokens, tokens] tensor per layer and step.
		if masks := g.G.ByName(name + gorgoniafix.MaskSuffix); len(masks) == 1 {
			drop = masks[0]
		}
	}
	ctx, err := selfAttention(qkv[0], qkv[1], qkv[2], g.PadMask(), drop, cfg.NumAttentionHeads)
	if err != nil {
		return nil, err
	}
	a, err := layers.Linear(g, bd.ad, sites[3], ctx)
	if err != nil {
		return nil, err
	}
	if a, err = bd.addNorm(a, x, base+".attention.output.LayerNorm", base+".attention.output.dropout"); err != nil {
		return nil, err
	}
	h, err := layers.Linear(g, bd.ad, sites[4], a)
	if err != nil {
		return nil, err
	}
	if h, err = layers.GELU(h); err != nil {
		return nil, err
	}
	if h, err = layers.Linear(g, bd.ad, sites[5], h); err != nil {
		return nil, err
	}
	return bd.addNorm(h, a, base+".output.LayerNorm", base+".output.dropout")
}

// fillOnes sets every element of a float tensor to 1.
func fillOnes(t *tensor.Dense) {
	switch d := t.Data().(type) {
	case []float32:
		for i := range d {
			d[i] = 1
		}
	case []float64:
		for i := range d {
			d[i] = 1
		}
	}
}

// dense applies the frozen-or-trainable linear path.weight/path.bias without
// an adapter (the heads are not adapter sites).
func (bd *builder) dense(path string, x *G.Node) (*G.Node, error) {
	w, err := bd.g.Param(path + ".weight")
	if err != nil {
		return nil, err
	}
	b, err := bd.g.Param(path + ".bias")
	if err != nil {
		return nil, err
	}
	y, err := layers.Base(x, w, b)
	return y, errors.Wrap(err, path)
}

// classifier builds RobertaClassificationHead: dropout, dense, tanh,
// dropout, out_proj, on the <s> token.
func (bd *builder) classifier(m *Model) error {
	p := bd.cfg.classifierDropout()
	x, err := firstToken(m.Hidden)
	if err != nil {
		return err
	}
	if x, err = bd.g.Dropout(x, p, "classifier.dropout.0"); err != nil {
		return err
	}
	if x, err = bd.dense(classifierDense, x); err != nil {
		return err
	}
	if x, err = G.Tanh(x); err != nil {
		return errors.Wrap(err, "classifier tanh")
	}
	if x, err = bd.g.Dropout(x, p, "classifier.dropout.1"); err != nil {
		return err
	}
	m.Logits, err = bd.dense(classifierOut, x)
	return err
}

// lmHead builds RobertaLMHead: dense, GELU, LayerNorm, then the decoder
// tied to the word embeddings plus lm_head.bias.
func (bd *builder) lmHead(m *Model) error {
	x, err := bd.dense(lmHeadDense, m.Hidden)
	if err != nil {
		return err
	}
	if x, err = layers.GELU(x); err != nil {
		return err
	}
	if x, err = layers.LayerNorm(bd.g, x, lmHeadNorm+".weight", lmHeadNorm+".bias", bd.cfg.LayerNormEps); err != nil {
		return err
	}
	table, err := bd.g.Param(wordEmbeddings)
	if err != nil {
		return err
	}
	bias, err := bd.g.Param(lmHeadBias)
	if err != nil {
		return err
	}
	// The decoder's weight is tied to the word embeddings: x·Eᵀ + bias.
	logits, err := lilyop.MatMulNT(x, table)
	if err != nil {
		return err
	}
	m.MLMLogits, err = lilyop.AddBias(logits, bias)
	return err
}

// PositionIDs returns Hugging Face's RoBERTa position ids for ids
// ([rows, seqLen] flattened): within each row, real tokens (id ≠ pad) are
// numbered pad+1, pad+2, … in order and padding tokens get pad.
func PositionIDs(ids []int, seqLen, pad int) ([]int, error) {
	if seqLen < 1 || len(ids)%seqLen != 0 {
		return nil, errors.Errorf("roberta.PositionIDs: %d ids do not form rows of %d", len(ids), seqLen)
	}
	pos := make([]int, len(ids))
	for r := 0; r < len(ids); r += seqLen {
		n := 0
		for i, id := range ids[r : r+seqLen] {
			pos[r+i] = pad
			if id != pad {
				n++
				pos[r+i] = pad + n
			}
		}
	}
	return pos, nil
}

// SetInputs fills the model's inputs for one batch, each [batch, seq]
// flattened row-major: token ids, the attention mask (1 real, 0 padding;
// nil means all ones, as Hugging Face assumes without a mask) and token
// type ids (nil means zeros). Position ids follow from the ids.
func (m *Model) SetInputs(ids, mask, tokenTypes []int) error {
	n := m.Batch * m.SeqLen
	if len(ids) != n {
		return errors.Errorf("roberta.SetInputs: %d ids for a [%d, %d] graph", len(ids), m.Batch, m.SeqLen)
	}
	check := func(what string, vals []int, limit int) error {
		if vals == nil {
			return nil
		}
		if len(vals) != n {
			return errors.Errorf("roberta.SetInputs: %d %s for a [%d, %d] graph", len(vals), what, m.Batch, m.SeqLen)
		}
		for i, v := range vals {
			if v < 0 || v >= limit {
				return errors.Errorf("roberta.SetInputs: %s[%d] = %d outside [0, %d)", what, i, v, limit)
			}
		}
		return nil
	}
	if err := check("ids", ids, m.Config.VocabSize); err != nil {
		return err
	}
	if err := check("mask values", mask, 2); err != nil {
		return err
	}
	if err := check("token type ids", tokenTypes, m.Config.TypeVocabSize); err != nil {
		return err
	}
	pos, err := PositionIDs(ids, m.SeqLen, m.Config.PadTokenID)
	if err != nil {
		return err
	}
	copy(m.InputIDs.Value().Data().([]int), ids)
	copy(m.PositionIDs.Value().Data().([]int), pos)
	tt := m.TokenTypeIDs.Value().Data().([]int)
	if tokenTypes == nil {
		clear(tt)
	} else {
		copy(tt, tokenTypes)
	}
	switch d := m.AttentionMask.Value().Data().(type) {
	case []float32:
		for i := range d {
			d[i] = 1
			if mask != nil {
				d[i] = float32(mask[i])
			}
		}
	case []float64:
		for i := range d {
			d[i] = 1
			if mask != nil {
				d[i] = float64(mask[i])
			}
		}
	}
	return nil
}
