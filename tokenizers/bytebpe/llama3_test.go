package bytebpe

import (
	"encoding/json"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// unicodeSpace is the class of runes unicode.IsSpace accepts (Unicode
// White_Space), for Go's regexp, whose \s is ASCII only.
const unicodeSpace = `\t\n\v\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}`

// llama3Reference splits text by Llama3Pattern with Go's regexp, which
// picks among alternatives as a backtracking engine does: the pattern
// without its two lookahead alternatives, then "\s+(?!\S)|\s+" by hand.
func llama3Reference(text string) []string {
	re := regexp.MustCompile(`^(?:(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\pL\pN]?\pL+|\pN{1,3}| ?[^` + unicodeSpace + `\pL\pN]+[\r\n]*|[` + unicodeSpace + `]*[\r\n]+)`)
	space := regexp.MustCompile(`^[` + unicodeSpace + `]+`)
	var out []string
	for i := 0; i < len(text); {
		n := len(re.FindString(text[i:]))
		if n == 0 {
			run := space.FindString(text[i:])
			n = len(run)
			if i+n < len(text) && utf8.RuneCountInString(run) > 1 {
				_, last := utf8.DecodeLastRuneInString(run)
				n -= last
			}
		}
		if n == 0 {
			panic("the pattern matches nothing at " + text[i:])
		}
		out = append(out, text[i:i+n])
		i += n
	}
	return out
}

// llama3Split splits text with the package's scanner.
func llama3Split(text string) []string {
	var out []string
	for i := 0; i < len(text); {
		j := nextPieceLlama3(text, i)
		out = append(out, text[i:j])
		i = j
	}
	return out
}

// TestLlama3ScannerMatchesThePattern compares the scanner with the regexp
// reference on chosen and on random texts.
func TestLlama3ScannerMatchesThePattern(t *testing.T) {
	texts := []string{
		"Hello world", "I'm here, they'RE not; it'S 'll 'Ll 'x", "12345 678", "  123", "a  b", "a \n\n  b", "\n\nhello",
		"(hello) [world]!!\n\n", "x\r\n\r\n  y", "tab\there", "日本語のテキスト123４５６", "café — naïve…", "'ſ 's",
		"ends with spaces   ", "\u00a0\u3000word", "price: $1,234.56!", "line1\nline2\r\nline3", "", " ", "!!!\n",
		"<|begin_of_text|>Hi", "don't", "DON'T", "'", "''", "١٢٣٤ digits",
	}
	want := map[string][]string{
		"Hello world":           {"Hello", " world"},
		"12345 678":             {"123", "45", " ", "678"},
		"  123":                 {" ", " ", "123"},
		"a \n\n  b":             {"a", " \n\n", " ", " b"},
		"(hello) [world]!!\n\n": {"(hello", ")", " [", "world", "]!!\n\n"},
		"don't":                 {"don", "'t"},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "Z", "é", "日", "1", "2", "٣", " ", " ", "\t", "\n", "\r", "'", "s", "S", "t", "l", "r", "e", "v", "ſ", ".", "!", "(", "\u00a0", "\u3000", "-", "_"}
	for n := 0; n < 3000; n++ {
		var b strings.Builder
		for k := rng.IntN(12); k >= 0; k-- {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		texts = append(texts, b.String())
	}
	for _, text := range texts {
		got, ref := llama3Split(text), llama3Reference(text)
		if strings.Join(got, "\x00") != strings.Join(ref, "\x00") {
			t.Errorf("%q: scanner %q, pattern %q", text, got, ref)
		}
		if w, ok := want[text]; ok && strings.Join(w, "\x00") != strings.Join(got, "\x00") {
			t.Errorf("%q: %q, want %q", text, got, w)
		}
	}
}

// llama3TokenizerJSON is a small tokenizer.json laid out as LLaMA 3's: the
// Split pre-tokenizer, ignore_merges, special tokens after the vocabulary
// in added_tokens only. "abc" is in the vocabulary but no merge makes it.
func llama3TokenizerJSON(t *testing.T) string {
	t.Helper()
	vocab := map[string]int{}
	for b := 0; b < 256; b++ {
		vocab[byteSymbol(byte(b))] = b
	}
	vocab["he"], vocab["ll"], vocab["hell"], vocab["hello"], vocab["Ġw"], vocab["abc"] = 256, 257, 258, 259, 260, 261
	byteLevel := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
	out, err := json.Marshal(map[string]any{
		"version": "1.0",
		"added_tokens": []any{
			map[string]any{"id": 262, "content": "<|begin_of_text|>", "special": true},
			map[string]any{"id": 263, "content": "<|end_of_text|>", "special": true},
		},
		"normalizer": nil,
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": Llama3Pattern}, "behavior": "Isolated", "invert": false},
			byteLevel}},
		"post_processor": byteLevel, "decoder": byteLevel,
		"model": map[string]any{"type": "BPE", "ignore_merges": true, "vocab": vocab,
			"merges": [][2]string{{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"Ġ", "w"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestLlama3TokenizerJSON: LLaMA 3's layout loads, splits by its pattern
// (digits in threes) and takes whole words that are vocabulary entries.
func TestLlama3TokenizerJSON(t *testing.T) {
	tok, err := LoadTokenizerJSON(writeTokenizerJSON(t, llama3TokenizerJSON(t)))
	if err != nil {
		t.Fatal(err)
	}
	if !tok.llama3 || !tok.ignoreMerges {
		t.Fatalf("llama3 %t, ignore_merges %t", tok.llama3, tok.ignoreMerges)
	}
	// "hello" is an entry; " abc" is one piece and not an entry, and no
	// merge applies to it; the digits split in threes.
	got := tok.Encode("hello abc 12345")
	want := []int{259}
	for _, c := range []byte(" abc 12345") {
		want = append(want, int(tok.byteID[c]))
	}
	if len(got) != len(want) {
		t.Fatalf("ids %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("ids %v, want %v", got, want)
		}
	}
	if ids := tok.Encode("abc"); len(ids) != 1 || ids[0] != 261 {
		t.Errorf("abc: %v, want [261] (ignore_merges)", ids)
	}
	if ids := tok.Encode("<|begin_of_text|>"); len(ids) == 1 {
		t.Errorf("plain Encode produced a special token: %v", ids)
	}
	if !tok.IsSpecial(262) || tok.IsSpecial(261) {
		t.Errorf("specials: 262 %t, 261 %t", tok.IsSpecial(262), tok.IsSpecial(261))
	}
	if s, err := tok.Decode(tok.Encode("hello abc 12345"), false); err != nil || s != "hello abc 12345" {
		t.Errorf("round trip %q, %v", s, err)
	}
	for _, bad := range []struct{ old, new, want string }{
		{`"use_regex":false`, `"use_regex":true`, "use_regex"},
		{`"behavior":"Isolated"`, `"behavior":"Removed"`, "Isolated"},
	} {
		js := strings.ReplaceAll(llama3TokenizerJSON(t), bad.old, bad.new)
		if _, err := LoadTokenizerJSON(writeTokenizerJSON(t, js)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s → %s: %v", bad.old, bad.new, err)
		}
	}
}
