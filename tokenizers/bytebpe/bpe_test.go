package bytebpe

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// naiveBPE is GPT-2's encoder.py merge loop, written plainly: find the
// adjacent pair of lowest rank, merge all its occurrences from left to right,
// repeat. It works on byte-level strings and ranks by token pair.
func naiveBPE(word string, ranks map[[2]string]int) []string {
	var w []string
	for _, r := range ByteLevelString(word) {
		w = append(w, string(r))
	}
	for len(w) > 1 {
		best, bestRank := [2]string{}, -1
		for i := 0; i+1 < len(w); i++ {
			p := [2]string{w[i], w[i+1]}
			if r, ok := ranks[p]; ok && (bestRank < 0 || r < bestRank) {
				best, bestRank = p, r
			}
		}
		if bestRank < 0 {
			break
		}
		var out []string
		for i := 0; i < len(w); i++ {
			if i+1 < len(w) && w[i] == best[0] && w[i+1] == best[1] {
				out = append(out, best[0]+best[1])
				i++
			} else {
				out = append(out, w[i])
			}
		}
		w = out
	}
	return w
}

// randomMerges builds a vocabulary of the 256 byte tokens plus merges over
// a few letters, in a random order: merged tokens often take part in merges
// of lower rank than the merge that made them, which GPT-2's files never do
// but the reference algorithm defines all the same.
func randomMerges(rng *rand.Rand, letters string, n int) (map[string]int, [][2]string) {
	vocab := make(map[string]int)
	for _, b := range alphabetOrder {
		vocab[byteSymbol(b)] = len(vocab)
	}
	toks := strings.Split(letters, "")
	seen := make(map[[2]string]bool)
	var merges [][2]string
	for tries := 0; len(merges) < n && tries < 100*n; tries++ {
		p := [2]string{toks[rng.IntN(len(toks))], toks[rng.IntN(len(toks))]}
		if seen[p] || len(p[0])+len(p[1]) > 6 {
			continue
		}
		seen[p] = true
		merges = append(merges, p)
		m := p[0] + p[1]
		if _, ok := vocab[m]; !ok {
			vocab[m] = len(vocab)
			toks = append(toks, m)
		}
	}
	rng.Shuffle(len(merges), func(i, j int) { merges[i], merges[j] = merges[j], merges[i] })
	return vocab, merges
}

func TestBPEMatchesReferenceLoop(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < 40; round++ {
		vocab, merges := randomMerges(rng, "abc", 5+rng.IntN(40))
		tok, err := newTokenizer(vocab, merges, func(_ int, err error) error { return err })
		if err != nil {
			t.Fatal(err)
		}
		ranks := make(map[[2]string]int)
		for i, m := range merges {
			ranks[m] = i
		}
		for k := 0; k < 200; k++ {
			n := 1 + rng.IntN(30)
			b := make([]byte, n)
			for i := range b {
				b[i] = "abc"[rng.IntN(3)]
			}
			word := string(b)
			want := naiveBPE(word, ranks)
			var got []string
			for _, id := range tok.bpe(word) {
				got = append(got, tok.idToToken[id])
			}
			if !slices.Equal(got, want) {
				t.Fatalf("merges %q\nword %q\n got %q\nwant %q", merges, word, got, want)
			}
		}
	}
}

func TestBPEMatchesReferenceLoopGPT2(t *testing.T) {
	tok := loadGPT2(t)
	ranks := make(map[[2]string]int)
	for i, m := range tok.merges {
		ranks[m] = i
	}
	rng := rand.New(rand.NewPCG(5, 6))
	words := []string{"Hello", "Ġworld", "antidisestablishmentarianism", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "日本語", "🎉🎉🎉"}
	for i := 0; i < 300; i++ {
		b := make([]byte, 1+rng.IntN(24))
		for k := range b {
			b[k] = "etaoinshrdlu  "[rng.IntN(14)]
		}
		words = append(words, string(b))
	}
	for _, w := range words {
		want := naiveBPE(w, ranks)
		var got []string
		for _, id := range tok.bpe(w) {
			got = append(got, tok.idToToken[id])
		}
		if !slices.Equal(got, want) {
			t.Errorf("bpe(%q) = %q, want %q", w, got, want)
		}
	}
}

func TestByteLevelAlphabet(t *testing.T) {
	seen := make(map[rune]bool)
	for b := 0; b < 256; b++ {
		r := byteToRune[b]
		if seen[r] {
			t.Fatalf("rune %q used twice", r)
		}
		seen[r] = true
	}
	if byteToRune[' '] != 'Ġ' || byteToRune['\n'] != 'Ċ' || byteToRune['!'] != '!' || byteToRune[0] != 'Ā' || byteToRune[0xAD] != 'Ń' {
		t.Errorf("unexpected mapping: space %q newline %q NUL %q soft hyphen %q", byteToRune[' '], byteToRune['\n'], byteToRune[0], byteToRune[0xAD])
	}
	if alphabetOrder[0] != '!' || alphabetOrder[255] != 0xAD {
		t.Errorf("alphabet order starts %q, ends 0x%02x", alphabetOrder[0], alphabetOrder[255])
	}
	if s := ByteLevelString(" hello\n"); s != "ĠhelloĊ" {
		t.Errorf("ByteLevelString = %q", s)
	}
}
