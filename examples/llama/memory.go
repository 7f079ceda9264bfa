package main

import (
	"os"
	"path/filepath"

	"github.com/lilygo/lily/graphs/llama"
	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/internal/memcheck"
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// trainActivations estimates the float32 values a training graph of the
// model keeps for a [batch, length] batch. Every tensor of the forward pass
// on the way to the trained parameters has a gradient of its size beside
// it, so per layer and token it counts twice: 12 tensors of width dim (the
// norms, the projections with an adapter's share and their sum, rotary
// positions, the attention output, the residuals), 7 of kv_dim (keys and
// values likewise) and 4 of hidden_dim (gate, up, SiLU, product); the
// attention op keeps no scores between runs. Then the logits, their
// softmax and their gradient. For stories260K at length 128 that is 73 KB
// per token position (maxTrainGraphs' comment reports about 80 KB); for
// LLaMA3-8B 1×128 tokens, 3.7 GiB, where a measured Lily step with
// bfloat16 weights peaked at 21.0 GB of RSS over 16.1 GB of weights
// (docs/scale.md).
func trainActivations(c llama.Config, batch, length int) float64 {
	b, l := float64(batch), float64(length)
	perToken := 2 * (12*float64(c.Dim) + 7*float64(c.KVDim()) + 4*float64(c.HiddenDim))
	return float64(c.NLayers)*b*l*perToken + 3*b*l*float64(c.VocabSize)
}

// lmActivations estimates the float32 values an evaluation (forward-only)
// graph of the model keeps for a [batch, length] batch: per layer and
// token the projections, norms and residuals (10 × dim), the feed-forward
// (3 × hidden_dim), and per head the attention scores and their softmax
// (2 × length); then the logits and their softmax.
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
	n.Add("activations and gradients of the largest batch's training graphs", maxTrainGraphs*trainActivations(c, batch, maxLen), 4)
	return n
}

// paramCount is the number of a model's weights.
func paramCount(c llama.Config) float64 {
	n := 0.0
	for _, t := range hfTensors(c) {
		n += float64(elements(t.shape))
	}
	return n
}

// weightBytes is the memory of a model's weights with the matrices in
// weights (float32 or bfloat16) and the norms in float32.
func weightBytes(c llama.Config, weights tensor.Dtype) float64 {
	n := 0.0
	for _, t := range hfTensors(c) {
		size := 4.0
		if len(t.shape) >= 2 {
			size = float64(layers.ElementSize(weights))
		}
		n += size * float64(elements(t.shape))
	}
	return n
}

// checkHFLoad refuses, before any weight is read, a Hugging Face
// checkpoint whose loading or whose run (hfNeeds) does not fit in the
// memory available.
func checkHFLoad(dir string, weights tensor.Dtype, need func(llama.Config) memcheck.Need) error {
	load, run, err := hfNeeds(dir, weights, need)
	if err != nil {
		return err
	}
	if err := load.Check(); err != nil {
		return errors.Wrapf(err, "loading %s", dir)
	}
	return errors.Wrapf(run.Check(), "running on %s", dir)
}

// hfNeeds estimates loading a Hugging Face checkpoint with its matrices in
// weights (the store and, for float32 matrices, one tensor's copy) and the
// run that follows (the store and what need lists), from config.json.
func hfNeeds(dir string, weights tensor.Dtype, need func(llama.Config) memcheck.Need) (load, run memcheck.Need, err error) {
	cfg, err := llama.LoadHFConfig(filepath.Join(atomicfile.Resolve(dir), hfConfigFile))
	if err != nil {
		return nil, nil, errors.Wrap(err, "loading the checkpoint")
	}
	peak, err := llama.LoadHFPeak(dir, weights)
	if err != nil {
		return nil, nil, errors.Wrap(err, "loading the checkpoint")
	}
	w := weightBytes(cfg, weights)
	load = memcheck.Need{{What: "the weights", Bytes: w}, {What: "one tensor's copy while loading", Bytes: peak - w}}
	run = memcheck.Need{{What: "the weights", Bytes: w}}
	if need != nil {
		run = append(run, need(cfg)...)
	}
	return load, run, nil
}

// llama2cLoadNeed is what loading a llama2.c file holds at its peak: the
// file's bytes, a float64 copy of every weight and the float32 store,
// about four times the file.
func llama2cLoadNeed(path string) memcheck.Need {
	var n memcheck.Need
	if st, err := os.Stat(path); err == nil {
		n.Add("the file, float64 copies and the float32 store while loading", float64(st.Size()), 4)
	}
	return n
}

// decodeConfig is c for decoding at most steps positions: the generator
// keeps a key/value cache of MaxSeqLen positions per layer, so MaxSeqLen is
// lowered to steps (0: the model's own). Nothing else depends on it.
func decodeConfig(c llama.Config, steps int) llama.Config {
	if steps > 0 && steps < c.MaxSeqLen {
		c.MaxSeqLen = steps
	}
	return c
}

// generateNeed estimates decoding steps positions after a prompt of at
// most promptLen ids: the key/value caches and the activations of the
// prompt's graph and of the one-token graph.
func generateNeed(c llama.Config, steps, promptLen int) memcheck.Need {
	c = decodeConfig(c, steps)
	var n memcheck.Need
	n.Add("key/value caches", 2*float64(c.NLayers)*float64(c.MaxSeqLen)*float64(c.KVDim()), 4)
	n.Add("activations of the prompt and of one token", lmActivations(c, 1, min(max(promptLen, 1), c.MaxSeqLen))+lmActivations(c, 1, 1), 4)
	return n
}

// evalNeed estimates evaluating batches of batch×maxLen: one evaluation
// graph's activations.
func evalNeed(c llama.Config, batch, maxLen int) memcheck.Need {
	var n memcheck.Need
	n.Add("activations of the largest evaluation batch", lmActivations(c, batch, min(maxLen, c.MaxSeqLen)), 4)
	return n
}

// mergeNeed estimates layers.Merge of an adapter on the sites of the
// given targets: it computes every update ΔW in float64 before changing a
// weight.
func mergeNeed(c llama.Config, targets []string) memcheck.Need {
	on := map[string]bool{}
	for _, t := range targets {
		on[t] = true
	}
	elems := 0.0
	for _, s := range c.Sites() {
		if on[s.Target] {
			elems += float64(s.DIn) * float64(s.DOut)
		}
	}
	var n memcheck.Need
	n.Add("float64 updates ΔW of every adapted weight while merging", elems, 8)
	return n
}

// memoryNeed is finetuneNeed for c's adapter on a model of cfg: what
// fine-tuning needs beyond the weights.
func (c ftConfig) memoryNeed(cfg llama.Config) memcheck.Need {
	trained := 0.0
	if c.Adapter == "full" {
		trained = paramCount(cfg)
	} else if a, err := newAdapter(c); err == nil {
		if n, err := layers.CountParams(a, cfg.Sites()); err == nil {
			trained = float64(n)
		}
	}
	return finetuneNeed(cfg, trained, c.Adapter == "full", c.BatchSize, c.MaxLen)
}
