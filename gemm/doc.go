// Package gemm is a pure-Go (plus Go assembly) general matrix multiply,
// C = alpha·op(A)·op(B) + beta·C, for row-major float32 and float64
// matrices, with the BLAS contract of gonum's blas.Float32.Sgemm and
// blas.Float64.Dgemm: all four transpose combinations, leading dimensions
// larger than the stored width, any sizes, and beta = 0 never reading C.
//
// It exists because no Go library reaches the hardware: gonum's portable
// kernels run at a tenth of a modern CPU's peak. The structure is the
// GotoBLAS/BLIS one:
//
//   - op(B) is copied in blocks of kc rows × nc columns into a buffer of
//     NR-column micro-panels, op(A) in blocks of mc rows × kc columns into
//     MR-row micro-panels (alpha folded in), so the innermost loop reads both
//     operands sequentially from cache whatever their transposition and
//     strides (pack.go);
//   - a micro-kernel keeps an MR×NR tile of C in vector registers for the
//     whole kc loop: 14×32 float32 (14×16 float64) on AVX-512, 6×16 (6×8)
//     on AVX2 + FMA, written in assembly by asmgen (kernels_amd64.s), with
//     edge tiles masked in the kernel rather than sent down a slow path;
//   - the block sizes sit in one place (block.go), chosen so that the
//     kc×NR panel of B stays in L1 and the mc×kc block of A in L2;
//   - large products are split into row or column ranges run on up to
//     GOMAXPROCS goroutines, each with its own packing buffers from a pool,
//     so a call allocates nothing once warm.
//
// The kernel is chosen at start-up from the CPU's features
// (golang.org/x/sys/cpu); other CPUs and architectures, and builds with the
// purego tag, use a portable Go micro-kernel with the same blocking.
//
// Implementation plugs the package into Gorgonia (gorgonia.Use) as the
// Sgemm and Dgemm of gonum's pure-Go BLAS.
package gemm
