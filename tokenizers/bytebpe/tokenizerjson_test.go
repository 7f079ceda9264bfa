package bytebpe

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// byteEntriesJSON is the 256 byte tokens as members of a JSON object, with
// ids first, first+1, ... in GPT-2's order, one a line.
func byteEntriesJSON(first int) string {
	var b strings.Builder
	for i, by := range alphabetOrder {
		k, _ := json.Marshal(byteSymbol(by))
		fmt.Fprintf(&b, "      %s: %d,\n", k, first+i)
	}
	return b.String()
}

// smallTokenizerJSON is a hand-written tokenizer.json laid out as GPT-NeoX's
// (specials at ids 0 and 1, then the bytes, merges, and a non-special added
// token of two spaces that the vocabulary holds), with RoBERTa's specials
// added after the vocabulary, <mask> past a gap. pairs selects the merges
// format of tokenizers 0.20 and later.
func smallTokenizerJSON(pairs bool) string {
	merges := `"h e", "l l", "he ll", "hell o", "Ġ w"`
	if pairs {
		merges = `
      [
        "h",
        "e"
      ],
      ["l", "l"],
      ["he", "ll"],
      ["hell", "o"],
      ["Ġ", "w"]
    `
	}
	return `{
  "version": "1.0",
  "truncation": null,
  "padding": null,
  "added_tokens": [
    {"id": 0, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 1, "content": "<|padding|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 263, "content": "  ", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false},
    {"id": 264, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 265, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 266, "content": "<pad>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 270, "content": "<mask>", "single_word": false, "lstrip": true, "rstrip": false, "normalized": false, "special": true}
  ],
  "normalizer": {"type": "NFC"},
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
  "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
  "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
  "model": {
    "type": "BPE",
    "dropout": null,
    "unk_token": null,
    "continuing_subword_prefix": null,
    "end_of_word_suffix": null,
    "fuse_unk": false,
    "byte_fallback": false,
    "ignore_merges": false,
    "vocab": {
      "<|endoftext|>": 0,
      "<|padding|>": 1,
` + byteEntriesJSON(2) + `      "he": 258,
      "ll": 259,
      "hell": 260,
      "hello": 261,
      "Ġw": 262,
      "  ": 263
    },
    "merges": [` + merges + `]
  }
}
`
}

func writeTokenizerJSON(t *testing.T, content string) string {
	t.Helper()
	return filepath.Join(writeFiles(t, map[string]string{TokenizerJSONFile: content}), TokenizerJSONFile)
}

func TestTokenizerJSONSmall(t *testing.T) {
	for _, pairs := range []bool{false, true} {
		t.Run(fmt.Sprintf("pairs=%v", pairs), func(t *testing.T) {
			path := writeTokenizerJSON(t, smallTokenizerJSON(pairs))
			tok, err := Load(filepath.Dir(path)) // only tokenizer.json is there
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int{"<|endoftext|>": 0, "<|padding|>": 1, "  ": 263, BOS: 264, EOS: 265, Pad: 266, Mask: 270, "hello": 261, "Ġw": 262}
			for s, id := range want {
				if got, ok := tok.TokenToID(s); !ok || got != id {
					t.Errorf("TokenToID(%q) = %d, %v; want %d", s, got, ok, id)
				}
				if back, ok := tok.IDToToken(id); !ok || back != s {
					t.Errorf("IDToToken(%d) = %q, %v; want %q", id, back, ok, s)
				}
			}
			if tok.VocabSize() != 271 || tok.NumMerges() != 5 {
				t.Errorf("VocabSize %d, NumMerges %d; want 271 and 5", tok.VocabSize(), tok.NumMerges())
			}
			wantMerges := [][2]string{{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"Ġ", "w"}}
			if !slices.Equal(tok.Merges(), wantMerges) {
				t.Errorf("Merges %q", tok.Merges())
			}
			specials := []string{"<|endoftext|>", "<|padding|>", "  ", BOS, EOS, Pad, Mask}
			if got := tok.SpecialTokens(); !slices.Equal(got, specials) {
				t.Errorf("SpecialTokens %q, want %q", got, specials)
			}
			if tok.IsSpecial(261) || !tok.IsSpecial(270) || tok.IsSpecial(268) {
				t.Error("IsSpecial wrong for hello, <mask> or the gap")
			}
			if _, err := tok.Decode([]int{268}, false); err == nil {
				t.Error("an id in the gap before <mask> decodes")
			}

			hello, _ := tok.TokenToID("hello")
			if got := tok.Tokenize("hello world"); strings.Join(got, "|") != "hello|Ġw|o|r|l|d" {
				t.Errorf("Tokenize = %q", got)
			}
			// Plain Encode never produces added tokens, not even "  ".
			if ids := tok.Encode("a  b<s>"); slices.Contains(ids, 263) || slices.Contains(ids, 264) {
				t.Errorf("Encode produced an added token: %v", ids)
			}
			// RoBERTa's template and padding use the added specials.
			e, err := tok.EncodeSingle("hello", EncodeOptions{PadTo: 5})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(e.IDs, []int{264, hello, 265, 266, 266}) || !slices.Equal(e.SpecialTokensMask, []int{1, 0, 1, 1, 1}) {
				t.Errorf("EncodeSingle = %v, special mask %v", e.IDs, e.SpecialTokensMask)
			}
			// ParseSpecial finds every added token in the text, "  " too.
			text := "hello<|endoftext|>  hello<mask><|padding|>"
			e, err = tok.EncodeSingle(text, EncodeOptions{ParseSpecial: true, OmitSpecialTokens: true})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(e.IDs, []int{hello, 0, 263, hello, 270, 1}) {
				t.Errorf("ParseSpecial ids %v", e.IDs)
			}
			if s, err := tok.Decode(e.IDs, false); err != nil || s != text {
				t.Errorf("Decode = %q, %v", s, err)
			}
			if s, _ := tok.Decode(e.IDs, true); s != "hellohello" {
				t.Errorf("Decode skipping specials = %q", s)
			}

			// Saved as vocab.json and merges.txt, it loads back the same.
			dir := t.TempDir()
			if err := tok.Save(dir); err != nil {
				t.Fatal(err)
			}
			back, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(back.SpecialTokens(), specials) || back.VocabSize() != 271 {
				t.Errorf("after Save/Load: specials %q, size %d", back.SpecialTokens(), back.VocabSize())
			}
		})
	}
}

// TestLoadOrder: vocab.json, then encoder.json, are read before
// tokenizer.json, which is read only when neither is there.
func TestLoadOrder(t *testing.T) {
	broken := `{"model": {"type": "WordPiece"}}`
	dir := writeFiles(t, map[string]string{
		VocabFile:         byteVocabJSON("he"),
		MergesFile:        "h e\n",
		TokenizerJSONFile: broken,
	})
	if tok, err := Load(dir); err != nil || tok.NumMerges() != 1 {
		t.Errorf("vocab.json + merges.txt beside a broken tokenizer.json: %v", err)
	}
	dir = writeFiles(t, map[string]string{
		GPT2VocabFile:     byteVocabJSON("he"),
		GPT2MergesFile:    "h e\n",
		TokenizerJSONFile: broken,
	})
	if tok, err := Load(dir); err != nil || tok.NumMerges() != 1 {
		t.Errorf("encoder.json + vocab.bpe beside a broken tokenizer.json: %v", err)
	}
	// As before, vocab.json without merges.txt is an error about merges.txt.
	dir = writeFiles(t, map[string]string{
		VocabFile:         byteVocabJSON("he"),
		TokenizerJSONFile: smallTokenizerJSON(false),
	})
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), MergesFile) {
		t.Errorf("vocab.json without merges.txt: %v", err)
	}
	dir = writeFiles(t, map[string]string{TokenizerJSONFile: broken})
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "WordPiece") {
		t.Errorf("broken tokenizer.json alone: %v", err)
	}
	_, err := Load(t.TempDir())
	if err == nil || !os.IsNotExist(errorsCause(err)) || !strings.Contains(err.Error(), "neither vocab.json nor encoder.json nor tokenizer.json") {
		t.Errorf("empty directory: %v", err)
	}
	if _, err := LoadTokenizerJSON("/nonexistent/tokenizer.json"); err == nil || !strings.Contains(err.Error(), "/nonexistent/tokenizer.json") {
		t.Errorf("missing file: %v", err)
	}
}

// errorsCause unwraps err to its innermost error.
func errorsCause(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			return err
		}
		err = u.Unwrap()
	}
}

// lineOf is the 1-based line of the first occurrence of sub in s.
func lineOf(t *testing.T, s, sub string) int {
	t.Helper()
	i := strings.Index(s, sub)
	if i < 0 {
		t.Fatalf("%q not found", sub)
	}
	return strings.Count(s[:i], "\n") + 1
}

func TestTokenizerJSONErrors(t *testing.T) {
	valid := smallTokenizerJSON(false)
	validPairs := smallTokenizerJSON(true)
	aID := 2 + slices.Index(alphabetOrder[:], 'a')
	cases := []struct {
		name     string
		base     string // valid when empty
		old, new string // replaced once in base; the whole file when old is empty
		want     []string
		line     string // when set, the error must give the line of this text in the file
	}{
		{name: "not JSON", new: "hello", want: []string{"malformed JSON"}},
		{name: "empty", new: "", want: []string{"empty file"}},
		{name: "array", new: "[1, 2]", want: []string{"want a JSON object"}},
		{name: "truncated", new: valid[:len(valid)/2], want: []string{"malformed JSON"}},
		{name: "syntax error", old: `"type": "BPE",`, new: `"type": "BPE"`, want: []string{"malformed JSON"}, line: `"dropout"`},
		{name: "data after", new: valid + "{}", want: []string{"data after"}},
		{name: "no model", old: `"model": {`, new: `"modell": {`, want: []string{`no "model"`}},
		{name: "model twice", old: `"version": "1.0",`, new: `"version": "1.0", "model": null,`, want: []string{`key "model" is listed twice`}},
		{name: "model not an object", new: `{"model": [1]}`, want: []string{"model: want a JSON object"}},
		{name: "WordPiece", old: `"type": "BPE"`, new: `"type": "WordPiece"`, want: []string{`"WordPiece"`, "not BPE"}, line: `"type": "WordPiece"`},
		{name: "Unigram", new: `{"model": {"type": "Unigram", "vocab": [["a", -1.5]]}}`, want: []string{`"Unigram"`, "not BPE"}},
		{name: "no type", old: `"type": "BPE",`, new: ``, want: []string{`no "type"`}},
		{name: "no pre_tokenizer", old: `"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},`, new: ``,
			want: []string{"no pre_tokenizer", "not byte-level BPE"}},
		{name: "null pre_tokenizer", old: `"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}`, new: `"pre_tokenizer": null`,
			want: []string{"no pre_tokenizer", "not byte-level BPE"}},
		{name: "Whitespace", old: `"pre_tokenizer": {"type": "ByteLevel"`, new: `"pre_tokenizer": {"type": "Whitespace"`, want: []string{"Whitespace", "not byte-level BPE"}},
		{name: "Split before ByteLevel", old: `"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}`,
			new:  `"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "x"}}, {"type": "ByteLevel", "use_regex": false}]}`,
			want: []string{"Split", "not byte-level BPE"}},
		{name: "empty Sequence", old: `"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}`,
			new: `"pre_tokenizer": {"type": "Sequence", "pretokenizers": []}`, want: []string{"0 ByteLevel", "not byte-level BPE"}},
		{name: "add_prefix_space", old: `"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false`, new: `"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": true`,
			want: []string{"add_prefix_space", "not support"}, line: `"pre_tokenizer"`},
		{name: "no add_prefix_space", old: `"add_prefix_space": false, "trim_offsets": true, "use_regex": true},`, new: `"trim_offsets": true, "use_regex": true},`,
			want: []string{`lacks "add_prefix_space"`}, line: `"pre_tokenizer"`},
		{name: "use_regex", old: `"trim_offsets": true, "use_regex": true}`, new: `"trim_offsets": true, "use_regex": false}`, want: []string{"use_regex", "not byte-level BPE"}},
		{name: "Lowercase", old: `"normalizer": {"type": "NFC"}`, new: `"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]}`,
			want: []string{"normalizer Lowercase is not supported"}},
		{name: "dropout", old: `"dropout": null`, new: `"dropout": 0.1`, want: []string{"dropout"}, line: `"dropout"`},
		{name: "prefix", old: `"continuing_subword_prefix": null`, new: `"continuing_subword_prefix": "##"`, want: []string{"continuing_subword_prefix", `"##"`}},
		{name: "Split by another pattern", old: `"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}`,
			new:  `"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]}`,
			want: []string{"Split", "not supported", "LLaMA 3"}},
		{name: "no vocab", old: `"vocab": {`, new: `"vocabulary": {`, want: []string{`no "vocab"`}},
		{name: "vocab not an object", new: `{"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false}, "model": {"type": "BPE", "vocab": [1], "merges": []}}`,
			want: []string{"model.vocab", "want a JSON object"}},
		{name: "id out of range", old: `"ll": 259`, new: `"ll": 16777216`, want: []string{`token "ll"`, "not an integer"}, line: `"ll": 16777216`},
		{name: "negative id", old: `"ll": 259`, new: `"ll": -3`, want: []string{`token "ll"`, "not an integer"}, line: `"ll": -3`},
		{name: "string id", old: `"ll": 259`, new: `"ll": "259"`, want: []string{`token "ll"`, "not a number"}},
		{name: "duplicated id", old: `"ll": 259`, new: `"ll": 258`, want: []string{`"he" and "ll" share id 258`}, line: `"ll": 258`},
		{name: "token twice", old: `"hell": 260,`, new: `"hell": 260, "he": 300,`, want: []string{`"he" is listed twice`}},
		{name: "missing byte", old: fmt.Sprintf(`"a": %d,`, aID), new: ``, want: []string{"model.vocab", `lacks "a"`}},
		{name: "no merges", old: `"merges": [`, new: `"merged": [`, want: []string{`no "merges"`}},
		{name: "merges not an array", old: `"merges": [` + `"h e", "l l", "he ll", "hell o", "Ġ w"]`, new: `"merges": {}`, want: []string{"model.merges", "want a JSON array"}},
		{name: "unknown part", old: `"he ll"`, new: `"he zz"`, want: []string{"model.merges[2]", `unknown token "zz"`}, line: `"he zz"`},
		{name: "unknown result", old: `"hell o"`, new: `"e l"`, want: []string{"model.merges[3]", `merged token "el" is not in the vocabulary`}},
		{name: "three parts", old: `"he ll"`, new: `"he ll o"`, want: []string{"model.merges[2]", "malformed merge"}},
		{name: "one part", old: `"he ll"`, new: `"hell"`, want: []string{"model.merges[2]", "malformed merge"}},
		{name: "number merge", old: `"he ll"`, new: `5`, want: []string{"model.merges[2]", "malformed merge"}},
		{name: "pair unknown part", base: validPairs, old: `["he", "ll"]`, new: `["he", "zz"]`, want: []string{"model.merges[2]", `unknown token "zz"`}, line: `["he", "zz"]`},
		{name: "pair unknown result", base: validPairs, old: `["hell", "o"]`, new: `["e", "l"]`, want: []string{"model.merges[3]", `"el" is not in the vocabulary`}},
		{name: "pair of three", base: validPairs, old: `["he", "ll"]`, new: `["he", "l", "l"]`, want: []string{"model.merges[2]", "malformed merge"}},
		{name: "pair of numbers", base: validPairs, old: `["he", "ll"]`, new: `[1, 2]`, want: []string{"model.merges[2]", "malformed merge"}},
		{name: "added id clash", old: `{"id": 264, "content": "<s>"`, new: `{"id": 258, "content": "<s>"`,
			want: []string{`added token "<s>" has id 258`, `model.vocab gives to "he"`}, line: `{"id": 258, "content": "<s>"`},
		{name: "added id differs", old: `{"id": 0, "content": "<|endoftext|>"`, new: `{"id": 5, "content": "<|endoftext|>"`,
			want: []string{`"<|endoftext|>" has id 5`, "model.vocab gives it id 0"}},
		{name: "added share id", old: `{"id": 265, "content": "</s>"`, new: `{"id": 264, "content": "</s>"`, want: []string{`"<s>" and "</s>" share id 264`}},
		{name: "added twice", old: `{"id": 265, "content": "</s>"`, new: `{"id": 265, "content": "<s>"`, want: []string{`"<s>" is listed with ids 264 and 265`}},
		{name: "added BPE token special", old: `{"id": 264, "content": "<s>"`, new: `{"id": 261, "content": "hello"`, want: []string{`"hello"`, "marked special", "BPE can produce it"}},
		{name: "added no id", old: `{"id": 264, `, new: `{`, want: []string{"added_tokens[3]", `no "id"`}},
		{name: "added negative id", old: `{"id": 264, `, new: `{"id": -1, `, want: []string{"added_tokens[3]", "not an integer"}},
		{name: "added fractional id", old: `{"id": 264, `, new: `{"id": 264.5, `, want: []string{"added_tokens[3]", "not an integer"}},
		{name: "added no content", old: `"content": "<s>", `, new: ``, want: []string{"added_tokens[3]", `no "content"`}},
		{name: "added empty content", old: `"content": "<s>", `, new: `"content": "", `, want: []string{"added_tokens[3]", "empty string"}},
		{name: "added not an object", old: `{"id": 264, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}`, new: `"<s>"`,
			want: []string{"added_tokens[3]", "want a JSON object"}},
		{name: "added_tokens not an array", old: `"added_tokens": [`, new: `"added_tokens": 5, "unused": [`, want: []string{"added_tokens: want a JSON array"}},
	}
	for _, c := range cases {
		base := c.base
		if base == "" {
			base = valid
		}
		content := c.new
		if c.old != "" {
			if !strings.Contains(base, c.old) {
				t.Fatalf("%s: %q is not in the file", c.name, c.old)
			}
			content = strings.Replace(base, c.old, c.new, 1)
		}
		path := writeTokenizerJSON(t, content)
		tok, err := LoadTokenizerJSON(path)
		if err == nil {
			t.Errorf("%s: no error (tokenizer %v)", c.name, tok != nil)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, path) {
			t.Errorf("%s: error %q does not name the file", c.name, msg)
		}
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: error %q lacks %q", c.name, msg, w)
			}
		}
		if c.line != "" {
			if w := fmt.Sprintf("%s:%d:", path, lineOf(t, content, c.line)); !strings.Contains(msg, w) {
				t.Errorf("%s: error %q lacks %q", c.name, msg, w)
			}
		}
	}
}

// gpt2TokenizerJSON turns GPT-2's encoder.json and vocab.bpe into a
// tokenizer.json as the tokenizers library writes it for "gpt2", with the
// merges as strings or (pairs) as two-element arrays. It reads the files
// itself rather than through this package.
func gpt2TokenizerJSON(t *testing.T, pairs bool) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(gpt2Dir, GPT2VocabFile))
	if err != nil {
		t.Fatal(err)
	}
	var vocab map[string]int
	if err := json.Unmarshal(data, &vocab); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(gpt2Dir, GPT2MergesFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var strs []string
	var prs [][2]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#version") || line == "" {
			continue
		}
		a, b, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("merge line %q", line)
		}
		strs = append(strs, line)
		prs = append(prs, [2]string{a, b})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	byteLevel := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
	model := map[string]any{
		"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": "", "end_of_word_suffix": "",
		"fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab,
	}
	var pre any = byteLevel
	var norm any
	if pairs {
		model["merges"] = prs
		// Also exercise a Sequence around ByteLevel and an NFC normalizer.
		pre = map[string]any{"type": "Sequence", "pretokenizers": []any{byteLevel}}
		norm = map[string]any{"type": "NFC"}
	} else {
		model["merges"] = strs
	}
	out, err := json.MarshalIndent(map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil,
		"added_tokens": []any{map[string]any{"id": 50256, "content": "<|endoftext|>", "single_word": false,
			"lstrip": false, "rstrip": false, "normalized": true, "special": true}},
		"normalizer": norm, "pre_tokenizer": pre, "post_processor": byteLevel, "decoder": byteLevel,
		"model": model,
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tokenizerJSONTexts are varied texts on which the tokenizer read from
// tokenizer.json must agree with the one read from GPT-2's own files.
var tokenizerJSONTexts = []string{
	"Hello world",
	"It's 3:45pm; we'll meet at #42 (room B-7) — don't be late!!! They've said: \"OK\"...",
	"I'd say you're right, isn't it? 'quoted' ''double'' ",
	"Numbers: 0 1 12 123 1234 12345 3.14159 -2.5e10 1,000,000 ²³ ½ ٣",
	"runs of spaces:  two   three    four     five\t\ttabs \t mixed",
	"new\nlines\n\n\nand\r\nCRLF\n  indented\n",
	"naïve café résumé Straße Ωμέγα русский 日本語のテキスト 한국어 עברית العربية",
	"emoji 🎉👍🏽 👨\u200d👩\u200d👧 and symbols ©®™ → ← ∑ ∞ ≠",
	"<|endoftext|> is text here, <s> too",
	strings.Repeat("abc ", 50) + strings.Repeat("x", 300),
	"   leading and trailing   ",
	"\u0085\u00a0\u3000 odd whitespace\u2028",
	"def main():\n    print(\"hi\")  # comment\n    return 0\n",
}

// TestTokenizerJSONGPT2 converts GPT-2's real files to tokenizer.json in
// both merges formats and checks that the result encodes as the original.
func TestTokenizerJSONGPT2(t *testing.T) {
	orig := loadGPT2(t) // skips, or fails under CI=true, without the files
	for _, pairs := range []bool{false, true} {
		t.Run(fmt.Sprintf("pairs=%v", pairs), func(t *testing.T) {
			dir := writeFiles(t, map[string]string{TokenizerJSONFile: string(gpt2TokenizerJSON(t, pairs))})
			tok, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if tok.VocabSize() != 50257 || tok.NumMerges() != 50000 {
				t.Errorf("vocab %d, merges %d; want 50257 and 50000", tok.VocabSize(), tok.NumMerges())
			}
			if !slices.Equal(tok.Merges(), orig.Merges()) {
				t.Error("merges differ from vocab.bpe's")
			}
			if got := tok.SpecialTokens(); !slices.Equal(got, []string{"<|endoftext|>"}) {
				t.Errorf("specials %q", got)
			}
			for id := 0; id < orig.VocabSize(); id++ {
				a, _ := orig.IDToToken(id)
				b, _ := tok.IDToToken(id)
				if a != b {
					t.Fatalf("id %d: %q from encoder.json, %q from tokenizer.json", id, a, b)
				}
			}
			if got := tok.Encode("Hello world"); !slices.Equal(got, []int{15496, 995}) {
				t.Errorf(`Encode("Hello world") = %v, want [15496 995]`, got)
			}
			texts := slices.Clone(tokenizerJSONTexts)
			for _, c := range gpt2Cases {
				if got := tok.Encode(c.text); !slices.Equal(got, c.ids) {
					t.Errorf("Encode(%q)\n got %v\nwant %v", c.text, got, c.ids)
				}
				texts = append(texts, c.text)
			}
			for _, s := range texts {
				got, want := tok.Encode(s), orig.Encode(s)
				if !slices.Equal(got, want) {
					t.Errorf("Encode(%q)\n got %v\nwant %v (from GPT-2's files)", s, got, want)
				}
				if len(got) == 0 {
					t.Errorf("Encode(%q) is empty", s)
				}
				if back, err := tok.Decode(got, false); err != nil || back != s {
					t.Errorf("Decode(Encode(%q)) = %q, %v", s, back, err)
				}
			}
			e, err := tok.EncodeSingle("a<|endoftext|>b", EncodeOptions{ParseSpecial: true, OmitSpecialTokens: true})
			if err != nil || !slices.Equal(e.IDs, []int{64, 50256, 65}) {
				t.Errorf("ParseSpecial: %v, %v", e.IDs, err)
			}
		})
	}
}

// FuzzLoadTokenizerJSON checks that no input makes the tokenizer.json reader
// panic, that its errors name the file, and that a tokenizer it accepts
// encodes and decodes text back.
func FuzzLoadTokenizerJSON(f *testing.F) {
	valid := smallTokenizerJSON(false)
	f.Add([]byte(valid))
	f.Add([]byte(smallTokenizerJSON(true)))
	for _, broken := range []string{
		"",
		"{}",
		"null",
		`{"model": {"type": "BPE"}}`,
		`{"model": {"type": "WordPiece", "vocab": {"a": 0}}}`,
		`{"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a a"]}}`,
		valid[:len(valid)/3],
		strings.Replace(valid, `"ll": 259`, `"ll": 258`, 1),
		strings.Replace(valid, `"he ll"`, `["he", "zz"]`, 1),
		strings.Replace(valid, `{"id": 264, "content": "<s>"`, `{"id": 258, "content": "<s>"`, 1),
		strings.Replace(valid, `"add_prefix_space": false`, `"add_prefix_space": true`, 1),
	} {
		f.Add([]byte(broken))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Ids up to 2^24 are valid and make id tables that large, which is
		// slow under the fuzzer's instrumentation; TestTokenizerJSONErrors
		// checks the bounds, so inputs with numbers of 6 digits or more are
		// left out here.
		if digitRun(data) >= 6 {
			t.Skip()
		}
		const name = "fuzz/tokenizer.json"
		tok, err := parseTokenizerJSON(data, name)
		if err != nil {
			if !strings.Contains(err.Error(), name) {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for _, s := range []string{"hello world", "  <s>x</s> \n日本", string(data[:min(len(data), 64)])} {
			if !utf8.ValidString(s) {
				continue
			}
			ids := tok.Encode(s)
			if back, err := tok.Decode(ids, false); err != nil || back != s {
				t.Fatalf("Decode(Encode(%q)) = %q, %v", s, back, err)
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

// digitRun is the length of the longest run of ASCII digits in data.
func digitRun(data []byte) int {
	best, n := 0, 0
	for _, c := range data {
		if '0' <= c && c <= '9' {
			n++
			best = max(best, n)
		} else {
			n = 0
		}
	}
	return best
}
