package llama2c

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// vocabFile encodes pieces and scores in llama2.c's tokenizer format.
func vocabFile(maxLen int32, pieces []string, scores []float32) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, maxLen)
	for i, p := range pieces {
		binary.Write(&b, binary.LittleEndian, scores[i])
		binary.Write(&b, binary.LittleEndian, int32(len(p)))
		b.WriteString(p)
	}
	return b.Bytes()
}

// synthetic is a small vocabulary laid out as llama2.c's: <unk>, BOS, EOS,
// the 256 byte tokens, then pieces with decreasing scores.
func synthetic(t testing.TB, merges ...string) *Tokenizer {
	t.Helper()
	pieces := []string{"<unk>", "\n<s>\n", "\n</s>\n"}
	scores := []float32{0, 0, 0}
	for b := 0; b < 256; b++ {
		pieces = append(pieces, fmt.Sprintf("<0x%02X>", b))
		scores = append(scores, 0)
	}
	for i, m := range merges {
		pieces = append(pieces, m)
		scores = append(scores, -float32(i))
	}
	tok, err := Parse(vocabFile(16, pieces, scores))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (t *Tokenizer) id(p string) int { return t.ids[p] }

func TestEncodeMergesByScore(t *testing.T) {
	// "ab" outscores "bc", so "abc" → "ab" + "c"; "abc" itself is never
	// reachable from "ab"+"c" unless listed.
	tok := synthetic(t, " ", "a", "b", "c", "ab", "bc", " ab", "é")
	got, err := tok.Encode("abc", true, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []int{BOS, tok.id(" ab"), tok.id("c"), EOS}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Encode(abc) = %v, want %v", got, want)
	}
	// A character outside the vocabulary falls back to its UTF-8 bytes;
	// one inside stays whole.
	got, err = tok.Encode("ü é", false, false)
	if err != nil {
		t.Fatal(err)
	}
	want = []int{tok.id(" "), 3 + 0xC3, 3 + 0xBC, tok.id(" "), tok.id("é")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Encode(ü é) = %v, want %v", got, want)
	}
	// Empty text: no dummy prefix.
	if got, _ := tok.Encode("", true, false); !reflect.DeepEqual(got, []int{BOS}) {
		t.Errorf("Encode(\"\") = %v", got)
	}
	// On equal scores the leftmost pair merges first.
	tie := synthetic(t, " ", "x", "xx")
	if got, _ := tie.Encode("xxx", false, false); !reflect.DeepEqual(got, []int{tie.id(" "), tie.id("xx"), tie.id("x")}) {
		t.Errorf("Encode(xxx) = %v", got)
	}
}

func TestDecode(t *testing.T) {
	tok := synthetic(t, " ", " Once", "a")
	for _, c := range []struct {
		prev, id int
		want     string
	}{
		{BOS, tok.id(" Once"), "Once"},
		{tok.id("a"), tok.id(" Once"), " Once"},
		{tok.id("a"), 3 + 'A', "A"},
		{BOS, 3 + 0xFF, "\xff"},
	} {
		got, err := tok.Decode(c.prev, c.id)
		if err != nil || got != c.want {
			t.Errorf("Decode(%d, %d) = %q, %v; want %q", c.prev, c.id, got, err, c.want)
		}
	}
	if _, err := tok.Decode(BOS, tok.VocabSize()); err == nil {
		t.Error("an id outside the vocabulary must be an error")
	}
	if _, err := tok.DecodeAll([]int{BOS, -1}); err == nil {
		t.Error("DecodeAll must report bad ids")
	}
	if p, s, err := tok.Piece(tok.id(" Once")); err != nil || p != " Once" || s != -1 {
		t.Errorf("Piece = %q %v %v", p, s, err)
	}
	if _, _, err := tok.Piece(-1); err == nil {
		t.Error("Piece(-1) must be an error")
	}
}

func TestParseErrors(t *testing.T) {
	good := vocabFile(4, []string{"<unk>", "<s>", "</s>", " "}, []float32{0, 0, 0, 0})
	cases := map[string][]byte{
		"shorter than":      good[:3],
		"negative":          vocabFile(-1, []string{"a", "b", "c"}, []float32{0, 0, 0}),
		"truncated entry":   good[:len(good)-6],
		"exceeds the file":  good[:len(good)-1],
		"lacks BOS and EOS": vocabFile(4, []string{"a", "b"}, []float32{0, 0}),
	}
	for want, data := range cases {
		if _, err := Parse(data); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v", want, err)
		}
	}
	neg := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(neg[len(neg)-5:], uint32(0xFFFFFFFF))
	if _, err := Parse(neg); err == nil {
		t.Error("a negative length must be rejected")
	}
	tok, err := Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Encode("x", true, false); err == nil || !strings.Contains(err.Error(), "fallback") {
		t.Errorf("a byte without fallback token: %v", err)
	}
	noSpace, err := Parse(vocabFile(4, []string{"<unk>", "<s>", "</s>"}, []float32{0, 0, 0}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noSpace.Encode("x", false, false); err == nil {
		t.Error("a vocabulary without \" \" cannot encode text")
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none.bin")); err == nil {
		t.Error("a missing file must be an error")
	}
}

func dataFile(t *testing.T, rel string) string {
	t.Helper()
	dir, err := filepath.Abs("../../../shared/data")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, rel)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("test data missing under CI: %v", err)
		}
		t.Skipf("test data missing: %v", err)
	}
	return p
}

func TestTok512MatchesLlama2C(t *testing.T) {
	tok, err := Load(dataFile(t, "llama2c/tok512.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 512 || tok.MaxTokenLength() != 7 {
		t.Fatalf("vocab %d, max length %d", tok.VocabSize(), tok.MaxTokenLength())
	}
	// Ids printed by llama2.c's encode() (run.c) for the same text with
	// bos=1, eos=0.
	for text, want := range map[string][]int{
		"":                 {1},
		"Once upon a time": {1, 403, 407, 261, 378},
		"Hello, world! ünïcödé 日本語 🙂": {1, 346, 306, 414, 432, 263, 304, 341, 443, 410, 198, 191, 416, 198, 178, 429, 198,
			185, 418, 485, 410, 233, 154, 168, 233, 159, 175, 235, 173, 161, 410, 243, 162, 156, 133},
		"  two  spaces": {1, 410, 410, 259, 424, 414, 410, 262, 427, 412, 331, 419},
		"a":             {1, 261},
		"The quick brown fox jumps over the lazy dog.": {1, 291, 410, 456, 425, 417, 340, 268, 420, 327, 416, 272, 414, 444,
			410, 449, 425, 423, 427, 419, 334, 330, 265, 278, 412, 451, 422, 400, 428, 426},
	} {
		got, err := tok.Encode(text, true, false)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Encode(%q) = %v, want %v", text, got, want)
		}
		back, err := tok.DecodeAll(got)
		if err != nil || back != text {
			t.Errorf("DecodeAll(Encode(%q)) = %q, %v", text, back, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(vocabFile(4, []string{"<unk>", "<s>", "</s>", " ", "a"}, []float32{0, 0, 0, 0, -1}))
	f.Add([]byte{1, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := Parse(data)
		if err != nil {
			return
		}
		if tok.VocabSize() <= EOS {
			t.Fatalf("accepted a vocabulary of %d", tok.VocabSize())
		}
		// Whatever the vocabulary, encoding and decoding must not panic.
		ids, err := tok.Encode("hello wörld", true, true)
		if err == nil {
			if _, err := tok.DecodeAll(ids); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	tok := synthetic(f, " ", "a", "b", "ab", " a", "é", "ab ", "aa", "\n", " \n")
	f.Add("")
	f.Add("ab ab  aab\n é")
	f.Add("\xff\xfe invalid \xc3")
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 256 {
			return
		}
		ids, err := tok.Encode(text, true, false)
		if err != nil {
			t.Fatal(err)
		}
		back, err := tok.DecodeAll(ids)
		if err != nil {
			t.Fatal(err)
		}
		if back != text {
			t.Fatalf("round trip of %q gave %q (ids %v)", text, back, ids)
		}
		if utf8.ValidString(text) && !utf8.ValidString(back) {
			t.Fatalf("valid text decoded to invalid UTF-8")
		}
	})
}
