package llama2c

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// hfBPE encodes text as Hugging Face's tokenizers library does with the
// parts of a tokenizer.json that WriteHF uses, read from the file alone: it
// knows nothing of llama2c's Tokenizer. The algorithm is the library's
// documented one: normalize; no pre-tokenizer, so the text is one word;
// split the word into characters, a character missing from the vocabulary
// becoming its <0xNN> byte tokens (byte_fallback); then repeatedly merge the
// adjacent pair with the lowest merge rank, the leftmost of equal ranks,
// into the token named by the pair's concatenation; then the
// post-processor's template.
type hfBPE struct {
	normalize []func(string) string
	vocab     map[string]int
	names     map[int]string
	ranks     map[[2]int]int // pair of ids → rank in merges
	unk       int
	special   []string // added tokens' contents
	template  []int    // ids before the sequence; -1 marks the sequence
}

func loadHFBPE(t *testing.T, path string) *hfBPE {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type step struct {
		Type    string
		Prepend string
		Pattern struct{ String string }
		Content string
	}
	var f struct {
		AddedTokens []struct {
			ID      int
			Content string
		} `json:"added_tokens"`
		Normalizer struct {
			Type        string
			Normalizers []step
		}
		PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
		PostProcessor struct {
			Type   string
			Single []struct {
				SpecialToken *struct{ ID string }
				Sequence     *struct{ ID string }
			}
			SpecialTokens map[string]struct{ IDs []int } `json:"special_tokens"`
		} `json:"post_processor"`
		Model struct {
			Type         string
			Dropout      *float64
			UnkToken     string `json:"unk_token"`
			ByteFallback bool   `json:"byte_fallback"`
			IgnoreMerges bool   `json:"ignore_merges"`
			Vocab        map[string]int
			Merges       []string
		}
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	m := f.Model
	if m.Type != "BPE" || m.Dropout != nil || !m.ByteFallback || m.IgnoreMerges || string(f.PreTokenizer) != "null" ||
		f.Normalizer.Type != "Sequence" || f.PostProcessor.Type != "TemplateProcessing" {
		t.Fatalf("tokenizer.json uses features this re-implementation lacks: model %s dropout %v byte_fallback %t ignore_merges %t, pre_tokenizer %s, normalizer %s, post_processor %s",
			m.Type, m.Dropout, m.ByteFallback, m.IgnoreMerges, f.PreTokenizer, f.Normalizer.Type, f.PostProcessor.Type)
	}
	h := &hfBPE{vocab: m.Vocab, names: map[int]string{}, ranks: map[[2]int]int{}}
	for name, id := range m.Vocab {
		h.names[id] = name
	}
	var ok bool
	if h.unk, ok = m.Vocab[m.UnkToken]; !ok {
		t.Fatalf("unk_token %q is not in the vocabulary", m.UnkToken)
	}
	for _, a := range f.AddedTokens {
		if m.Vocab[a.Content] != a.ID {
			t.Fatalf("added token %q has id %d, the vocabulary %d", a.Content, a.ID, m.Vocab[a.Content])
		}
		h.special = append(h.special, a.Content)
	}
	for _, n := range f.Normalizer.Normalizers {
		switch n := n; n.Type {
		case "Prepend":
			h.normalize = append(h.normalize, func(s string) string {
				if s == "" {
					return s
				}
				return n.Prepend + s
			})
		case "Replace":
			h.normalize = append(h.normalize, func(s string) string { return strings.ReplaceAll(s, n.Pattern.String, n.Content) })
		default:
			t.Fatalf("normalizer %s", n.Type)
		}
	}
	for _, p := range f.PostProcessor.Single {
		switch {
		case p.SpecialToken != nil:
			h.template = append(h.template, f.PostProcessor.SpecialTokens[p.SpecialToken.ID].IDs...)
		case p.Sequence != nil && p.Sequence.ID == "A":
			h.template = append(h.template, -1)
		default:
			t.Fatalf("template piece %+v", p)
		}
	}
	for rank, line := range m.Merges {
		l, r, found := strings.Cut(line, " ")
		li, okL := m.Vocab[l]
		ri, okR := m.Vocab[r]
		if _, okN := m.Vocab[l+r]; !found || strings.Contains(r, " ") || !okL || !okR || !okN {
			t.Fatalf("merge %d %q: not two vocabulary tokens making a third", rank, line)
		}
		if _, dup := h.ranks[[2]int{li, ri}]; dup {
			t.Fatalf("merge %q listed twice", line)
		}
		h.ranks[[2]int{li, ri}] = rank
	}
	return h
}

// encode returns text's ids; it refuses text holding an added token, which
// the library would split off first.
func (h *hfBPE) encode(text string) ([]int, error) {
	for _, s := range h.special {
		if strings.Contains(text, s) {
			return nil, fmt.Errorf("text holds the added token %q", s)
		}
	}
	for _, n := range h.normalize {
		text = n(text)
	}
	var word []int
	for _, c := range text {
		if id, ok := h.vocab[string(c)]; ok {
			word = append(word, id)
			continue
		}
		var bytes []int
		for _, b := range []byte(string(c)) {
			if id, ok := h.vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
				bytes = append(bytes, id)
			}
		}
		if len(bytes) == len(string(c)) {
			word = append(word, bytes...)
		} else {
			word = append(word, h.unk)
		}
	}
	for {
		best, at := -1, -1
		for i := 0; i+1 < len(word); i++ {
			if r, ok := h.ranks[[2]int{word[i], word[i+1]}]; ok && (best < 0 || r < best) {
				best, at = r, i
			}
		}
		if at < 0 {
			break
		}
		word[at] = h.vocab[h.names[word[at]]+h.names[word[at+1]]]
		word = append(word[:at+1], word[at+2:]...)
	}
	var out []int
	for _, id := range h.template {
		if id < 0 {
			out = append(out, word...)
		} else {
			out = append(out, id)
		}
	}
	return out, nil
}

// realSentences returns the GLUE dev sentences of CoLA, RTE and SST-2 from
// the shared data: real English, with names, numbers, punctuation and some
// characters outside tok512's vocabulary.
func realSentences(t *testing.T) []string {
	var out []string
	for _, f := range []struct {
		file   string
		header bool
		cols   []int
	}{
		{"glue/CoLA/dev.tsv", false, []int{3}},
		{"glue/RTE/dev.tsv", true, []int{1, 2}},
		{"glue/SST-2/dev.tsv", true, []int{0}},
	} {
		r, err := os.Open(dataFile(t, f.file))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		for first := true; sc.Scan(); first = false {
			if first && f.header {
				continue
			}
			fields := strings.Split(sc.Text(), "\t")
			for _, c := range f.cols {
				if c < len(fields) && fields[c] != "" {
					out = append(out, fields[c])
				}
			}
		}
		r.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// The Hugging Face tokenizer WriteHF writes for tok512 encodes thousands of
// real sentences, and random strings, to exactly the ids Encode gives, as an
// independent re-implementation of Hugging Face's BPE reads it from
// tokenizer.json.
func TestWriteHFEncodesAsLlama2C(t *testing.T) {
	tok, err := Load(dataFile(t, "llama2c/tok512.bin"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "hf")
	if err := tok.WriteHF(dir, 512); err != nil {
		t.Fatalf("%+v", err)
	}
	hf := loadHFBPE(t, filepath.Join(dir, HFTokenizerFile))
	texts := append(realSentences(t),
		"Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
		"Hello, world! ünïcödé 日本語 🙂", "  two  spaces", " leading space", "trailing space ", "a", "",
		"line one\nline two\ttab")
	if len(texts) < 2000 {
		t.Fatalf("only %d texts", len(texts))
	}
	// Short random strings pile up the pieces that have several splits
	// (" the" is " t"+"he" and " th"+"e") more densely than prose does.
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("abcdefghijklmnopqrstuvwxyz     eeeaaoo.,THS")
	for range 20000 {
		r := make([]rune, 1+rng.IntN(12))
		for j := range r {
			r[j] = alphabet[rng.IntN(len(alphabet))]
		}
		texts = append(texts, string(r))
	}
	fallback, differ := 0, 0
	for _, text := range texts {
		want, err := tok.Encode(text, true, false)
		if err != nil {
			t.Fatal(err)
		}
		got, err := hf.encode(text)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if !reflect.DeepEqual(got, want) {
			if differ++; differ <= 5 {
				t.Errorf("%q:\nHugging Face BPE %v\nllama2.c         %v", text, got, want)
			}
		}
		for _, id := range want {
			if id >= 3 && id < 3+256 {
				fallback++
				break
			}
		}
	}
	if differ > 0 {
		t.Errorf("%d of %d texts encode differently", differ, len(texts))
	} else {
		t.Logf("%d texts encode identically, %d of them with byte-fallback tokens", len(texts), fallback)
	}
	if fallback == 0 {
		t.Error("no text used byte fallback")
	}

	var cfg hfTokenizerConfig
	b, err := os.ReadFile(filepath.Join(dir, HFTokenizerConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil || !cfg.AddBOS || cfg.AddEOS || cfg.BOS != hf.names[BOS] || cfg.EOS != hf.names[EOS] || cfg.MaxLength != 512 {
		t.Errorf("tokenizer_config.json %+v, %v; vocabulary's BOS %q, EOS %q", cfg, err, hf.names[BOS], hf.names[EOS])
	}
}

// Vocabularies that tokenizer.json cannot represent are refused with the
// token that stands in the way.
func TestWriteHFErrors(t *testing.T) {
	for _, c := range []struct {
		pieces []string
		want   string
	}{
		{[]string{" x", "\u2581x"}, "literal"},
		{[]string{"\xff"}, "not UTF-8"},
		{[]string{"<s>"}, "both"},
		{[]string{"\n<s>\n", "x", "\n<s>\nx"}, "cannot take part in merges"},
	} {
		err := synthetic(t, c.pieces...).WriteHF(t.TempDir(), 16)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error with %q", c.pieces, err, c.want)
		}
	}
}
