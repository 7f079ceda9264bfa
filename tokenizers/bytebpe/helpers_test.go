package bytebpe

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// gpt2Dir is where the real GPT-2 files lie: the shared/ folder beside the
// repository checkout, seen from this package's directory.
var gpt2Dir = filepath.Join("..", "..", "..", "shared", "data", "tokenizers", "gpt2")

var (
	gpt2Once sync.Once
	gpt2Tok  *Tokenizer
	gpt2Err  error
)

// loadGPT2 returns the tokenizer of the real GPT-2 files. When they are
// missing the test fails under CI=true and is skipped otherwise.
func loadGPT2(tb testing.TB) *Tokenizer {
	tb.Helper()
	for _, f := range []string{GPT2VocabFile, GPT2MergesFile} {
		if _, err := os.Stat(filepath.Join(gpt2Dir, f)); err != nil {
			if os.Getenv("CI") == "true" {
				tb.Fatalf("GPT-2 tokenizer files are required under CI=true: %v", err)
			}
			tb.Skipf("GPT-2 tokenizer files not found: %v", err)
		}
	}
	gpt2Once.Do(func() { gpt2Tok, gpt2Err = Load(gpt2Dir) })
	if gpt2Err != nil {
		tb.Fatal(gpt2Err)
	}
	return gpt2Tok
}

// corpus is a small built-in training corpus, written for these tests.
var corpus = []string{
	"The quick brown fox jumps over the lazy dog.",
	"A tokenizer splits text into pieces that a model can count and look up.",
	"Byte-level BPE starts from the 256 byte values and merges the most frequent pair, again and again.",
	"Nobody's perfect, but the merges that are learned first are the ones you'll see most often.",
	"In 1984, the library held 12,345 books; by 2024 it held 67,890 and a café with naïve art.",
	"She said: \"It's fine.\" He said: 'They're late, we've waited, I'd leave.'",
	"Rivers run to the sea, and the sea is never full; the wind goes round and round.",
	"Tokens, tokens everywhere: the, then, there, these, those, this, that, than, thin, thing, things.",
	"    Indented lines and\t\ttabs, and trailing spaces   ",
	"Numbers like 3.14159, 2.71828 and 1.41421 appear in mathematics and physics.",
	"日本語のテキストも少しだけ含めます。Ελληνικά και русский текст тоже.",
	"Emoji 🎉🎉 and symbols ©®™ and arrows → ← ↑ ↓ are bytes too.",
}

// trainingTexts repeats and varies the corpus into a few hundred lines.
func trainingTexts() []string {
	var out []string
	words := strings.Fields(strings.Join(corpus, " "))
	for i := 0; i < 300; i++ {
		line := corpus[i%len(corpus)]
		// A deterministic pseudo-random sentence from the corpus's words.
		var b strings.Builder
		for k := 0; k < 12; k++ {
			if k > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(words[(i*7+k*13+k*k)%len(words)])
		}
		out = append(out, line+"\n", b.String()+"\n")
	}
	return out
}

var (
	trainedOnce sync.Once
	trainedTok  *Tokenizer
	trainedErr  error
)

// trained returns a tokenizer trained on the built-in corpus with RoBERTa's
// special tokens.
func trained(tb testing.TB) *Tokenizer {
	tb.Helper()
	trainedOnce.Do(func() {
		trainedTok, trainedErr = TrainStrings(trainingTexts(), TrainOptions{NumMerges: 400, SpecialTokens: RoBERTaSpecials})
	})
	if trainedErr != nil {
		tb.Fatal(trainedErr)
	}
	return trainedTok
}
