package dataparallel_test

import (
	"sync"

	"github.com/lilygo/lily/dataparallel"
)

// localGroup is n ranks in one process, one goroutine each: a Comm that
// sums in rank order, as MPI does for two ranks, for tests without MPI.
type localGroup struct {
	n       int
	mu      sync.Mutex
	cond    *sync.Cond
	arrived int
	gen     int
	slots   []any
}

// localRank is one rank of a localGroup.
type localRank struct {
	g    *localGroup
	rank int
}

// newLocalGroup returns the n ranks of a new group.
func newLocalGroup(n int) []dataparallel.Comm {
	g := &localGroup{n: n, slots: make([]any, n)}
	g.cond = sync.NewCond(&g.mu)
	out := make([]dataparallel.Comm, n)
	for r := range out {
		out[r] = &localRank{g: g, rank: r}
	}
	return out
}

// barrier returns when every rank has called it.
func (g *localGroup) barrier() {
	g.mu.Lock()
	defer g.mu.Unlock()
	gen := g.gen
	if g.arrived++; g.arrived == g.n {
		g.arrived, g.gen = 0, g.gen+1
		g.cond.Broadcast()
		return
	}
	for gen == g.gen {
		g.cond.Wait()
	}
}

func (c *localRank) Rank() int { return c.rank }
func (c *localRank) Size() int { return c.g.n }

func (c *localRank) AllreduceSumFloat32(buf []float32) error { return allreduce(c, buf) }
func (c *localRank) AllreduceSumFloat64(buf []float64) error { return allreduce(c, buf) }

func (c *localRank) BroadcastFloat32(buf []float32, root int) error { return bcast(c, buf, root) }
func (c *localRank) BroadcastFloat64(buf []float64, root int) error { return bcast(c, buf, root) }

// allreduce sums every rank's buf in rank order into every buf.
func allreduce[T float32 | float64](c *localRank, buf []T) error {
	c.g.slots[c.rank] = buf
	c.g.barrier()
	sum := append([]T(nil), c.g.slots[0].([]T)...)
	for r := 1; r < c.g.n; r++ {
		for i, v := range c.g.slots[r].([]T) {
			sum[i] += v
		}
	}
	c.g.barrier()
	copy(buf, sum)
	return nil
}

// bcast copies root's buf into every buf.
func bcast[T float32 | float64](c *localRank, buf []T, root int) error {
	c.g.slots[c.rank] = buf
	c.g.barrier()
	if c.rank != root {
		copy(buf, c.g.slots[root].([]T))
	}
	c.g.barrier()
	return nil
}

// onRanks runs f on every rank of a new group of n, concurrently, and
// returns the ranks' errors.
func onRanks(n int, f func(dataparallel.Comm) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r, c := range newLocalGroup(n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = f(c)
		}()
	}
	wg.Wait()
	return errs
}
