// Package layers holds what model graphs are built from: a parameter store
// that owns every tensor outside of any Gorgonia graph, graphs bound to that
// store (one per shape bucket and train/eval mode), the adapters that plug
// into every adaptable linear layer (Lily, LoRA, none), and the linear
// building block that applies them, plus thin helpers (Embedding, IDs,
// LayerNorm, RMSNorm, SiLU, GELU) that bind store parameters by name.
//
// The flow of a fine-tuning run:
//
//  1. A model lists its adaptable linears as Sites (layer, target name, module
//     path, widths) and puts its frozen weights into a Store.
//  2. Attach lets an adapter lay out its parameters over those sites and adds
//     them to the store, trainable. CountParams does the same from shapes
//     alone, without allocating.
//  3. For each batch shape and mode, the model builds a Graph on the store and
//     calls Linear at every site; Linear calls the adapter. Sites that read
//     the same input (query, key, value) go through LinearGroup, which lets
//     Lily and LoRA compute all their down-projections of it as one GEMM.
//  4. Graph.Machine differentiates the loss with respect to
//     Graph.Learnables() and compiles only what the loss and those gradients
//     need; a solver step updates the store's tensors, which every graph
//     shares.
package layers
