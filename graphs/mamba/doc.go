// Package mamba builds Mamba-1 language models (state-spaces/mamba, Hugging
// Face's MambaForCausalLM and Falcon-Mamba) as Gorgonia graphs bound to a
// layers.Store, so that Lily, LoRA or no adapter can be attached to the
// mixers' linears and the model fine-tuned, or trained from scratch.
//
// The pieces:
//
//   - Config mirrors Hugging Face's MambaConfig (ReadConfig also reads
//     state-spaces/mamba's original config.json); Sites lists the adaptable
//     linears in_proj, x_proj, dt_proj and out_proj of every block, so
//     target_modules ["in_proj"] is the paper's Lily "in" and
//     ["in_proj", "dt_proj"] its "Δ + in".
//   - InitStore initialises a model as the reference does; LoadHF and SaveHF
//     read and write Hugging Face model directories (config.json and
//     safetensors).
//   - Build adds the model to a graph for one (batch, sequence length)
//     bucket, with its inputs, logits and the LM loss; Model.Perplexity
//     evaluates held-out text.
//   - SelectiveScan and CausalConv1D are the two custom ops Mamba needs,
//     with hand-written backward passes: the scan is one op, not a graph
//     unrolled over time, and recomputes the hidden states in its backward
//     pass instead of storing them (see SelectiveScan for its cost).
//     Narrow splits the last axis without aliasing. The tied LM head and
//     the loss are package lilyop's MatMulNT and fused CrossEntropy.
//
// Every custom op runs in float32 and float64 and is verified against
// central differences in float64 and against plain-Go references; the whole
// model is verified against an independent plain-Go forward pass.
package mamba
