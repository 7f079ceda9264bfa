package bytebpe

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// byteVocabJSON is a vocab.json of the 256 byte tokens and extra tokens, one
// entry a line, extra ones last.
func byteVocabJSON(extra ...string) string {
	var b strings.Builder
	b.WriteString("{\n")
	id := 0
	add := func(tok string) {
		k, _ := json.Marshal(tok)
		if id > 0 {
			b.WriteString(",\n")
		}
		b.WriteString(string(k) + ": " + itoaTest(id))
		id++
	}
	for _, by := range alphabetOrder {
		add(byteSymbol(by))
	}
	for _, e := range extra {
		add(e)
	}
	b.WriteString("\n}\n")
	return b.String()
}

func itoaTest(n int) string { b, _ := json.Marshal(n); return string(b) }

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadSmall(t *testing.T) {
	for _, layout := range [][2]string{{VocabFile, MergesFile}, {GPT2VocabFile, GPT2MergesFile}} {
		dir := writeFiles(t, map[string]string{
			layout[0]: byteVocabJSON("he", "ll", "hell", "hello", "<s>"),
			layout[1]: "#version: 0.2\nh e\nl l\r\nhe ll\n\nhell o\n",
		})
		tok, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := tok.Tokenize("hello hell"); strings.Join(got, "|") != "hello|Ġ|hell" {
			t.Errorf("%s: Tokenize = %q", layout[0], got)
		}
		if got := tok.SpecialTokens(); len(got) != 1 || got[0] != "<s>" {
			t.Errorf("%s: specials %q", layout[0], got)
		}
	}
}

// TestLoadUnreachable: merges may name tokens that BPE never produces; such
// tokens, and what they merge into, are special and decode as themselves.
func TestLoadUnreachable(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		VocabFile:  byteVocabJSON("中", "中a", "a b", "ab"),
		MergesFile: "中 a\na b\n",
	})
	tok, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.SpecialTokens(); strings.Join(got, "|") != "中|中a|a b" {
		t.Errorf("specials %q", got)
	}
	if got := tok.Tokenize("中ab"); strings.Join(got, "|") != "ä|¸|Ń|ab" {
		t.Errorf("Tokenize = %q", got)
	}
	id, _ := tok.TokenToID("中a")
	if s, err := tok.Decode([]int{id}, false); err != nil || s != "中a" {
		t.Errorf("Decode = %q, %v", s, err)
	}
}

func TestLoadErrors(t *testing.T) {
	good := byteVocabJSON("he")
	cases := []struct {
		name   string
		vocab  string // "" leaves vocab.json out
		merges string // "-" leaves merges.txt out
		want   []string
	}{
		{"no files", "", "-", []string{"neither vocab.json nor encoder.json"}},
		{"missing merges", good, "-", []string{"merges.txt", "no such file"}},
		{"empty vocab", " ", "", []string{"vocab.json:1", "empty file"}},
		{"truncated JSON", "{\n\"a\": 1,\n\"b", "", []string{"vocab.json:3", "malformed vocabulary"}},
		{"syntax error", "{\n\"a\": 1,\n\"b\" 2}", "", []string{"vocab.json:3", "malformed vocabulary"}},
		{"not an object", "[1, 2]", "", []string{"vocab.json:1", "want a JSON object"}},
		{"string id", "{\n\"a\": 0,\n\"b\": \"1\"\n}", "", []string{"vocab.json:3", `token "b"`, "not a number"}},
		{"fractional id", "{\n\"a\": 1.5\n}", "", []string{"vocab.json:2", "not an integer"}},
		{"negative id", "{\"a\": -1}", "", []string{"vocab.json:1", "not an integer"}},
		{"huge id", "{\"a\": 99999999999}", "", []string{"not an integer"}},
		{"shared id", "{\n\"a\": 7,\n\"b\": 7\n}", "", []string{"vocab.json:3", `"a" and "b" share id 7`}},
		{"token twice", "{\n\"a\": 1,\n\"a\": 2\n}", "", []string{"vocab.json:3", `"a" is listed twice`}},
		{"empty token", "{\"\": 1}", "", []string{"empty string"}},
		{"trailing data", good + "x", "", []string{"vocab.json:", "data after"}},
		{"missing byte", "{\"a\": 0}", "", []string{"vocab.json", "lacks"}},
		{"one-token merge", good, "#version: 0.2\nh e\nhe\n", []string{"merges.txt:3", "malformed merge"}},
		{"three-token merge", good, "h e x\n", []string{"merges.txt:1", "malformed merge"}},
		{"unknown token", good, "#version: 0.2\nh e\nhe zz\n", []string{"merges.txt:3", `unknown token "zz"`}},
		{"unknown result", good, "h e\nl l\n", []string{"merges.txt:2", `merged token "ll" is not in the vocabulary`}},
	}
	for _, c := range cases {
		files := map[string]string{}
		if c.vocab != "" {
			files[VocabFile] = c.vocab
		}
		if c.merges != "-" {
			files[MergesFile] = c.merges
		}
		dir := writeFiles(t, files)
		tok, err := Load(dir)
		if err == nil {
			t.Errorf("%s: no error (tokenizer %v)", c.name, tok != nil)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.name, err, w)
			}
		}
	}
	if _, err := LoadFiles("/nonexistent/vocab.json", "/nonexistent/merges.txt"); err == nil || !strings.Contains(err.Error(), "/nonexistent/vocab.json") {
		t.Errorf("LoadFiles on missing files: %v", err)
	}
}

func TestAddSpecialTokenErrors(t *testing.T) {
	tok, err := TrainStrings(corpus, TrainOptions{NumMerges: 20, SpecialTokens: []string{"<s>"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.AddSpecialToken("<s>", 0); err != nil {
		t.Errorf("re-adding <s> with its id: %v", err)
	}
	eID, _ := tok.TokenToID("e")
	for _, c := range []struct {
		tok  string
		id   int
		want string
	}{
		{"<s>", 5, "already has id 0"},
		{"<x>", 3, "is taken by"},
		{"e", eID, "BPE token"},
		{"e", 9999, "already has id"},
		{"", 9999, "empty string"},
		{"<x>", -1, "outside"},
	} {
		if err := tok.AddSpecialToken(c.tok, c.id); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("AddSpecialToken(%q, %d) = %v, want %q", c.tok, c.id, err, c.want)
		}
	}
	// A special id far past the vocabulary leaves a gap; ids in the gap are
	// not in the vocabulary.
	n := tok.VocabSize()
	if err := tok.AddSpecialToken("<far>", n+10); err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != n+11 {
		t.Errorf("VocabSize %d, want %d", tok.VocabSize(), n+11)
	}
	if _, err := tok.Decode([]int{n + 3}, false); err == nil {
		t.Error("decoding an id in the gap succeeded")
	}
	if s, err := tok.Decode([]int{n + 10}, false); err != nil || s != "<far>" {
		t.Errorf("Decode(<far>) = %q, %v", s, err)
	}
}
