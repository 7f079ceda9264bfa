package bytebpe

// bpe applies the merges to one pre-token, given as raw bytes, and returns
// the ids of the resulting tokens.
//
// The reference algorithm (GPT-2's encoder.py) repeats: find the adjacent
// pair with the lowest merge rank, merge every occurrence of it from left to
// right without overlaps, until no adjacent pair has a merge. That is
// quadratic in the word's length; this does the same in O(n log n) with a heap
// of (rank, position) entries over a linked list of symbols. All entries of
// the lowest rank are taken out together and merged in position order (the
// left-to-right pass), and only then are the pairs the merges created put on
// the heap. Doing so keeps the result identical to the reference even for
// merge lists in which a merged token takes part in a merge of lower rank,
// where merging greedily one pair at a time (as some ports do) differs.
func (t *Tokenizer) bpe(w string) []int32 {
	n := len(w)
	ids := make([]int32, n)             // token at each position; -1 once merged away
	next := make([]int32, n)            // next live position, -1 at the end
	prev := make([]int32, n)            // previous live position, -1 at the start
	h := make(binHeap[heapEntry], 0, n) // (rank, left position) of mergeable pairs
	for i := 0; i < n; i++ {
		ids[i] = t.byteID[w[i]]
		prev[i] = int32(i - 1)
		next[i] = int32(i + 1)
	}
	next[n-1] = -1
	for i := 0; i+1 < n; i++ {
		if m, ok := t.mergeOf[pairKey(ids[i], ids[i+1])]; ok {
			h = append(h, heapEntry{m.rank, int32(i)})
		}
	}
	h.init()
	push := func(p int32) {
		q := next[p]
		if q < 0 {
			return
		}
		if m, ok := t.mergeOf[pairKey(ids[p], ids[q])]; ok {
			h.push(heapEntry{m.rank, p})
		}
	}
	var merged []int32
	for len(h) > 0 {
		rank := h[0].rank
		merged = merged[:0]
		for len(h) > 0 && h[0].rank == rank {
			p := h.pop().pos
			if ids[p] < 0 {
				continue
			}
			q := next[p]
			if q < 0 {
				continue
			}
			m, ok := t.mergeOf[pairKey(ids[p], ids[q])]
			if !ok || m.rank != rank {
				continue // stale: the pair at p changed
			}
			ids[p] = m.id
			ids[q] = -1
			next[p] = next[q]
			if next[q] >= 0 {
				prev[next[q]] = p
			}
			merged = append(merged, p)
		}
		for _, p := range merged {
			if prev[p] >= 0 {
				push(prev[p])
			}
			push(p)
		}
	}
	out := make([]int32, 0, n)
	for p := int32(0); p >= 0; p = next[p] {
		out = append(out, ids[p])
	}
	return out[:len(out):len(out)]
}

type heapEntry struct {
	rank, pos int32
}

func (a heapEntry) before(b heapEntry) bool {
	return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos)
}
