package main

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/tokenizers/bytebpe"
)

// testTokenizer trains a small tokenizer with RoBERTa's specials.
func testTokenizer(t *testing.T) *bytebpe.Tokenizer {
	t.Helper()
	var docs []string
	rng := rand.New(rand.NewPCG(3, 3))
	for i := 0; i < 300; i++ {
		s, _ := synthSentence(rng)
		docs = append(docs, s)
	}
	tok, err := trainTokenizer(docs, 60)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTokenizerSpecialsInRoBERTaOrder(t *testing.T) {
	tok := testTokenizer(t)
	for want, s := range []string{bytebpe.BOS, bytebpe.Pad, bytebpe.EOS, bytebpe.Unk} {
		if id, ok := tok.TokenToID(s); !ok || id != want {
			t.Errorf("%s has id %d (%v), want %d", s, id, ok, want)
		}
	}
	if id, _ := tok.TokenToID(bytebpe.Mask); id != tok.VocabSize()-1 {
		t.Errorf("<mask> is id %d, want the last id %d", id, tok.VocabSize()-1)
	}
	// The saved tokenizer reads back with <mask> still special and last.
	dir := t.TempDir()
	if err := tok.Save(dir); err != nil {
		t.Fatal(err)
	}
	back, err := bytebpe.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := back.TokenToID(bytebpe.Mask); id != tok.VocabSize()-1 || !back.IsSpecial(id) || back.VocabSize() != tok.VocabSize() {
		t.Errorf("reloaded <mask> id %d special %v, vocabulary %d", id, back.IsSpecial(id), back.VocabSize())
	}
}

// On a large sample, 15% of the ordinary tokens are selected and of those
// 80% become <mask>, 10% a random ordinary token and 10% stay; specials and
// padding are never selected. Tolerances are 5 standard deviations.
func TestMaskingStatistics(t *testing.T) {
	tok := testTokenizer(t)
	mk, err := newMasker(tok)
	if err != nil {
		t.Fatal(err)
	}
	pad, _ := tok.TokenToID(bytebpe.Pad)
	rng := rand.New(rand.NewPCG(5, 5))
	const n = 400000
	ids := make([]int, n)
	for i := range ids {
		switch {
		case i%10 == 0:
			ids[i] = pad
		case i%37 == 0:
			ids[i] = rng.IntN(4) // <s> <pad> </s> <unk>
		case i%41 == 0:
			ids[i] = mk.maskID
		default:
			ids[i] = 5 + rng.IntN(tok.VocabSize()-6)
		}
	}
	inputs, targets := make([]int, n), make([]int, n)
	selected := mk.apply(rand.New(rand.NewPCG(9, 9)), ids, inputs, targets)

	ordinary, masked, random, kept, counted := 0, 0, 0, 0, 0
	for i, id := range ids {
		special := tok.IsSpecial(id) || id == pad
		if !special {
			ordinary++
		}
		if targets[i] == lilyop.IgnoreIndex {
			if special && inputs[i] != id {
				t.Fatalf("special or padding id %d at %d was changed to %d", id, i, inputs[i])
			}
			if inputs[i] != id {
				t.Fatalf("unselected position %d changed", i)
			}
			continue
		}
		counted++
		if special {
			t.Fatalf("special or padding id %d at %d was selected", id, i)
		}
		if targets[i] != id {
			t.Fatalf("target %d at %d, want the original %d", targets[i], i, id)
		}
		switch in := inputs[i]; {
		case in == mk.maskID:
			masked++
		case in == id:
			kept++
		default:
			random++
			if tok.IsSpecial(in) {
				t.Fatalf("random replacement %d is special", in)
			}
		}
	}
	if counted != selected {
		t.Errorf("apply reports %d selected, %d targets set", selected, counted)
	}
	check := func(what string, got, of int, p float64) {
		t.Helper()
		want := p * float64(of)
		sd := math.Sqrt(float64(of) * p * (1 - p))
		if math.Abs(float64(got)-want) > 5*sd {
			t.Errorf("%s: %d of %d, want %.0f ± %.0f", what, got, of, want, 5*sd)
		}
	}
	check("selected", selected, ordinary, 0.15)
	check("masked", masked, selected, 0.8)
	// A random draw equal to the original token counts as kept: 1/V of them.
	pRand := 0.1 * (1 - 1/float64(len(mk.randomIDs)))
	check("random", random, selected, pRand)
	check("kept", kept, selected, 1-0.8-pRand)
}

func TestPackDocuments(t *testing.T) {
	tok := testTokenizer(t)
	docs := []string{"the movie was good", "", "i did not like the hotel but the staff was lovely", "the end"}
	const maxLen = 8
	seqs, masks, err := packDocuments(tok, docs, maxLen)
	if err != nil {
		t.Fatal(err)
	}
	bos, _ := tok.TokenToID(bytebpe.BOS)
	eos, _ := tok.TokenToID(bytebpe.EOS)
	pad, _ := tok.TokenToID(bytebpe.Pad)
	var stream []int
	for i, s := range seqs {
		if len(s) != maxLen || len(masks[i]) != maxLen {
			t.Fatalf("sequence %d has %d ids", i, len(s))
		}
		n := sum(masks[i])
		if s[0] != bos || s[n-1] != eos {
			t.Errorf("sequence %d is not <s> … </s>: %v", i, s)
		}
		for j := n; j < maxLen; j++ {
			if s[j] != pad {
				t.Errorf("sequence %d: id %d after the end is not padding", i, s[j])
			}
		}
		if i < len(seqs)-1 && n != maxLen {
			t.Errorf("sequence %d is not full: %d ids", i, n)
		}
		stream = append(stream, s[1:n-1]...)
	}
	// The concatenated bodies are the documents separated by </s>.
	var want []int
	for _, d := range docs {
		if d == "" {
			continue
		}
		if len(want) > 0 {
			want = append(want, eos)
		}
		want = append(want, tok.Encode(d)...)
	}
	if len(stream) != len(want) {
		t.Fatalf("packed %d ids, want %d", len(stream), len(want))
	}
	for i := range want {
		if stream[i] != want[i] {
			t.Fatalf("id %d: %d, want %d", i, stream[i], want[i])
		}
	}
	if _, _, err := packDocuments(tok, docs, 2); err == nil {
		t.Error("max_len 2 accepted")
	}
}

// Pretraining text is the train split of every task found (both texts of a
// pair task), never dev or test.
func TestPretrainTextsReadOnlyTrain(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, body string) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ttrainA one\ttrainB one\tentailment\n")
	write("RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tDEVTEXT\tDEVTEXT\tentailment\n")
	write("SST-2/train.tsv", "sentence\tlabel\ntrain single \t1\n")
	write("SST-2/dev.tsv", "sentence\tlabel\nDEVTEXT\t0\n")
	write("QNLI/dev.tsv", "index\tquestion\tsentence\tlabel\n0\tDEVTEXT?\tDEVTEXT\tentailment\n")
	docs, sources, err := pretrainTexts(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(docs, "|")
	if joined != "train single |trainA one|trainB one" || len(sources) != 2 {
		t.Errorf("documents %q from %v", joined, sources)
	}
	text := filepath.Join(dir, "corpus.txt")
	write("corpus.txt", "first doc\n\n  second doc  \n")
	if docs, _, err = pretrainTexts("", text); err != nil || strings.Join(docs, "|") != "first doc|second doc" {
		t.Errorf("-text: %q, %v", docs, err)
	}
	if _, _, err := pretrainTexts(filepath.Join(dir, "none"), ""); err == nil || !strings.Contains(err.Error(), "no GLUE train.tsv") {
		t.Errorf("empty folder: %v", err)
	}
}
