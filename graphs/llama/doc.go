// Package llama builds LLaMA language models (Meta's LLaMA architecture as
// llama2.c and Hugging Face transformers compute it) as Gorgonia graphs on a
// layers.Store, so that any layers.Adapter (Lily, LoRA, none) can be plugged
// into every linear layer and fine-tuned.
//
// A model is a Config plus a store of named weights. Weights come from
// NewStore (random), LoadLlama2C (a llama2.c .bin checkpoint) or LoadHF (a
// Hugging Face directory with config.json and safetensors). Names follow
// Hugging Face ("model.layers.3.self_attn.q_proj.weight"); linear weights are
// stored [in, out] and marked layers.Transposed. Config.Rope records whether
// the q/k weights expect llama2.c's interleaved rotary pairs or Hugging
// Face's halves; ToHFLayout converts the former into the latter, SaveHF
// writes a checkpoint transformers can load and SaveLlama2C one llama2.c's
// run.c can load (in its interleaved order, whichever layout the store has).
//
// Build adds the forward pass for one (batch, sequence length) to a
// layers.Graph; Model.Loss adds next-token cross-entropy and Model.SetBatch
// fills the inputs. Config.Sites lists the adaptable linears (q_proj, k_proj,
// v_proj, o_proj, gate_proj, up_proj, down_proj of every block).
// Generator decodes text with a key/value cache, greedily or by top-p
// sampling.
//
// RMSNorm, SiLU, the embedding, the tied output head (MatMulNT) and
// cross-entropy come from package lilyop; rotary position embeddings and
// causal grouped-query attention (with a key/value cache for decoding) are
// fused ops of this package, each one Gorgonia node with a hand-written
// gradient.
package llama
