package bytebpe

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzRoundTrip checks that decoding the encoding of any valid UTF-8 text
// gives the text back, with GPT-2's vocabulary when its files are present and
// with one trained on the built-in corpus always. It also checks that the
// pre-tokens tile the text.
func FuzzRoundTrip(f *testing.F) {
	for _, c := range gpt2Cases {
		f.Add(c.text)
	}
	for _, c := range preTokenizeCases {
		f.Add(c.text)
	}
	f.Add("<s>a<mask></s> <pad>")
	f.Add(strings.Repeat("ab ", 100))

	toks := []*Tokenizer{trained(f)}
	if _, err := os.Stat(filepath.Join(gpt2Dir, GPT2MergesFile)); err == nil {
		toks = append(toks, loadGPT2(f))
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			t.Skip()
		}
		if got := strings.Join(PreTokenize(s), ""); got != s {
			t.Fatalf("pre-tokens of %q join to %q", s, got)
		}
		for _, tok := range toks {
			ids := tok.Encode(s)
			back, err := tok.Decode(ids, false)
			if err != nil || back != s {
				t.Fatalf("Decode(Encode(%q)) = %q, %v", s, back, err)
			}
			if len(ids) > len(s) {
				t.Fatalf("%d ids for %d bytes", len(ids), len(s))
			}
			e, err := tok.EncodeSingle(s, EncodeOptions{ParseSpecial: true, OmitSpecialTokens: true})
			if err != nil {
				t.Fatal(err)
			}
			if back, err := tok.Decode(e.IDs, false); err != nil || back != s {
				t.Fatalf("with ParseSpecial, Decode(Encode(%q)) = %q, %v", s, back, err)
			}
		}
	})
}
