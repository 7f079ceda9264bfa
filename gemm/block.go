package gemm

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Cache blocking, in one place. A block of op(B) is kc rows × nc columns
// (packed once per (jc, pc) and read by every block of A), a block of op(A)
// mc rows × kc columns. The sizes are in bytes of the packed panels so that
// float32 and float64 get the same cache footprints:
//
//   - the kc×NR micro-panel of B that one micro-kernel sweep reuses for
//     every MR-row panel of A stays in L1 (kcBytes·NR: 32 KiB for both
//     types, of the 48 KiB L1d of a Zen 5 core);
//   - the mc×kc block of A stays in L2 (mcBytes: 512 KiB of 1 MiB);
//   - the kc×nc block of B is sized for the shared L3 (ncBytes).
//
// They were tuned on the development machine (AMD EPYC, Zen 5, 2 cores);
// docs/design.md has the measurements.
const (
	kcBytes = 1024      // kc·element size: kc = 256 float32 or 128 float64
	mcBytes = 512 << 10 // mc·kc·element size
	ncBytes = 8 << 20   // kc·nc·element size
)

// blocks is the (mc, kc, nc) of a kernel: kc from kcBytes, mc and nc rounded
// down to whole micro-panels.
func blocks(mr, nr, elem int) (mc, kc, nc int) {
	kc = kcBytes / elem
	mc = max(mr, mcBytes/(kc*elem)/mr*mr)
	nc = max(nr, ncBytes/(kc*elem)/nr*nr)
	return mc, kc, nc
}

// When one operand is small, packing the other does not pay for itself: a
// packed panel of A is reused once per NR columns of B, a packed panel of B
// once per MR rows of A, and packing costs a read and a write of the whole
// operand. So A is read in place when op(B) has at most narrowCols columns
// (narrowColsT for a transposed A, whose MR values per k step are
// contiguous already), and an untransposed B when op(A) has at most
// shortRows rows. Measured on the development machine (Zen 5, AVX-512,
// 2 cores) by timing both ways interleaved in one process, on
// m×768×1024-shaped products: B in place was 10–30% faster up to m = 504
// and as fast or slower from m = 1024; A in place 6–11% faster at n ≤ 128
// untransposed, 20–30% at n ≤ 256 transposed, even beyond. (Variables
// only so that the tests can force every path at small sizes.)
var (
	narrowCols  = 128
	narrowColsT = 256
	shortRows   = 512
)

// parallelGrain is the least number of multiply-adds (m·n·k) worth a
// goroutine of its own: about 10 µs of work, several times what starting
// and joining a goroutine costs.
const parallelGrain = 1 << 20

// split runs p on up to GOMAXPROCS goroutines. Normally each takes a range
// of C's rows, packing its own blocks of A, while the goroutines share each
// packed block of B, every one packing a share of its panels. When C has
// fewer row tiles than column tiles (a short, wide product), each goroutine
// takes a range of columns instead and packs its own blocks of B and the
// whole of the small A. Ranges are tile-aligned.
func split[T Float](kern *microKernel[T], p problem[T]) {
	parts := p.m * p.n * p.k / parallelGrain
	if parts > 1 {
		parts = min(parts, runtime.GOMAXPROCS(0)) // GOMAXPROCS takes a lock
	}
	rowTiles, colTiles := ceilDiv(p.m, kern.mr), ceilDiv(p.n, kern.nr)
	if rowTiles >= colTiles {
		parts = min(parts, rowTiles)
	} else {
		parts = min(parts, colTiles)
	}
	if parts <= 1 {
		a, b := getPanels[T](operandA, sizeA(kern, p, p.m)), getPanels[T](operandB, sizeB(kern, p))
		rows(kern, p, 0, p.m, 0, 1, nil, a.s, b.s)
		putPanels(operandA, a)
		putPanels(operandB, b)
		return
	}
	if rowTiles >= colTiles {
		splitRows(kern, p, parts, rowTiles)
	} else {
		splitCols(kern, p, parts, colTiles)
	}
}

// splitRows runs p as parts ranges of rowTiles rows tiles, sharing the
// packed blocks of B.
func splitRows[T Float](kern *microKernel[T], p problem[T], parts, rowTiles int) {
	var wg sync.WaitGroup
	shared := getPanels[T](operandB, sizeB(kern, p)) // every goroutine packs a share
	bar := newBarrier(parts)
	for t := range parts {
		lo, hi := rowTiles*t/parts*kern.mr, min(p.m, rowTiles*(t+1)/parts*kern.mr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := getPanels[T](operandA, sizeA(kern, p, hi-lo))
			rows(kern, p, lo, hi, t, parts, bar, a.s, shared.s)
			putPanels(operandA, a)
		}()
	}
	wg.Wait()
	putPanels(operandB, shared)
}

// splitCols runs p as parts independent products on ranges of colTiles
// column tiles.
func splitCols[T Float](kern *microKernel[T], p problem[T], parts, colTiles int) {
	var wg sync.WaitGroup
	for t := range parts {
		lo, hi := colTiles*t/parts*kern.nr, min(p.n, colTiles*(t+1)/parts*kern.nr)
		q := p
		q.n = hi - lo
		off := lo
		if p.tb {
			off = lo * p.ldb
		}
		switch {
		case p.bh != nil:
			q.bh = p.bh[off:]
		case p.bf != nil:
			q.bf = p.bf[off:]
		default:
			q.b = p.b[off:]
		}
		q.c = p.c[lo:]
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, b := getPanels[T](operandA, sizeA(kern, q, q.m)), getPanels[T](operandB, sizeB(kern, q))
			rows(kern, q, 0, q.m, 0, 1, nil, a.s, b.s)
			putPanels(operandA, a)
			putPanels(operandB, b)
		}()
	}
	wg.Wait()
}

// rows computes rows [lo, hi) of C: loops over nc-column blocks of C and
// kc-deep slices of the product, packing a block of B per pair (goroutine
// t of parts packs its share of the panels into bufB, which all parts
// share; bar makes them wait for each other), then over mc-row blocks of
// its rows (A packed into its own bufA per triple), then the micro-kernel
// over the block's tiles. The caller sizes the buffers (sizeA, sizeB). A narrow or
// short product reads an operand in place instead of packing it.
func rows[T Float](kern *microKernel[T], p problem[T], lo, hi, t, parts int, bar *barrier, bufA, bufB []T) {
	mr, nr := kern.mr, kern.nr
	mc, kc, nc := kern.mc, kern.kc, kern.nc
	// A narrow B leaves packing A nothing to amortise: A is then read in
	// place, by a direct kernel when it is not transposed and by the
	// panel kernel at step lda when it is (its MR values per k step are
	// contiguous already). Likewise a short A leaves packing B nothing to
	// amortise, and an untransposed B is read in place at step ldb (a
	// bfloat16 one by a kernel that widens it as it loads; there is no
	// direct kernel for that pair, so A is then packed unless transposed).
	// Only the partial last panel of an operand read in place is packed,
	// and alpha goes into a packed operand.
	bInPlace := p.m <= shortRows && !p.tb && p.bf == nil && (p.bh == nil || kern.tileBF16 != nil)
	aInPlace := (p.ta && p.n <= narrowColsT || !p.ta && p.n <= narrowCols && kern.direct != nil && !(bInPlace && p.bh != nil)) && (!bInPlace || p.alpha == 1)
	alphaA, alphaB := p.alpha, T(1)
	if aInPlace {
		alphaA, alphaB = 1, p.alpha
	}
	for jc := 0; jc < p.n; jc += nc {
		nb := min(nc, p.n-jc)
		panels := ceilDiv(nb, nr)
		fullB := nb // columns of B read in place
		if bInPlace {
			fullB = nb / nr * nr
		} else {
			fullB = 0
		}
		for pc := 0; pc < p.k; pc += kc {
			kb := min(kc, p.k-pc)
			j0, j1 := max(fullB, panels*t/parts*nr), min(nb, panels*(t+1)/parts*nr)
			switch {
			case j1 <= j0:
			case p.bh != nil:
				packBHalf(bufB[j0*kb:], p.tb, p.bh, p.ldb, pc, jc+j0, kb, j1-j0, nr, alphaB)
			case p.bf != nil:
				packBFloat16(bufB[j0*kb:], p.tb, p.bf, p.ldb, pc, jc+j0, kb, j1-j0, nr, alphaB)
			default:
				packB(bufB[j0*kb:], p.tb, p.b, p.ldb, pc, jc+j0, kb, j1-j0, nr, alphaB)
			}
			bar.wait()
			beta, accumulate := p.beta, p.beta != 0
			if pc > 0 {
				beta, accumulate = 1, true
			}
			for ic := lo; ic < hi; ic += mc {
				mb := min(mc, hi-ic)
				fullA := 0 // rows of A read in place
				if aInPlace {
					fullA = mb / mr * mr
					if fullA < mb {
						packA(bufA, p.ta, p.a, p.lda, ic+fullA, pc, mb-fullA, kb, mr, alphaA)
					}
				} else {
					packA(bufA, p.ta, p.a, p.lda, ic, pc, mb, kb, mr, alphaA)
				}
				for jr := 0; jr < nb; jr += nr {
					nt := min(nr, nb-jr)
					bp, bs := &bufB[jr*kb], nr
					var bh *BF16 // B in place in bfloat16
					switch {
					case jr >= fullB:
					case p.bh != nil:
						bh, bs = &p.bh[pc*p.ldb+jc+jr], p.ldb
					default:
						bp, bs = &p.b[pc*p.ldb+jc+jr], p.ldb
					}
					for ir := 0; ir < mb; ir += mr {
						cp := &p.c[(ic+ir)*p.ldc+jc+jr]
						switch {
						case bh != nil && ir >= fullA:
							kern.tileBF16(kb, &bufA[(ir-fullA)*kb], mr, bh, bs, cp, p.ldc, beta, accumulate, min(mr, mb-ir), nt)
						case bh != nil:
							kern.tileBF16(kb, &p.a[pc*p.lda+ic+ir], p.lda, bh, bs, cp, p.ldc, beta, accumulate, mr, nt)
						case ir >= fullA:
							kern.tile(kb, &bufA[(ir-fullA)*kb], mr, bp, bs, cp, p.ldc, beta, accumulate, min(mr, mb-ir), nt)
						case p.ta:
							kern.tile(kb, &p.a[pc*p.lda+ic+ir], p.lda, bp, bs, cp, p.ldc, beta, accumulate, mr, nt)
						default:
							kern.direct(kb, &p.a[(ic+ir)*p.lda+pc], p.lda, bp, bs, cp, p.ldc, beta, accumulate, nt)
						}
					}
				}
			}
			bar.wait()
		}
	}
}

// sizeA and sizeB are the packing buffers' sizes for rows rows of p (sizeB:
// for all of p's columns).
func sizeA[T Float](kern *microKernel[T], p problem[T], rows int) int {
	return min(kern.mc, roundUp(rows, kern.mr)) * min(kern.kc, p.k)
}

func sizeB[T Float](kern *microKernel[T], p problem[T]) int {
	return min(kern.nc, roundUp(p.n, kern.nr)) * min(kern.kc, p.k)
}

func roundUp(x, m int) int { return ceilDiv(x, m) * m }

func ceilDiv(x, m int) int { return (x + m - 1) / m }

// barrier makes parts goroutines wait for each other: each wait returns
// once all parts have called it. It spins briefly (the parts of one product
// arrive within microseconds of each other) before sleeping on a condition
// variable. A nil barrier (one part) never waits.
type barrier struct {
	parts   int32
	arrived atomic.Int32
	gen     atomic.Uint64
	mu      sync.Mutex
	cond    sync.Cond
}

func newBarrier(parts int) *barrier {
	b := &barrier{parts: int32(parts)}
	b.cond.L = &b.mu
	return b
}

// barrierSpins is how many times a waiting part checks for release before
// it sleeps: a few microseconds.
const barrierSpins = 4000

func (b *barrier) wait() {
	if b == nil {
		return
	}
	g := b.gen.Load()
	if b.arrived.Add(1) == b.parts {
		b.arrived.Store(0)
		b.mu.Lock()
		b.gen.Add(1)
		b.cond.Broadcast()
		b.mu.Unlock()
		return
	}
	for range barrierSpins {
		if b.gen.Load() != g {
			return
		}
	}
	b.mu.Lock()
	for b.gen.Load() == g {
		b.cond.Wait()
	}
	b.mu.Unlock()
}
