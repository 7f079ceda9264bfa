package bytebpe

import (
	"iter"
	"slices"
	"strings"

	"github.com/pkg/errors"
)

// TrainOptions sets how many merges Train learns and which special tokens
// the vocabulary starts with. Exactly one of VocabSize and NumMerges must be
// positive.
type TrainOptions struct {
	// VocabSize is the size of the vocabulary to reach: the special tokens,
	// the 256 byte tokens and one token per merge.
	VocabSize int
	// NumMerges is the number of merges to learn.
	NumMerges int
	// SpecialTokens take the first ids, in this order (RoBERTa uses <s>,
	// <pad>, </s>, <unk>, then <mask> last; see RoBERTaSpecials). No merge
	// ever produces one of them.
	SpecialTokens []string
	// MinFrequency is the fewest occurrences a pair needs to be merged;
	// values below 1 mean 1. Training stops early, with fewer merges than
	// asked for, when no pair occurs that often.
	MinFrequency int
}

// RoBERTaSpecials are RoBERTa's special tokens in the order of their ids in
// its vocabulary, apart from <mask>, which RoBERTa puts last; pass them as
// TrainOptions.SpecialTokens to get ids 0 to 4.
var RoBERTaSpecials = []string{BOS, Pad, EOS, Unk, Mask}

// TrainStrings is Train over a slice of texts.
func TrainStrings(texts []string, opts TrainOptions) (*Tokenizer, error) {
	return Train(slices.Values(texts), opts)
}

// Train learns a byte-level BPE vocabulary from texts, split as GPT-2 splits
// text (a merge never crosses a pre-token boundary). The vocabulary holds the
// special tokens (ids 0, 1, ...), then the 256 byte tokens in GPT-2's order,
// then one token per merge.
//
// Each step merges the most frequent adjacent pair; ties go to the pair
// whose first token, then second token, is smallest in byte-level text
// (compared as Go strings), so the result depends only on the texts and the
// options, not on their order or on map iteration. Pair counts are updated
// incrementally, only in the words that contain the merged pair.
func Train(texts iter.Seq[string], opts TrainOptions) (*Tokenizer, error) {
	if (opts.VocabSize > 0) == (opts.NumMerges > 0) {
		return nil, errors.Errorf("bytebpe: set exactly one of VocabSize (%d) and NumMerges (%d)", opts.VocabSize, opts.NumMerges)
	}
	if opts.VocabSize < 0 || opts.NumMerges < 0 || opts.NumMerges > maxID {
		return nil, errors.Errorf("bytebpe: invalid VocabSize %d or NumMerges %d", opts.VocabSize, opts.NumMerges)
	}
	tr := &trainer{vocab: make(map[string]int32)}
	for _, s := range opts.SpecialTokens {
		if s == "" {
			return nil, errors.New("bytebpe: the empty string cannot be a special token")
		}
		if _, dup := tr.vocab[s]; dup {
			return nil, errors.Errorf("bytebpe: special token %q given twice", s)
		}
		if len([]rune(s)) == 1 {
			if _, isByte := runeToByte[[]rune(s)[0]]; isByte {
				return nil, errors.Errorf("bytebpe: special token %q is the token of a byte", s)
			}
		}
		tr.add(s, true)
	}
	for _, b := range alphabetOrder {
		tr.byteID[b] = tr.add(byteSymbol(b), false)
	}
	if opts.VocabSize > 0 && opts.VocabSize < len(tr.tokens) {
		return nil, errors.Errorf("bytebpe: VocabSize %d is below the %d special and byte tokens", opts.VocabSize, len(tr.tokens))
	}
	minFreq := int64(max(opts.MinFrequency, 1))

	tr.countWords(texts)
	tr.countPairs()
	for {
		if opts.NumMerges > 0 && len(tr.merges) >= opts.NumMerges {
			break
		}
		if opts.VocabSize > 0 && len(tr.tokens) >= opts.VocabSize {
			break
		}
		if !tr.step(minFreq) {
			break
		}
	}

	vocab := make(map[string]int, len(tr.tokens))
	for id, tok := range tr.tokens {
		vocab[tok] = id
	}
	return newTokenizer(vocab, tr.merges, func(_ int, err error) error {
		return errors.Wrap(err, "bytebpe: training") // cannot happen
	})
}

// trainer holds the state of Train.
type trainer struct {
	tokens  []string         // id -> token in byte-level text
	special []bool           // id -> special token
	vocab   map[string]int32 // token -> id
	byteID  [256]int32
	merges  [][2]string

	words [][]int32 // distinct pre-tokens as token ids
	freq  []int64   // occurrences of each word

	pairs  map[uint64]int64   // pair -> occurrences, weighted by word frequency
	where  map[uint64][]int32 // pair -> words that hold or held it (may repeat)
	heap   binHeap[pairEntry] // candidates; entries are stale once counts change
	banned map[uint64]bool    // pairs whose merge would make a special token

	stamp []int32 // per word: the step that last visited it
	steps int32
	delta map[uint64]int64 // per step: change of each pair's count
}

func (tr *trainer) add(tok string, special bool) int32 {
	id := int32(len(tr.tokens))
	tr.tokens = append(tr.tokens, tok)
	tr.special = append(tr.special, special)
	tr.vocab[tok] = id
	return id
}

// countWords splits the texts into pre-tokens and counts the distinct ones.
func (tr *trainer) countWords(texts iter.Seq[string]) {
	counts := make(map[string]int64)
	for text := range texts {
		for i := 0; i < len(text); {
			j := nextPiece(text, i)
			w := text[i:j]
			if c, ok := counts[w]; ok {
				counts[w] = c + 1
			} else {
				counts[strings.Clone(w)] = 1
			}
			i = j
		}
	}
	// Sorted, so that the words' order (and with it the work's order) does
	// not depend on map iteration; the result would not either way.
	keys := make([]string, 0, len(counts))
	for w := range counts {
		keys = append(keys, w)
	}
	slices.Sort(keys)
	tr.words = make([][]int32, len(keys))
	tr.freq = make([]int64, len(keys))
	for i, w := range keys {
		ids := make([]int32, len(w))
		for k := 0; k < len(w); k++ {
			ids[k] = tr.byteID[w[k]]
		}
		tr.words[i] = ids
		tr.freq[i] = counts[w]
	}
	tr.stamp = make([]int32, len(keys))
}

// countPairs counts every adjacent pair once and fills the heap.
func (tr *trainer) countPairs() {
	tr.pairs = make(map[uint64]int64)
	tr.where = make(map[uint64][]int32)
	tr.banned = make(map[uint64]bool)
	tr.delta = make(map[uint64]int64)
	for wi, w := range tr.words {
		for k := 0; k+1 < len(w); k++ {
			key := pairKey(w[k], w[k+1])
			tr.pairs[key] += tr.freq[wi]
			tr.noteWhere(key, int32(wi))
		}
	}
	tr.heap = make(binHeap[pairEntry], 0, len(tr.pairs))
	for key, c := range tr.pairs {
		tr.heap = append(tr.heap, tr.entry(key, c))
	}
	tr.heap.init()
}

// noteWhere records that word wi holds pair key.
func (tr *trainer) noteWhere(key uint64, wi int32) {
	l := tr.where[key]
	if n := len(l); n > 0 && l[n-1] == wi {
		return
	}
	tr.where[key] = append(l, wi)
}

func (tr *trainer) entry(key uint64, count int64) pairEntry {
	a, b := int32(key>>32), int32(uint32(key))
	return pairEntry{count: count, a: tr.tokens[a], b: tr.tokens[b], key: key}
}

// step performs the best merge and reports whether there was one.
func (tr *trainer) step(minFreq int64) bool {
	for len(tr.heap) > 0 {
		e := tr.heap.pop()
		if tr.pairs[e.key] != e.count || tr.banned[e.key] {
			continue // stale
		}
		if e.count < minFreq {
			return false
		}
		merged := e.a + e.b
		id, exists := tr.vocab[merged]
		if exists && tr.special[id] {
			tr.banned[e.key] = true
			continue
		}
		if !exists { // a merged token can exist already, made by another pair
			id = tr.add(merged, false)
		}
		tr.merges = append(tr.merges, [2]string{e.a, e.b})
		tr.apply(e.key, id)
		return true
	}
	return false
}

// apply merges pair key into token id in every word that holds it and
// updates the pair counts.
func (tr *trainer) apply(key uint64, id int32) {
	a, b := int32(key>>32), int32(uint32(key))
	tr.steps++
	clear(tr.delta)
	for _, wi := range tr.where[key] {
		if tr.stamp[wi] == tr.steps {
			continue
		}
		tr.stamp[wi] = tr.steps
		w := tr.words[wi]
		if !holdsPair(w, a, b) {
			continue // the list is stale for this word
		}
		f := tr.freq[wi]
		for k := 0; k+1 < len(w); k++ {
			tr.delta[pairKey(w[k], w[k+1])] -= f
		}
		out := w[:0]
		for k := 0; k < len(w); k++ {
			if k+1 < len(w) && w[k] == a && w[k+1] == b {
				out = append(out, id)
				k++
			} else {
				out = append(out, w[k])
			}
		}
		tr.words[wi] = out
		for k := 0; k+1 < len(out); k++ {
			p := pairKey(out[k], out[k+1])
			tr.delta[p] += f
			if out[k] == id || out[k+1] == id {
				tr.noteWhere(p, wi)
			}
		}
	}
	delete(tr.where, key)
	for p, d := range tr.delta {
		if d == 0 {
			continue
		}
		c := tr.pairs[p] + d
		if c <= 0 {
			delete(tr.pairs, p)
			continue
		}
		tr.pairs[p] = c
		tr.heap.push(tr.entry(p, c))
	}
}

func holdsPair(w []int32, a, b int32) bool {
	for k := 0; k+1 < len(w); k++ {
		if w[k] == a && w[k+1] == b {
			return true
		}
	}
	return false
}

// pairEntry is a candidate merge: a pair, its count when pushed, and its two
// tokens for tie-breaking.
type pairEntry struct {
	count int64
	a, b  string
	key   uint64
}

// before orders the heap: higher count first, then smaller first token, then
// smaller second token.
func (x pairEntry) before(y pairEntry) bool {
	if x.count != y.count {
		return x.count > y.count
	}
	if x.a != y.a {
		return x.a < y.a
	}
	return x.b < y.b
}
