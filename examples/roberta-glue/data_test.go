package main

import (
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
)

func TestPaddedLen(t *testing.T) {
	for _, tc := range []struct{ n, maxLen, want int }{{1, 128, 8}, {8, 128, 8}, {9, 128, 16}, {127, 128, 128}, {61, 60, 60}, {57, 60, 60}, {56, 60, 56}} {
		if got := paddedLen(tc.n, tc.maxLen); got != tc.want {
			t.Errorf("paddedLen(%d, %d) = %d, want %d", tc.n, tc.maxLen, got, tc.want)
		}
	}
}

// randomLengths draws n example lengths in [4, 100].
func randomLengths(n int, seed uint64) []int {
	rng := rand.New(rand.NewPCG(seed, 0))
	out := make([]int, n)
	for i := range out {
		out[i] = 4 + rng.IntN(97)
	}
	return out
}

func TestTrainBatchesCoverEveryExampleOnce(t *testing.T) {
	const n, batch, maxLen = 1003, 16, 128
	lens := randomLengths(n, 1)
	rng := rand.New(rand.NewPCG(2, 2))
	var first [][]int
	for epoch := 0; epoch < 3; epoch++ {
		batches := trainBatches(lens, batch, rng)
		if epoch == 0 {
			first = batches
		} else if reflect.DeepEqual(batches, first) {
			t.Error("two epochs have the same batches")
		}
		seen := make([]int, n)
		for i, b := range batches {
			if len(b) != batch && i != len(batches)-1 {
				t.Fatalf("epoch %d: batch %d of %d has %d examples", epoch, i, len(batches), len(b))
			}
			for _, e := range b {
				seen[e]++
			}
		}
		if last := batches[len(batches)-1]; len(last) != n%batch {
			t.Errorf("last batch has %d examples, want %d", len(last), n%batch)
		}
		for e, k := range seen {
			if k != 1 {
				t.Fatalf("epoch %d: example %d appears %d times", epoch, e, k)
			}
		}
	}
	// Same seed, same batches.
	again := trainBatches(lens, batch, rand.New(rand.NewPCG(2, 2)))
	if !reflect.DeepEqual(again, first) {
		t.Error("batches are not reproducible from the seed")
	}
}

// Bucketing: each batch is a run of one length-sorted chunk, so its lengths
// are close, and padding (to a multiple of 8) costs far less than with
// unsorted batches.
func TestTrainBatchesBucketByLength(t *testing.T) {
	const n, batch, maxLen = 2000, 16, 128
	lens := randomLengths(n, 3)
	exs := make([]example, n)
	for i, l := range lens {
		exs[i] = example{ids: make([]int, l)}
	}
	padding := func(batches [][]int) int {
		p := 0
		for _, b := range batches {
			ids, mask, tl := padBatch(exs, b, 1, maxLen)
			if tl%padMultiple != 0 || len(ids) != len(b)*tl {
				t.Fatalf("batch padded to %d", tl)
			}
			p += len(mask) - sum(mask)
		}
		return p
	}
	bucketed := padding(trainBatches(lens, batch, rand.New(rand.NewPCG(4, 4))))
	var unsorted [][]int
	perm := rand.New(rand.NewPCG(4, 4)).Perm(n)
	for s := 0; s < n; s += batch {
		unsorted = append(unsorted, perm[s:min(s+batch, n)])
	}
	plain := padding(unsorted)
	t.Logf("padding: %d ids bucketed, %d unsorted", bucketed, plain)
	if bucketed*5 > plain {
		t.Errorf("bucketing pads %d ids, unsorted batches %d", bucketed, plain)
	}
}

func TestEvalBatchesFixedAndSorted(t *testing.T) {
	lens := randomLengths(101, 5)
	a, b := evalBatches(lens, 10), evalBatches(lens, 10)
	if !reflect.DeepEqual(a, b) || len(a) != 11 || len(a[10]) != 1 {
		t.Fatalf("evaluation batches %v", a)
	}
	var all []int
	prev := 0
	for _, bt := range a {
		for _, e := range bt {
			if lens[e] < prev {
				t.Fatal("evaluation batches are not sorted by length")
			}
			prev = lens[e]
			all = append(all, e)
		}
	}
	sort.Ints(all)
	for i, e := range all {
		if e != i {
			t.Fatal("evaluation batches do not cover every example once")
		}
	}
}

func TestPadBatchLayout(t *testing.T) {
	exs := []example{{ids: []int{0, 5, 6, 2}}, {ids: []int{0, 7, 8, 9, 10, 11, 12, 13, 14, 2}}, {ids: []int{0, 2}}}
	ids, mask, tl := padBatch(exs, []int{2, 0}, 1, 64)
	if tl != 8 {
		t.Fatalf("length %d, want 8", tl)
	}
	wantIDs := []int{0, 2, 1, 1, 1, 1, 1, 1, 0, 5, 6, 2, 1, 1, 1, 1}
	wantMask := []int{1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0}
	if !reflect.DeepEqual(ids, wantIDs) || !reflect.DeepEqual(mask, wantMask) {
		t.Errorf("ids %v mask %v", ids, mask)
	}
	if _, _, tl := padBatch(exs, []int{1}, 1, 64); tl != 16 {
		t.Errorf("10 ids padded to %d, want 16", tl)
	}
}

// The graph cache keeps the most recently used graphs within its token
// budget and closes the ones it drops.
func TestGraphCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := newGraphCache(3 * 8 * 16)
	var closed []*fakeVM
	mk := func() *seqGraph { return &seqGraph{vm: &fakeVM{closed: &closed}} }
	a, b, d := shapeKey{true, 8, 16}, shapeKey{false, 8, 16}, shapeKey{true, 8, 8}
	ga, gb, gd := mk(), mk(), mk()
	c.put(a, ga)
	c.put(b, gb)
	c.put(d, gd) // 16·8 + 16·8 + 8·8 ids: within 3·8·16
	if got, ok := c.get(a); !ok || got != ga {
		t.Fatal("a cached graph was not returned")
	}
	// A full-size graph needs room: b, now the least recently used, goes.
	e := shapeKey{true, 8, 24}
	c.put(e, mk())
	if _, ok := c.get(b); ok || len(closed) != 1 || closed[0] != gb.vm {
		t.Error("the least recently used graph was kept or not closed")
	}
	for _, k := range []shapeKey{a, d, e} {
		if _, ok := c.get(k); !ok {
			t.Errorf("graph %+v was dropped", k)
		}
	}
	if c.used != 8*16+8*8+8*24 || len(c.items) != 3 {
		t.Errorf("cache holds %d ids in %d graphs", c.used, len(c.items))
	}
	// One graph larger than the budget is still kept, alone.
	c.put(shapeKey{true, 64, 64}, mk())
	if len(c.items) != 1 {
		t.Errorf("%d graphs kept beside an oversized one", len(c.items))
	}
	c.closeAll()
	if len(c.items) != 0 || c.used != 0 || len(closed) != 5 {
		t.Errorf("closeAll left %d graphs, %d ids; %d machines closed", len(c.items), c.used, len(closed))
	}
}

// fakeVM records that it was closed.
type fakeVM struct{ closed *[]*fakeVM }

func (*fakeVM) RunAll() error  { return nil }
func (*fakeVM) Reset()         {}
func (v *fakeVM) Close() error { *v.closed = append(*v.closed, v); return nil }
