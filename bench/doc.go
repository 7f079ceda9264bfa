// Package bench measures the library's speed: every comparison runs two
// things in the same process, interleaved (A, B, A, B, …), and reports the
// median of their per-round time ratios, so that the load of a shared
// machine cancels out as far as possible.
//
// The comparisons (each a Benchmark in this package's tests and a row of
// the table that cmd/lilybench prints):
//
//   - Lily (r 32, stride_A 6, 2 B's: 198,144 parameters on query and value
//     of roberta-base) against LoRA r 5 (184,320, the nearest count), first
//     on the 24 adapter sites alone with given inputs (AdapterStep), then
//     inside a whole roberta-base training step (TrainStep).
//   - Lily's fused ops against the same math composed from stock Gorgonia
//     ops (AdapterStep with Composed set).
//   - One roberta-base encoder layer's training step against the raw GEMM
//     time of the matrix products it performs (LayerGEMMs, GEMMList).
//   - Building and compiling a 12-layer roberta-base training graph, and
//     the bytes a training step allocates.
//   - Whole-model training throughput (tokens/s) of a GLUE-style step.
//
// Nothing here runs under a plain go test except quick correctness checks;
// the benchmarks need -bench.
package bench
