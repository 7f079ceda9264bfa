package main

import (
	"github.com/lilygo/lily/graphs/roberta"
	"github.com/lilygo/lily/internal/memcheck"
)

// bytesTrained is what a float32 parameter that trains takes: its value,
// its gradient and AdamW's two moments.
const bytesTrained = 4 * 4

// encoderActivations estimates the float32 values (activations and their
// gradients) a training graph of the encoder keeps for a [batch, length]
// batch: per layer and token the projections, residuals and norms (12 ×
// hidden), the feed-forward (2 × intermediate), and per head the attention
// scores, softmax and dropout (3 × length), all twice for the backward
// pass. For 4 layers of width 128 at 32 × 128 ids that is 537 MB, the 500
// MB graphCache's comment reports.
func encoderActivations(cfg roberta.Config, batch, length int) float64 {
	b, l := float64(batch), float64(length)
	perLayer := b*l*(12*float64(cfg.HiddenSize)+2*float64(cfg.IntermediateSize)) + 3*b*float64(cfg.NumAttentionHeads)*l*l
	return 2 * float64(cfg.NumHiddenLayers) * perLayer
}

// finetuneNeed estimates the memory fine-tuning adds to a loaded model: the
// adapter and head, trained, and the graphs of the largest bucket (the
// cache holds cachedGraphs of them).
func finetuneNeed(cfg roberta.Config, trained int, batch, maxLen int) memcheck.Need {
	var n memcheck.Need
	n.Add("adapter and head with gradients and AdamW moments", float64(trained), bytesTrained)
	n.Add("activations of the largest batch", cachedGraphs*encoderActivations(cfg, batch, maxLen), 4)
	return n
}

// pretrainNeed estimates the memory of a pretraining run: every parameter
// trained, the training graph with its MLM logits, the held-out graph.
func pretrainNeed(cfg roberta.Config, batch, maxLen, heldOut int) memcheck.Need {
	var n memcheck.Need
	n.Add("model with gradients and AdamW moments", cfg.NumParams(true), bytesTrained)
	logits := 3 * float64(batch) * float64(maxLen) * float64(cfg.VocabSize) // logits, softmax, gradient
	n.Add("activations of a batch", encoderActivations(cfg, batch, maxLen)+logits, 4)
	n.Add("held-out evaluation", (encoderActivations(cfg, heldOut, maxLen)+logits*float64(heldOut)/float64(batch))/2, 4)
	return n
}

// useNeed estimates the memory eval, predict and export add to a loaded
// model: the evaluation graphs of the largest bucket, which keep their
// activations but no gradients.
func useNeed(cfg roberta.Config, batch, maxLen int) memcheck.Need {
	var n memcheck.Need
	n.Add("activations of the largest batch", cachedGraphs*encoderActivations(cfg, batch, maxLen)/2, 4)
	return n
}
