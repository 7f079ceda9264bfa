package bytebpe

import (
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// naiveTrain is BPE training done the slow, obvious way: recount every pair
// of every word before each merge. Train must learn the same merges.
func naiveTrain(texts []string, numMerges int, specials []string) [][2]string {
	counts := make(map[string]int)
	for _, text := range texts {
		for _, w := range PreTokenize(text) {
			counts[w]++
		}
	}
	type word struct {
		syms []string
		n    int
	}
	var words []word
	for w, n := range counts {
		var syms []string
		for _, r := range ByteLevelString(w) {
			syms = append(syms, string(r))
		}
		words = append(words, word{syms, n})
	}
	banned := make(map[string]bool)
	for _, s := range specials {
		banned[s] = true
	}
	var merges [][2]string
	for len(merges) < numMerges {
		pairs := make(map[[2]string]int)
		for _, w := range words {
			for i := 0; i+1 < len(w.syms); i++ {
				pairs[[2]string{w.syms[i], w.syms[i+1]}] += w.n
			}
		}
		best, bestN := [2]string{}, 0
		for p, n := range pairs {
			if banned[p[0]+p[1]] {
				continue
			}
			if n > bestN || (n == bestN && (p[0] < best[0] || (p[0] == best[0] && p[1] < best[1]))) {
				best, bestN = p, n
			}
		}
		if bestN == 0 {
			break
		}
		merges = append(merges, best)
		for k, w := range words {
			var out []string
			for i := 0; i < len(w.syms); i++ {
				if i+1 < len(w.syms) && w.syms[i] == best[0] && w.syms[i+1] == best[1] {
					out = append(out, best[0]+best[1])
					i++
				} else {
					out = append(out, w.syms[i])
				}
			}
			words[k].syms = out
		}
	}
	return merges
}

func TestTrainMatchesNaive(t *testing.T) {
	texts := trainingTexts()[:120]
	// "<s>" in the texts: the merge that would make it must be skipped.
	texts = append(texts, strings.Repeat("<s> aaaa <s>", 30))
	specials := []string{"<s>", "aaaa"}
	tok, err := TrainStrings(texts, TrainOptions{NumMerges: 250, SpecialTokens: specials})
	if err != nil {
		t.Fatal(err)
	}
	want := naiveTrain(texts, 250, specials)
	if got := tok.Merges(); !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("merge %d: got %q, want %q (of %d, %d)", i, got[i], want[i], len(got), len(want))
			}
		}
		t.Fatalf("got %d merges, want %d", len(got), len(want))
	}
	for _, id := range tok.Encode("<s> aaaa") {
		if tok.IsSpecial(id) {
			t.Errorf("plain Encode produced special id %d", id)
		}
	}
}

// TestTrainMatchesNaiveRepetitive trains on words of two letters, where one
// token can be made by several pairs ("aaa" from "aa"+"a" and "a"+"aa").
func TestTrainMatchesNaiveRepetitive(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for round := 0; round < 5; round++ {
		var texts []string
		for i := 0; i < 200; i++ {
			b := make([]byte, 1+rng.IntN(14))
			for k := range b {
				b[k] = "aab"[rng.IntN(3)]
			}
			texts = append(texts, string(b)+" ")
		}
		tok, err := TrainStrings(texts, TrainOptions{NumMerges: 150})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := tok.Merges(), naiveTrain(texts, 150, nil); !slices.Equal(got, want) {
			t.Fatalf("round %d: merges differ from the naive trainer:\n got %q\nwant %q", round, got, want)
		}
		for _, s := range texts[:20] {
			if back, _ := tok.Decode(tok.Encode(s), false); back != s {
				t.Fatalf("round trip of %q gave %q", s, back)
			}
		}
	}
}

func TestTrainDeterministic(t *testing.T) {
	texts := trainingTexts()
	a, err := TrainStrings(texts, TrainOptions{VocabSize: 600, SpecialTokens: RoBERTaSpecials})
	if err != nil {
		t.Fatal(err)
	}
	if a.VocabSize() != 600 {
		t.Errorf("VocabSize %d, want 600", a.VocabSize())
	}
	shuffled := slices.Clone(texts)
	rand.New(rand.NewPCG(7, 8)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	b, err := TrainStrings(shuffled, TrainOptions{VocabSize: 600, SpecialTokens: RoBERTaSpecials})
	if err != nil {
		t.Fatal(err)
	}
	assertSame(t, a, b)
}

func TestTrainSaveLoad(t *testing.T) {
	tok := trained(t)
	dir := t.TempDir()
	if err := tok.Save(dir); err != nil {
		t.Fatal(err)
	}
	back, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	assertSame(t, tok, back)
	// Saving again over the files works and gives the same bytes.
	if err := back.Save(dir); err != nil {
		t.Fatal(err)
	}
	again, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	assertSame(t, tok, again)

	heldOut := []string{
		"A lazy river never jumps; the fox counts pieces of text.",
		"Completely unseen words: xylophone, quixotic, Zürich, 東京, 🚀!",
		"  odd   spacing\n\n\tand tabs\r\n",
		"",
	}
	for _, s := range heldOut {
		ids := back.Encode(s)
		if !slices.Equal(ids, tok.Encode(s)) {
			t.Errorf("loaded tokenizer encodes %q differently", s)
		}
		if got, err := back.Decode(ids, false); err != nil || got != s {
			t.Errorf("round trip of %q: %q, %v", s, got, err)
		}
	}
	// The learned merges compress: held-out English takes far fewer ids
	// than bytes.
	s := heldOut[0]
	if n := len(tok.Encode(s)); n*2 > len(s) {
		t.Errorf("%d ids for %d bytes", n, len(s))
	}
}

func assertSame(t *testing.T, a, b *Tokenizer) {
	t.Helper()
	if !maps.Equal(a.vocab, b.vocab) {
		t.Error("vocabularies differ")
	}
	if !slices.Equal(a.Merges(), b.Merges()) {
		t.Error("merges differ")
	}
	if !slices.Equal(a.SpecialTokens(), b.SpecialTokens()) {
		t.Errorf("specials differ: %q vs %q", a.SpecialTokens(), b.SpecialTokens())
	}
}

func TestTrainOptions(t *testing.T) {
	for _, opts := range []TrainOptions{
		{},
		{VocabSize: 300, NumMerges: 10},
		{VocabSize: 100},
		{NumMerges: -1},
		{NumMerges: 5, SpecialTokens: []string{"<s>", "<s>"}},
		{NumMerges: 5, SpecialTokens: []string{""}},
		{NumMerges: 5, SpecialTokens: []string{"a"}},
	} {
		if _, err := TrainStrings(corpus, opts); err == nil {
			t.Errorf("TrainStrings with %+v: no error", opts)
		}
	}
	// Too little text for the merges asked: training stops early.
	tok, err := TrainStrings([]string{"abab"}, TrainOptions{NumMerges: 100})
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Merges(); !slices.Equal(got, [][2]string{{"a", "b"}, {"ab", "ab"}}) {
		t.Errorf("merges %q", got)
	}
	tok, err = TrainStrings([]string{"abab cdcd"}, TrainOptions{NumMerges: 100, MinFrequency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Merges(); !slices.Equal(got, [][2]string{{"a", "b"}, {"c", "d"}}) {
		t.Errorf("merges with MinFrequency 2: %q", got)
	}
	// No text at all gives the byte tokens only.
	tok, err = TrainStrings(nil, TrainOptions{VocabSize: 1000})
	if err != nil || tok.VocabSize() != 256 || tok.NumMerges() != 0 {
		t.Errorf("empty training: %v", err)
	}
}
