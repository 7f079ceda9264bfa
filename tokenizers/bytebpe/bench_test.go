package bytebpe

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// syntheticText makes about n bytes of English-like text: pseudo-words of
// random syllables drawn with Zipf-distributed frequencies, with
// capitalisation, punctuation, numbers and line breaks.
func syntheticText(n int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	syll := []string{"the", "an", "in", "er", "on", "re", "at", "es", "or", "te", "of", "ed", "is", "it", "al", "ar", "st", "to", "nt", "ng",
		"se", "ha", "as", "ou", "io", "le", "ve", "co", "me", "de", "hi", "ri", "ro", "ic", "ne", "ea", "ra", "ce", "li", "ch", "ll", "be",
		"ma", "si", "om", "ur", "ca", "el", "ta", "la", "ns", "di", "fo", "ho", "pe", "ec", "pr", "no", "ct", "us", "ac", "ot", "il", "tr"}
	words := make([]string, 60000)
	for i := range words {
		var b strings.Builder
		for k := 1 + rng.IntN(4); k > 0; k-- {
			b.WriteString(syll[rng.IntN(len(syll))])
		}
		words[i] = b.String()
	}
	zipf := rand.NewZipf(rand.New(rand.NewPCG(seed+2, seed+3)), 1.1, 2, uint64(len(words)-1))
	var out []string
	var line strings.Builder
	total := 0
	for total < n {
		w := words[zipf.Uint64()]
		switch r := rng.IntN(100); {
		case r < 5:
			w = strings.ToUpper(w[:1]) + w[1:]
		case r < 7:
			w = strings.Repeat("1", 1+rng.IntN(4))
		case r < 9:
			w += "'s"
		}
		if line.Len() > 0 {
			line.WriteByte(' ')
		}
		line.WriteString(w)
		switch r := rng.IntN(100); {
		case r < 6:
			line.WriteString(",")
		case r < 10:
			line.WriteString(".")
		}
		if line.Len() > 200 {
			line.WriteString("\n")
			total += line.Len()
			out = append(out, line.String())
			line.Reset()
		}
	}
	return out
}

// BenchmarkTrain learns 4,000 merges from 5 MB of text.
func BenchmarkTrain(b *testing.B) {
	texts := syntheticText(5<<20, 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := TrainStrings(texts, TrainOptions{NumMerges: 4000}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode encodes 1 MB of text with GPT-2's vocabulary, cache warm.
func BenchmarkEncode(b *testing.B) {
	tok := loadGPT2(b)
	texts := syntheticText(1<<20, 2)
	text := strings.Join(texts, "")
	tok.Encode(text)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tok.Encode(text)
	}
}

// TestTrainSpeed trains 4,000 merges on 5 MB of text, which takes well under
// a second on two cores; the bound is loose so that only an algorithmic
// regression (recounting all pairs at each merge) trips it.
func TestTrainSpeed(t *testing.T) {
	if testing.Short() {
		t.Skip("slow in -short mode")
	}
	texts := syntheticText(5<<20, 1)
	start := time.Now()
	tok, err := TrainStrings(texts, TrainOptions{NumMerges: 4000})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("training took %v", d)
	}
	if tok.NumMerges() != 4000 {
		t.Errorf("%d merges", tok.NumMerges())
	}
}
