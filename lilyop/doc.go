// Package lilyop holds the custom Gorgonia operations that make Lily
// (Low-Rank Interconnected Adaptation across Layers, arXiv 2407.09946)
// differentiable inside a Gorgonia expression graph.
//
// Three public building blocks cover the whole adapter:
//
//   - MatMul multiplies an input of any rank ≥ 2 by a matrix, folding every
//     leading dimension into rows so that one GEMM runs through
//     gorgonia.WhichBLAS(). It is used for the shared down-projection A
//     (h = x·A) and for every frozen linear of the model graphs.
//   - RouterWeights turns the low-rank activation h and a router matrix R
//     into softmax mixing weights for the three routing modes: Batch (the
//     reference behaviour: one vector for the whole batch), Sequence (one per
//     sequence, padding excluded) and Token (one per token).
//   - ExpertMix computes s·h·Σ_e w[e]·B[e], mixing the shared pool of
//     up-projections B with the router's weights.
//
// MatMulShared computes x·A_i for several matrices reading one input as a
// single GEMM (and its backward pass as two), which layers.LinearGroup uses
// for the down-projections of query, key and value.
//
// The model graphs share a few more fused ops built the same way: AddBias,
// MatMulScaled and MatMulNT (x·wᵀ, for heads tied to embedding tables),
// LayerNorm, RMSNorm, SiLU, GELU (exact erf form), Embed (a gather whose
// gradient is scatter-added into the table) and CrossEntropy (log-softmax
// and NLL in one node, with PyTorch's ignore index).
//
// Every op implements gorgonia.SDOp, so gorgonia.Grad differentiates through
// it symbolically, and every op is verified by a float64 central-difference
// gradient check. The ops accept float32 and float64 tensors.
//
// Speed: row and element loops (AddBias, LayerNorm, RMSNorm, GELU, SiLU)
// are split across GOMAXPROCS goroutines; float32 GELU reads Φ and φ from
// cubic tables (error far below float32 resolution) instead of calling
// math.Erf and math.Exp per element. The openblas build runs OpenBLAS on one
// thread and splits large GEMMs across goroutines itself (see
// docs/performance.md for the measurements).
package lilyop
