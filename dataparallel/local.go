package dataparallel

import (
	"reflect"
	"sync"

	"github.com/pkg/errors"
)

// localGroup is n ranks in one process, one goroutine each.
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

// NewLocalGroup returns n Comms that connect n goroutines of one process
// as the ranks of a data-parallel run, for testing data-parallel code
// without MPI. Its allreduce sums in rank order (as Open MPI does for two
// ranks); every rank must make the same calls with buffers of the same
// length, each from its own goroutine.
func NewLocalGroup(n int) []Comm {
	g := &localGroup{n: n, slots: make([]any, n)}
	g.cond = sync.NewCond(&g.mu)
	out := make([]Comm, n)
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
	if err := c.sameLengths(len(buf)); err != nil {
		return err
	}
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
	if err := c.sameLengths(len(buf)); err != nil {
		return err
	}
	if c.rank != root {
		copy(buf, c.g.slots[root].([]T))
	}
	c.g.barrier()
	return nil
}

// sameLengths checks, between the two barriers of a collective, that every
// rank passed a buffer of n values; all ranks return the same answer.
func (c *localRank) sameLengths(n int) error {
	for r, s := range c.g.slots {
		if l := reflect.ValueOf(s).Len(); l != n {
			c.g.barrier()
			return errors.Errorf("dataparallel: rank %d passed %d values to a collective call, rank %d %d; every rank must pass as many", r, l, c.rank, n)
		}
	}
	return nil
}
