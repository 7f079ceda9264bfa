package bytebpe

import (
	"sort"
	"strings"
	"sync"

	"github.com/pkg/errors"
)

// RoBERTa's special tokens.
const (
	BOS  = "<s>"    // start of a sequence, also RoBERTa's CLS
	EOS  = "</s>"   // end of a sequence, also RoBERTa's SEP
	Pad  = "<pad>"  // padding
	Unk  = "<unk>"  // unknown; byte-level BPE never needs it
	Mask = "<mask>" // the masked-language-model mask
)

// maxID bounds the ids a vocabulary may use, so that a corrupt file cannot
// make the id table huge.
const maxID = 1 << 24

// Cache limits: words longer than maxCachedWord bytes are not cached, and the
// cache is emptied when it reaches maxCacheEntries.
const (
	maxCachedWord   = 256
	maxCacheEntries = 1 << 16
)

// merge is what a pair of adjacent tokens becomes: the merge's rank (lower
// merges first) and the id of the merged token.
type merge struct {
	rank int32
	id   int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// Tokenizer is a byte-level BPE tokenizer: a vocabulary of tokens with ids,
// an ordered list of merges, and special tokens that BPE never produces.
//
// Its encoding and decoding methods are safe for concurrent use; AddSpecialToken
// must not run concurrently with anything else.
type Tokenizer struct {
	idToToken []string         // id -> token in byte-level text; "" for unused ids
	vocab     map[string]int32 // token -> id, specials included
	raw       []string         // id -> the bytes the token decodes to
	special   []bool           // id -> is a special (added) token
	merges    [][2]string      // merges in rank order
	mergeOf   map[uint64]merge // (left id, right id) -> merge
	byteID    [256]int32       // byte -> id of its one-rune token

	// llama3 splits text by Llama3Pattern instead of GPT-2's Pattern.
	llama3 bool
	// ignoreMerges takes a pre-token that is itself in the vocabulary as
	// that one token without applying merges (tokenizer.json's
	// ignore_merges, which LLaMA 3's sets).
	ignoreMerges bool

	// specialTokens lists the special tokens longest first, for ParseSpecial.
	specialTokens []string

	mu    sync.RWMutex
	cache map[string][]int32
}

// newTokenizer builds a tokenizer from a vocabulary and merges (in rank
// order, given as token pairs). Tokens that BPE cannot produce — neither the
// token of one byte nor the result of a merge — are special. The errors
// go through wrap, with the index of the offending merge or -1 for an error
// in the vocabulary, so that loaders can name the file and line.
func newTokenizer(vocab map[string]int, merges [][2]string, wrap func(merge int, err error) error) (*Tokenizer, error) {
	t := &Tokenizer{
		vocab:   make(map[string]int32, len(vocab)),
		mergeOf: make(map[uint64]merge, len(merges)),
		cache:   make(map[string][]int32),
	}
	size := 0
	for tok, id := range vocab {
		if tok == "" {
			return nil, wrap(-1, errors.New("the empty string is not a valid token"))
		}
		if id < 0 || id >= maxID {
			return nil, wrap(-1, errors.Errorf("token %q has id %d, outside [0, %d)", tok, id, maxID))
		}
		if id+1 > size {
			size = id + 1
		}
	}
	t.idToToken = make([]string, size)
	for tok, id := range vocab {
		if prev := t.idToToken[id]; prev != "" {
			a, b := prev, tok
			if b < a {
				a, b = b, a
			}
			return nil, wrap(-1, errors.Errorf("tokens %q and %q share id %d", a, b, id))
		}
		t.idToToken[id] = tok
		t.vocab[tok] = int32(id)
	}
	for b := 0; b < 256; b++ {
		sym := byteSymbol(byte(b))
		id, ok := t.vocab[sym]
		if !ok {
			return nil, wrap(-1, errors.Errorf("the vocabulary lacks %q, the token of byte 0x%02x", sym, b))
		}
		t.byteID[b] = id
	}
	t.merges = make([][2]string, 0, len(merges))
	for i, m := range merges {
		if err := t.addMerge(m[0], m[1]); err != nil {
			return nil, wrap(i, err)
		}
	}
	t.markSpecials()
	return t, nil
}

// markSpecials finds the tokens BPE can produce, starting from the byte
// tokens and following merges whose two parts are producible, and makes the
// others special. It fills raw: the bytes of producible tokens, and the text
// itself of special ones.
//
// With ignoreMerges, every vocabulary entry made of byte tokens is
// producible too (a pre-token equal to it becomes it), except the tokens in
// added, which the file lists as added tokens.
func (t *Tokenizer) markSpecials() { t.markSpecialsExcept(nil) }

// markSpecialsExcept is markSpecials keeping the tokens in added apart.
func (t *Tokenizer) markSpecialsExcept(added map[string]bool) {
	size := len(t.idToToken)
	reachable := make([]bool, size)
	type use struct{ other, result int32 }
	uses := make(map[int32][]use) // token -> the merges it is a part of
	for key, m := range t.mergeOf {
		a, b := int32(key>>32), int32(uint32(key))
		uses[a] = append(uses[a], use{b, m.id})
		if a != b {
			uses[b] = append(uses[b], use{a, m.id})
		}
	}
	var queue []int32
	for _, id := range t.byteID {
		reachable[id] = true
		queue = append(queue, id)
	}
	for len(queue) > 0 {
		id := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		for _, u := range uses[id] {
			if reachable[u.other] && !reachable[u.result] {
				reachable[u.result] = true
				queue = append(queue, u.result)
			}
		}
	}
	if t.ignoreMerges {
		// A pre-token that is a vocabulary entry becomes that entry.
		for id, tok := range t.idToToken {
			if _, ok := bytesOfSymbols(tok); ok && tok != "" && !added[tok] {
				reachable[id] = true
			}
		}
	}
	t.raw = make([]string, size)
	t.special = make([]bool, size)
	for id, tok := range t.idToToken {
		if tok == "" {
			continue
		}
		if reachable[id] {
			t.raw[id], _ = bytesOfSymbols(tok) // made of byte tokens, so always ok
		} else {
			t.raw[id] = tok
			t.special[id] = true
		}
	}
	t.sortSpecials()
}

// addMerge appends the merge a+b with the next rank. A pair listed twice keeps
// its last rank, as in GPT-2's and Hugging Face's loaders.
func (t *Tokenizer) addMerge(a, b string) error {
	ia, ok := t.vocab[a]
	if !ok {
		return errors.Errorf("unknown token %q", a)
	}
	ib, ok := t.vocab[b]
	if !ok {
		return errors.Errorf("unknown token %q", b)
	}
	ic, ok := t.vocab[a+b]
	if !ok {
		return errors.Errorf("the merged token %q is not in the vocabulary", a+b)
	}
	t.mergeOf[pairKey(ia, ib)] = merge{rank: int32(len(t.merges)), id: ic}
	t.merges = append(t.merges, [2]string{a, b})
	return nil
}

func (t *Tokenizer) sortSpecials() {
	t.specialTokens = t.specialTokens[:0]
	for id, s := range t.special {
		if s {
			t.specialTokens = append(t.specialTokens, t.idToToken[id])
		}
	}
	sort.Slice(t.specialTokens, func(i, j int) bool {
		a, b := t.specialTokens[i], t.specialTokens[j]
		if len(a) != len(b) {
			return len(a) > len(b)
		}
		return a < b
	})
}

// AddSpecialToken makes token a special token with the given id. A tokenizer
// loaded from GPT-2's files has none of RoBERTa's specials; add them, for
// example, after the vocabulary:
//
//	for _, s := range []string{bytebpe.BOS, bytebpe.Pad, bytebpe.EOS, bytebpe.Unk, bytebpe.Mask} {
//		if err := tok.AddSpecialToken(s, tok.VocabSize()); err != nil { ... }
//	}
//
// Adding a special token that already exists with the same id does nothing.
// It is an error when the token exists with another id, when the id is taken,
// or when the token is one BPE can produce (a byte or a merge result).
func (t *Tokenizer) AddSpecialToken(token string, id int) error {
	if token == "" {
		return errors.New("bytebpe: the empty string cannot be a special token")
	}
	if id < 0 || id >= maxID {
		return errors.Errorf("bytebpe: special token %q: id %d outside [0, %d)", token, id, maxID)
	}
	if cur, ok := t.vocab[token]; ok {
		if int(cur) != id {
			return errors.Errorf("bytebpe: special token %q already has id %d", token, cur)
		}
		if !t.special[cur] {
			return errors.Errorf("bytebpe: %q (id %d) is a BPE token, not a special one", token, cur)
		}
		return nil
	}
	if id < len(t.idToToken) && t.idToToken[id] != "" {
		return errors.Errorf("bytebpe: special token %q: id %d is taken by %q", token, id, t.idToToken[id])
	}
	if grow := id + 1 - len(t.idToToken); grow > 0 {
		t.idToToken = append(t.idToToken, make([]string, grow)...)
		t.raw = append(t.raw, make([]string, grow)...)
		t.special = append(t.special, make([]bool, grow)...)
	}
	t.idToToken[id] = token
	t.raw[id] = token
	t.special[id] = true
	t.vocab[token] = int32(id)
	t.sortSpecials()
	return nil
}

// VocabSize is one more than the largest id in use, so VocabSize() is the
// first free id after the vocabulary.
func (t *Tokenizer) VocabSize() int { return len(t.idToToken) }

// NumMerges is the number of merges.
func (t *Tokenizer) NumMerges() int { return len(t.merges) }

// Merges returns the merges in rank order, each as its two tokens in
// byte-level text.
func (t *Tokenizer) Merges() [][2]string {
	return append([][2]string(nil), t.merges...)
}

// TokenToID returns the id of a token given in byte-level text ("Ġthe") or
// of a special token ("<s>").
func (t *Tokenizer) TokenToID(token string) (int, bool) {
	id, ok := t.vocab[token]
	return int(id), ok
}

// IDToToken returns the token of id in byte-level text, or the special
// token's own text.
func (t *Tokenizer) IDToToken(id int) (string, bool) {
	if id < 0 || id >= len(t.idToToken) || t.idToToken[id] == "" {
		return "", false
	}
	return t.idToToken[id], true
}

// IsSpecial reports whether id is a special token: one that BPE cannot
// produce, such as "<s>" or "<|endoftext|>", or one added by AddSpecialToken.
func (t *Tokenizer) IsSpecial(id int) bool {
	return id >= 0 && id < len(t.special) && t.special[id]
}

// SpecialTokens returns the special tokens, ordered by id.
func (t *Tokenizer) SpecialTokens() []string {
	var out []string
	for id, s := range t.special {
		if s {
			out = append(out, t.idToToken[id])
		}
	}
	return out
}

// Encode returns the ids of text under byte-level BPE, with no special tokens
// added and none recognized in the text: "<s>" in text is encoded as the
// three characters it consists of, as GPT-2's encoder does.
func (t *Tokenizer) Encode(text string) []int {
	return t.appendEncoded(nil, text)
}

// Tokenize returns the tokens of text in byte-level text ("Hello", "Ġworld").
func (t *Tokenizer) Tokenize(text string) []string {
	ids := t.Encode(text)
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = t.idToToken[id]
	}
	return out
}

// appendEncoded appends the ids of text to dst.
func (t *Tokenizer) appendEncoded(dst []int, text string) []int {
	for i := 0; i < len(text); {
		j := t.nextPiece(text, i)
		for _, id := range t.word(text[i:j]) {
			dst = append(dst, int(id))
		}
		i = j
	}
	return dst
}

// appendEncodedSpecial is appendEncoded that also maps the special tokens
// appearing in text to their ids, the longest match first.
func (t *Tokenizer) appendEncodedSpecial(dst []int, text string) []int {
	if len(t.specialTokens) == 0 {
		return t.appendEncoded(dst, text)
	}
	start := 0
	for i := 0; i < len(text); {
		matched := ""
		for _, s := range t.specialTokens {
			if strings.HasPrefix(text[i:], s) {
				matched = s
				break
			}
		}
		if matched == "" {
			i++
			continue
		}
		dst = t.appendEncoded(dst, text[start:i])
		dst = append(dst, int(t.vocab[matched]))
		i += len(matched)
		start = i
	}
	return t.appendEncoded(dst, text[start:])
}

// nextPiece returns the end of the pre-token at text[i:] under the
// tokenizer's pattern.
func (t *Tokenizer) nextPiece(text string, i int) int {
	if t.llama3 {
		return nextPieceLlama3(text, i)
	}
	return nextPiece(text, i)
}

// word returns the BPE ids of one pre-token, from the cache when it can.
func (t *Tokenizer) word(w string) []int32 {
	if len(w) == 1 {
		return t.byteID[w[0] : w[0]+1 : w[0]+1]
	}
	if t.ignoreMerges {
		if id, ok := t.vocab[ByteLevelString(w)]; ok && !t.special[id] {
			return []int32{id}
		}
	}
	if len(w) > maxCachedWord {
		return t.bpe(w)
	}
	t.mu.RLock()
	ids, ok := t.cache[w]
	t.mu.RUnlock()
	if ok {
		return ids
	}
	ids = t.bpe(w)
	t.mu.Lock()
	if len(t.cache) >= maxCacheEntries {
		clear(t.cache)
	}
	t.cache[strings.Clone(w)] = ids
	t.mu.Unlock()
	return ids
}
