package bytebpe

import (
	"path/filepath"
	"testing"

	"github.com/lilygo/lily/internal/atomicfile/atomictest"
	"github.com/pkg/errors"
)

// TestSaveKilledAtEveryStep kills Save at every step of replacing a
// tokenizer with another: version v has v+2 merges, so vocab.json and
// merges.txt of two saves do not load together, or give a vocabulary size
// that no version has.
func TestSaveKilledAtEveryStep(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tok")
	texts := []string{"the quick brown fox jumps over the lazy dog", "the fox, the dog, the end", "a lazy lazy fox"}
	toks := map[int]*Tokenizer{}
	for v := 1; v <= 3; v++ {
		tok, err := TrainStrings(texts, TrainOptions{NumMerges: v + 2})
		if err != nil || tok.NumMerges() != v+2 {
			t.Fatalf("version %d: %d merges, %v", v, tok.NumMerges(), err)
		}
		toks[v] = tok
	}
	save := func(v int) error { return toks[v].Save(dir) }
	read := func() (int, error) {
		tok, err := Load(dir)
		if err != nil {
			return 0, err
		}
		v := tok.NumMerges() - 2
		if want, ok := toks[v]; !ok || want.VocabSize() != tok.VocabSize() {
			return 0, errors.Errorf("%d merges with a vocabulary of %d", tok.NumMerges(), tok.VocabSize())
		}
		return v, nil
	}
	atomictest.Versions(t, dir, save, read)
}
