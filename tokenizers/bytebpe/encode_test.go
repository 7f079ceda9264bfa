package bytebpe

import (
	"slices"
	"strings"
	"testing"
)

// TestTruncateLongestFirst uses the lengths of Hugging Face tokenizers'
// truncation test (budget 7, sequences of 0, 2, 4 and 8 tokens).
func TestTruncateLongestFirst(t *testing.T) {
	lens := []int{0, 2, 4, 8}
	want := [4][4][2]int{
		{{0, 0}, {0, 2}, {0, 4}, {0, 7}},
		{{2, 0}, {2, 2}, {2, 4}, {2, 5}},
		{{4, 0}, {4, 2}, {3, 4}, {3, 4}},
		{{7, 0}, {5, 2}, {4, 3}, {3, 4}},
	}
	for i, n1 := range lens {
		for j, n2 := range lens {
			seqs := [][]int{make([]int, n1), make([]int, n2)}
			truncate(seqs, 7)
			if got := [2]int{len(seqs[0]), len(seqs[1])}; got != want[i][j] {
				t.Errorf("lengths %d, %d: got %v, want %v", n1, n2, got, want[i][j])
			}
		}
	}
	one := [][]int{{1, 2, 3, 4, 5}}
	truncate(one, 3)
	if !slices.Equal(one[0], []int{1, 2, 3}) {
		t.Errorf("single truncation kept %v", one[0])
	}
}

func TestEncodeTemplates(t *testing.T) {
	tok := trained(t)
	for i, s := range RoBERTaSpecials {
		if id, ok := tok.TokenToID(s); !ok || id != i || !tok.IsSpecial(id) {
			t.Fatalf("special %q: id %d, %v", s, id, ok)
		}
	}
	a, b := "The quick brown fox", " jumps over the lazy dog."
	ida, idb := tok.Encode(a), tok.Encode(b)

	e, err := tok.EncodeSingle(a, EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]int{0}, ida...), 2)
	if !slices.Equal(e.IDs, want) {
		t.Errorf("single: %v, want %v", e.IDs, want)
	}
	if e.SpecialTokensMask[0] != 1 || e.SpecialTokensMask[1] != 0 || e.SpecialTokensMask[len(want)-1] != 1 {
		t.Errorf("special tokens mask %v", e.SpecialTokensMask)
	}

	e, err = tok.EncodePair(a, b, EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want = slices.Concat([]int{0}, ida, []int{2, 2}, idb, []int{2})
	if !slices.Equal(e.IDs, want) {
		t.Errorf("pair: %v, want %v", e.IDs, want)
	}
	if e.SequenceIDs[1] != 0 || e.SequenceIDs[len(ida)+3] != 1 || e.SequenceIDs[0] != -1 {
		t.Errorf("sequence ids %v", e.SequenceIDs)
	}
	if s, _ := tok.Decode(e.IDs, false); s != "<s>"+a+"</s></s>"+b+"</s>" {
		t.Errorf("Decode = %q", s)
	}
	if s, _ := tok.Decode(e.IDs, true); s != a+b {
		t.Errorf("Decode skipping specials = %q", s)
	}

	e, err = tok.EncodePair(a, b, EncodeOptions{OmitSpecialTokens: true})
	if err != nil || !slices.Equal(e.IDs, slices.Concat(ida, idb)) {
		t.Errorf("pair without specials: %v, %v", e.IDs, err)
	}
}

func TestEncodeTruncateAndPad(t *testing.T) {
	tok := trained(t)
	long := strings.Repeat("tokens everywhere, ", 20)
	short := "the sea"
	nl, ns := len(tok.Encode(long)), len(tok.Encode(short))
	if nl < 20 || ns < 2 {
		t.Fatalf("unexpected lengths %d, %d", nl, ns)
	}

	e, err := tok.EncodePair(long, short, EncodeOptions{MaxLength: 16, PadTo: 20})
	if err != nil {
		t.Fatal(err)
	}
	// 12 ids for the texts: the short one keeps its ns, the long one the rest.
	want := slices.Concat([]int{0}, tok.Encode(long)[:12-ns], []int{2, 2}, tok.Encode(short), []int{2, 1, 1, 1, 1})
	if !slices.Equal(e.IDs, want) {
		t.Errorf("ids %v\nwant %v", e.IDs, want)
	}
	wantMask := slices.Concat(slices.Repeat([]int{1}, 16), []int{0, 0, 0, 0})
	if !slices.Equal(e.AttentionMask, wantMask) {
		t.Errorf("attention mask %v", e.AttentionMask)
	}
	if len(e.SpecialTokensMask) != 20 || len(e.SequenceIDs) != 20 || e.SequenceIDs[19] != -1 {
		t.Errorf("mask lengths %d %d", len(e.SpecialTokensMask), len(e.SequenceIDs))
	}

	// Padding never shortens; truncation of a single text keeps its head.
	e, err = tok.EncodeSingle(long, EncodeOptions{MaxLength: 10, PadTo: 4})
	if err != nil || len(e.IDs) != 10 || e.IDs[9] != 2 || !slices.Equal(e.IDs[1:9], tok.Encode(long)[:8]) {
		t.Errorf("single truncated: %v, %v", e.IDs, err)
	}

	for _, opts := range []EncodeOptions{{MaxLength: 3}, {MaxLength: -1}, {PadTo: -2}} {
		if _, err := tok.EncodePair("a", "b", opts); err == nil {
			t.Errorf("EncodePair with %+v: no error", opts)
		}
	}
	if e, err := tok.EncodePair("a", "b", EncodeOptions{MaxLength: 4}); err != nil || !slices.Equal(e.IDs, []int{0, 2, 2, 2}) {
		t.Errorf("MaxLength 4 pair: %v, %v", e.IDs, err)
	}
}

func TestParseSpecial(t *testing.T) {
	tok := trained(t)
	text := "a<mask>b </s><s><pad>"
	e, err := tok.EncodeSingle(text, EncodeOptions{ParseSpecial: true, OmitSpecialTokens: true})
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Concat(tok.Encode("a"), []int{4}, tok.Encode("b "), []int{2, 0, 1})
	if !slices.Equal(e.IDs, want) {
		t.Errorf("ids %v, want %v", e.IDs, want)
	}
	if m := e.SpecialTokensMask; m[0] != 0 || m[len(tok.Encode("a"))] != 1 || m[len(m)-1] != 1 {
		t.Errorf("special tokens mask %v", e.SpecialTokensMask)
	}
	if s, _ := tok.Decode(e.IDs, false); s != text {
		t.Errorf("Decode = %q", s)
	}
	// Without ParseSpecial the same text is plain BPE.
	for _, id := range tok.Encode(text) {
		if tok.IsSpecial(id) {
			t.Errorf("Encode produced special id %d", id)
		}
	}
}

func TestDecodeErrorsAndPartialUTF8(t *testing.T) {
	tok := trained(t)
	if _, err := tok.Decode([]int{-1}, false); err == nil {
		t.Error("Decode(-1) succeeded")
	}
	if _, err := tok.Decode([]int{tok.VocabSize()}, false); err == nil {
		t.Error("Decode(VocabSize) succeeded")
	}
	// The first byte of "é" alone decodes to that byte.
	id, _ := tok.TokenToID(ByteLevelString("\xc3"))
	if s, err := tok.Decode([]int{id}, false); err != nil || s != "\xc3" {
		t.Errorf("Decode of a lone lead byte = %q, %v", s, err)
	}
}
