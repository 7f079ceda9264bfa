package main

import (
	"math/rand/v2"
	"sort"

	"github.com/lilygo/lily/glue"
	"github.com/lilygo/lily/tokenizers/bytebpe"
	"github.com/pkg/errors"
)

// padMultiple is what batch lengths are rounded up to, bounding the number
// of distinct graph shapes to about maxLen/padMultiple per batch size.
const padMultiple = 8

// chunkBatches is how many batches' worth of shuffled examples are sorted by
// length together: large enough for little padding, small enough that a
// batch's members still change from epoch to epoch.
const chunkBatches = 20

// example is one tokenized GLUE example.
type example struct {
	ids  []int   // <s> A </s> or <s> A </s></s> B </s>, truncated to max_len
	gold float64 // class index, or the STS-B score
}

// encodeExamples tokenizes labeled GLUE examples as RoBERTa does,
// truncating to maxLen ids (longest first for pairs).
func encodeExamples(tok *bytebpe.Tokenizer, task glue.Task, exs []glue.Example, maxLen int) ([]example, error) {
	golds, err := glue.Golds(task.Name, exs)
	if err != nil {
		return nil, err
	}
	out, err := encodeTexts(tok, task, exs, maxLen)
	for i := range out {
		out[i].gold = golds[i]
	}
	return out, err
}

// encodeTexts tokenizes GLUE examples, labeled or not, leaving gold 0.
func encodeTexts(tok *bytebpe.Tokenizer, task glue.Task, exs []glue.Example, maxLen int) ([]example, error) {
	out := make([]example, len(exs))
	opts := bytebpe.EncodeOptions{MaxLength: maxLen}
	for i, e := range exs {
		var enc bytebpe.Encoding
		var err error
		if task.Pair {
			enc, err = tok.EncodePair(e.TextA, e.TextB, opts)
		} else {
			enc, err = tok.EncodeSingle(e.TextA, opts)
		}
		if err != nil {
			return nil, errors.Wrapf(err, "tokenizing %s example %q (line %d)", task.Name, e.ID, e.Line)
		}
		out[i] = example{ids: enc.IDs}
	}
	return out, nil
}

// paddedLen is the graph length for a batch whose longest example has n
// ids: n rounded up to a multiple of padMultiple, at most maxLen.
func paddedLen(n, maxLen int) int {
	t := (n + padMultiple - 1) / padMultiple * padMultiple
	return min(t, maxLen)
}

// trainBatches returns one epoch of batches over examples with the given
// lengths: the examples are shuffled, sorted by length within chunks of
// chunkBatches batches, cut into batches, and the batches shuffled. Every
// example appears exactly once; only the last batch may be smaller.
func trainBatches(lengths []int, batch int, rng *rand.Rand) [][]int {
	perm := rng.Perm(len(lengths))
	chunk := batch * chunkBatches
	var out [][]int
	for start := 0; start < len(perm); start += chunk {
		part := perm[start:min(start+chunk, len(perm))]
		sort.SliceStable(part, func(i, j int) bool { return lengths[part[i]] < lengths[part[j]] })
		for b := 0; b < len(part); b += batch {
			out = append(out, part[b:min(b+batch, len(part))])
		}
	}
	// Keep the one short batch (if any) last, so that at most one batch per
	// epoch has an unusual size; shuffle the others.
	full := out
	if n := len(out); n > 0 && len(out[n-1]) < batch {
		full = out[:n-1]
	}
	rng.Shuffle(len(full), func(i, j int) { full[i], full[j] = full[j], full[i] })
	return out
}

// evalBatches cuts the examples, sorted by length (ties by position), into
// batches: a fixed order, so an evaluation always sees the same batches.
func evalBatches(lengths []int, batch int) [][]int {
	order := make([]int, len(lengths))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return lengths[order[i]] < lengths[order[j]] })
	var out [][]int
	for b := 0; b < len(order); b += batch {
		out = append(out, order[b:min(b+batch, len(order))])
	}
	return out
}

// padBatch lays out the examples idx as [len(idx), t] ids and attention mask,
// padded with pad to t = paddedLen of the longest.
func padBatch(exs []example, idx []int, pad, maxLen int) (ids, mask []int, t int) {
	longest := 0
	for _, i := range idx {
		longest = max(longest, len(exs[i].ids))
	}
	t = paddedLen(longest, maxLen)
	ids = make([]int, len(idx)*t)
	mask = make([]int, len(idx)*t)
	for r, i := range idx {
		row := ids[r*t : (r+1)*t]
		for j := range row {
			row[j] = pad
		}
		copy(row, exs[i].ids)
		for j := range exs[i].ids {
			mask[r*t+j] = 1
		}
	}
	return ids, mask, t
}

// lengths returns the id counts of the examples.
func lengths(exs []example) []int {
	out := make([]int, len(exs))
	for i, e := range exs {
		out[i] = len(e.ids)
	}
	return out
}
