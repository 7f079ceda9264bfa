package gemm

import "unsafe"

// microKernel is one register-blocked tile routine with its block sizes.
type microKernel[T Float] struct {
	name   string
	mr, nr int // the tile: MR rows × NR columns of C
	// tile computes C[0:mr, 0:nr] = Σ_p a[p]⊗b[p] + beta·C (C not read
	// unless accumulate) from kc steps of MR values of A (contiguous, steps
	// as elements apart: a packed panel, or a transposed A in place) and
	// of NR values of B (contiguous, steps bs apart: a packed panel, or an
	// untransposed B in place); c is the tile's top-left element, ldc C's
	// row stride, mr ≤ MR and nr ≤ NR the tile's part inside C.
	tile tileFunc[T]
	// direct, where not nil, is tile for all MR rows of an A read in place
	// at row stride lda rather than packed (see directN).
	direct directFunc[T]
	// tileBF16, where not nil, is tile with a bfloat16 B read in place.
	tileBF16   tileBF16Func[T]
	mc, kc, nc int
}

// tileBF16Func is a micro-kernel on a packed panel of A and a bfloat16 B.
type tileBF16Func[T Float] func(kc int, a *T, as int, b *BF16, bs int, c *T, ldc int, beta T, accumulate bool, mr, nr int)

// withBF16 sets k's bfloat16 kernel.
func (k *microKernel[T]) withBF16(f tileBF16Func[T]) *microKernel[T] {
	k.tileBF16 = f
	return k
}

// tileFunc is a micro-kernel on a packed panel of A.
type tileFunc[T Float] func(kc int, a *T, as int, b *T, bs int, c *T, ldc int, beta T, accumulate bool, mr, nr int)

// directFunc is a micro-kernel on MR rows of A in place.
type directFunc[T Float] func(kc int, a *T, lda int, b *T, bs int, c *T, ldc int, beta T, accumulate bool, nr int)

func newKernel[T Float](name string, mr, nr int, tile tileFunc[T], direct directFunc[T]) *microKernel[T] {
	var zero T
	mc, kc, nc := blocks(mr, nr, int(unsafe.Sizeof(zero)))
	return &microKernel[T]{name: name, mr: mr, nr: nr, tile: tile, direct: direct, mc: mc, kc: kc, nc: nc}
}

// goMR and goNR are the portable kernel's tile: 4×4 accumulators, which the
// Go compiler keeps in registers on amd64 and arm64.
const goMR, goNR = 4, 4

// goTile is the portable micro-kernel.
func goTile[T Float](kc int, a *T, as int, b *T, bs int, c *T, ldc int, beta T, accumulate bool, mr, nr int) {
	ap := unsafe.Slice(a, (kc-1)*as+goMR)
	bp := unsafe.Slice(b, (kc-1)*bs+goNR)
	var c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33 T
	for p := 0; p < kc; p++ {
		av := ap[p*as : p*as+goMR : p*as+goMR]
		bv := bp[p*bs : p*bs+goNR : p*bs+goNR]
		a0, a1, a2, a3 := av[0], av[1], av[2], av[3]
		b0, b1, b2, b3 := bv[0], bv[1], bv[2], bv[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	acc := [goMR][goNR]T{
		{c00, c01, c02, c03},
		{c10, c11, c12, c13},
		{c20, c21, c22, c23},
		{c30, c31, c32, c33},
	}
	cs := unsafe.Slice(c, (mr-1)*ldc+nr)
	for i := 0; i < mr; i++ {
		row := cs[i*ldc : i*ldc+nr]
		for j := range row {
			if accumulate {
				row[j] = acc[i][j] + beta*row[j]
			} else {
				row[j] = acc[i][j]
			}
		}
	}
}

// goKernel32 and goKernel64 are the portable kernels, used where no
// assembly kernel fits the CPU, and by every build with the purego tag.
var (
	goKernel32 = newKernel[float32]("go", goMR, goNR, goTile[float32], nil)
	goKernel64 = newKernel[float64]("go", goMR, goNR, goTile[float64], nil)
)
