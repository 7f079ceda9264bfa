package main

import (
	"github.com/lilygo/lily/graphs/llama"
	"github.com/lilygo/lily/internal/memcheck"
)

// lmActivations estimates the float32 values a training graph of the model
// keeps for a [batch, length] batch: per layer and token the projections,
// norms and residuals (10 × dim), the feed-forward (3 × hidden_dim), and per
// head the attention scores and their softmax (2 × length); then the
// logits and their softmax. For stories260K at length 128 that is 68 KB
// per token position, below the 80 KB maxTrainGraphs' comment reports.
func lmActivations(c llama.Config, batch, length int) float64 {
	b, l := float64(batch), float64(length)
	perLayer := b*l*(10*float64(c.Dim)+3*float64(c.HiddenDim)) + 2*b*float64(c.NHeads)*l*l
	return float64(c.NLayers)*perLayer + 2*b*l*float64(c.VocabSize)
}

// finetuneNeed estimates the memory fine-tuning adds to the loaded model:
// for an adapter its values, gradients and AdamW moments (trained values);
// for full fine-tuning the gradients and moments of every weight; and the
// training graphs of the largest batch.
func finetuneNeed(c llama.Config, trained float64, full bool, batch, maxLen int) memcheck.Need {
	var n memcheck.Need
	if full {
		n.Add("gradients and AdamW moments of every weight", trained, 3*4)
	} else {
		n.Add("adapter with gradients and AdamW moments", trained, 4*4)
	}
	n.Add("activations of the largest batch", maxTrainGraphs*lmActivations(c, batch, maxLen), 4)
	return n
}
