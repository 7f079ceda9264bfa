package main

import (
	"encoding/json"

	"github.com/lilygo/lily/graphs/mamba"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/tokenizers/bytebpe"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
)

// modelConfig is the configuration of a model pretrained here: Hugging
// Face's MambaConfig defaults with the sizes of c, d_inner = 2·hidden,
// dt_rank = ceil(hidden/16), and EndOfText (id 0) as padding, BOS and EOS.
func modelConfig(c config, tok *bytebpe.Tokenizer) (mamba.Config, error) {
	mc := mamba.DefaultConfig()
	mc.VocabSize, mc.HiddenSize, mc.NumHiddenLayers, mc.StateSize = tok.VocabSize(), c.Hidden, c.Layers, c.StateSize
	mc.IntermediateSize = mc.Expand * c.Hidden
	mc.TimeStepRank = (c.Hidden + 15) / 16
	eos, ok := tok.TokenToID(EndOfText)
	if !ok {
		return mc, errors.Errorf("the tokenizer has no %s token", EndOfText)
	}
	mc.PadTokenID, mc.BosTokenID, mc.EosTokenID = eos, eos, eos
	mc.Extra = map[string]json.RawMessage{"architectures": json.RawMessage(`["MambaForCausalLM"]`)}
	return mc, errors.Wrap(mc.Validate(), "the model configuration")
}

// eosOf returns the id that separates documents for a loaded model: the
// tokenizer's EndOfText, or else the config's eos_token_id. It also checks
// that every id of the tokenizer fits the model's vocabulary.
func eosOf(tok *bytebpe.Tokenizer, mc mamba.Config) (int, error) {
	if tok.VocabSize() > mc.VocabSize {
		return 0, errors.Errorf("the tokenizer has %d ids, the model's vocabulary only %d: use the model's own tokenizer", tok.VocabSize(), mc.VocabSize)
	}
	if id, ok := tok.TokenToID(EndOfText); ok {
		return id, nil
	}
	if mc.EosTokenID < 0 || mc.EosTokenID >= mc.VocabSize {
		return 0, errors.Errorf("the tokenizer has no %s and eos_token_id %d is outside the vocabulary", EndOfText, mc.EosTokenID)
	}
	return mc.EosTokenID, nil
}

// frozenView returns a new store holding base's parameters, frozen, with
// their tensors shared (nothing trains them), ready for one adapter.
func frozenView(base *layers.Store) (*layers.Store, error) {
	s, err := layers.NewStore(base.Dtype())
	if err != nil {
		return nil, err
	}
	for _, p := range base.Params() {
		q := *p
		q.Trainable = false
		if err := s.Add(&q); err != nil {
			return nil, errors.Wrap(err, "sharing the pretrained weights")
		}
	}
	return s, nil
}

// evaluator measures held-out perplexity with an evaluation graph on a
// store: a [batch, seqLen] model and a plain tape machine (no gradients).
type evaluator struct {
	g  *layers.Graph
	m  *mamba.Model
	vm G.VM
}

// newEvaluator builds the evaluation graph of the model in s with adapter a
// (nil: none).
func newEvaluator(s *layers.Store, mc mamba.Config, a layers.Adapter, batch, seqLen int) (*evaluator, error) {
	g := s.NewGraph(false)
	m, err := mamba.Build(g, mc, a, batch, seqLen)
	if err != nil {
		return nil, errors.Wrap(err, "building the evaluation graph")
	}
	return &evaluator{g: g, m: m, vm: G.NewTapeMachine(g.G)}, nil
}

// perplexity returns the token-weighted perplexity of tokens.
func (e *evaluator) perplexity(tokens []int) (float64, error) {
	ppl, _, err := e.m.Perplexity(e.vm, tokens)
	return ppl, errors.Wrap(err, "held-out perplexity")
}

// observeMixing runs the held-out tokens as perplexity does and lets cal
// observe Lily's mixing weights after every run.
func (e *evaluator) observeMixing(tokens []int, cal *layers.MixingCalibrator) error {
	_, _, err := e.m.PerplexityEach(e.vm, tokens, func() error { return cal.Observe(e.g) })
	return errors.Wrap(err, "held-out mixing weights")
}

// close releases the machine.
func (e *evaluator) close() { e.vm.Close() }
