package gemm

import (
	"runtime"
	"sync"
)

// Cache blocking, in one place. A block of op(B) is kc rows × nc columns
// (packed once per (jc, pc) and read by every block of A), a block of op(A)
// mc rows × kc columns. The sizes are in bytes of the packed panels so that
// float32 and float64 get the same cache footprints:
//
//   - the kc×NR micro-panel of B that one micro-kernel sweep reuses for
//     every MR-row panel of A stays in L1 (kcBytes·NR: 32 KiB for both
//     types, of the 48 KiB L1d of a Zen 4/5 core);
//   - the mc×kc block of A stays in L2 (mcBytes·kc: 512 KiB of 1 MiB);
//   - the kc×nc block of B is sized for the shared L3.
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

// parallelGrain is the least number of multiply-adds (m·n·k) worth a
// goroutine of its own: about 10 µs of work at this package's speed, several
// times what starting and joining a goroutine costs.
const parallelGrain = 1 << 20

// split runs p on up to GOMAXPROCS goroutines, each on a range of C's rows
// (or of its columns when C is wider than tall), aligned to the kernel's
// tile so that no two goroutines write one cache line of C... except at
// the range edges, which are tile-aligned and so share none for
// NR-aligned rows. Each goroutine packs its own share of the operand it
// splits and the whole of the other one, which for the shapes that matter
// (one side large) costs little next to the product.
func split[T Float](kern *microKernel[T], p problem[T]) {
	work := p.m * p.n * p.k
	parts := min(runtime.GOMAXPROCS(0), max(1, work/parallelGrain))
	byRows := p.m >= p.n
	tile := kern.nr
	extent := p.n
	if byRows {
		tile, extent = kern.mr, p.m
	}
	parts = min(parts, (extent+tile-1)/tile)
	if parts <= 1 {
		run(kern, p)
		return
	}
	var wg sync.WaitGroup
	tiles := (extent + tile - 1) / tile
	for i := 0; i < parts; i++ {
		lo, hi := tiles*i/parts*tile, min(extent, tiles*(i+1)/parts*tile)
		q := p
		if byRows {
			q.m = hi - lo
			if p.ta {
				q.a = p.a[lo:]
			} else {
				q.a = p.a[lo*p.lda:]
			}
			q.c = p.c[lo*p.ldc:]
		} else {
			q.n = hi - lo
			if p.tb {
				q.b = p.b[lo*p.ldb:]
			} else {
				q.b = p.b[lo:]
			}
			q.c = p.c[lo:]
		}
		if i == parts-1 {
			run(kern, q)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			run(kern, q)
		}()
	}
	wg.Wait()
}

// run is the blocked algorithm on one goroutine: loops over nc-column
// blocks of C, kc-deep slices of the product (B packed once per pair), and
// mc-row blocks (A packed once per triple), then the micro-kernel over the
// block's NR×MR tiles.
func run[T Float](kern *microKernel[T], p problem[T]) {
	mr, nr := kern.mr, kern.nr
	mc, kc, nc := kern.mc, kern.kc, kern.nc
	buf, pool := getBuffers[T]()
	defer pool.Put(buf)
	needA := min(mc, roundUp(p.m, mr)) * min(kc, p.k)
	needB := min(nc, roundUp(p.n, nr)) * min(kc, p.k)
	if len(buf.a) < needA {
		buf.a = make([]T, needA)
	}
	if len(buf.b) < needB {
		buf.b = make([]T, needB)
	}
	for jc := 0; jc < p.n; jc += nc {
		nb := min(nc, p.n-jc)
		for pc := 0; pc < p.k; pc += kc {
			kb := min(kc, p.k-pc)
			packB(buf.b, p.tb, p.b, p.ldb, pc, jc, kb, nb, nr)
			beta, accumulate := p.beta, p.beta != 0
			if pc > 0 {
				beta, accumulate = 1, true
			}
			for ic := 0; ic < p.m; ic += mc {
				mb := min(mc, p.m-ic)
				packA(buf.a, p.ta, p.a, p.lda, ic, pc, mb, kb, mr, p.alpha)
				for jr := 0; jr < nb; jr += nr {
					nt := min(nr, nb-jr)
					bp := &buf.b[jr*kb]
					for ir := 0; ir < mb; ir += mr {
						kern.tile(kb, &buf.a[ir*kb], bp, &p.c[(ic+ir)*p.ldc+jc+jr], p.ldc, beta, accumulate, min(mr, mb-ir), nt)
					}
				}
			}
		}
	}
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }
