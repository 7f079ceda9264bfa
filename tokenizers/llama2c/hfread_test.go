package llama2c

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestLoadHFEncodesAsHuggingFace reads back the tokenizer.json WriteHF
// writes for tok512, as LLaMA 2's layout, and checks that it encodes real
// sentences and random strings as the independent re-implementation of
// Hugging Face's BPE does, and decodes them back; the Metaspace variant
// reads the same; other layouts are refused with what is wrong.
func TestLoadHFEncodesAsHuggingFace(t *testing.T) {
	tok, err := Load(dataFile(t, "llama2c/tok512.bin"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "hf")
	if err := tok.WriteHF(dir, 512); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, HFTokenizerFile)
	back, err := LoadHF(path)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if back.VocabSize() != tok.VocabSize() || back.BOS() != BOS || back.EOS() != EOS {
		t.Fatalf("vocabulary %d, BOS %d, EOS %d", back.VocabSize(), back.BOS(), back.EOS())
	}
	hf := loadHFBPE(t, path)
	texts := append(realSentences(t), "Hello, world! ünïcödé 日本語 🙂", "  two  spaces", "a", "")
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []rune("abcdefghijklmnopqrstuvwxyz     eeeaaoo.,THS")
	for range 5000 {
		r := make([]rune, 1+rng.IntN(12))
		for j := range r {
			r[j] = alphabet[rng.IntN(len(alphabet))]
		}
		texts = append(texts, string(r))
	}
	differ := 0
	for _, text := range texts {
		got, err := back.Encode(text, true, false)
		if err != nil {
			t.Fatal(err)
		}
		want, err := hf.encode(text)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			if differ++; differ <= 5 {
				t.Errorf("%q:\nHugging Face BPE %v\nLoadHF           %v", text, want, got)
			}
		}
		if s, err := back.DecodeAll(got); err != nil || s != strings.TrimPrefix(" "+text, " ") && text != "" {
			t.Errorf("%q decodes to %q, %v", text, s, err)
		}
	}
	if differ > 0 {
		t.Errorf("%d of %d texts encode differently", differ, len(texts))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !IsSentencePieceJSON(data) {
		t.Error("not recognized as SentencePiece-style")
	}
	js := string(data)
	norm := js[strings.Index(js, `"normalizer"`):strings.Index(js, `"padding"`)]
	if !strings.Contains(js, `"pre_tokenizer": null`) {
		t.Fatal("WriteHF's layout changed: no null pre_tokenizer")
	}
	meta := strings.Replace(strings.Replace(js, norm, `"normalizer": null,
  `, 1), `"pre_tokenizer": null`, `"pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}`, 1)
	if _, err := ParseHF([]byte(meta)); err != nil {
		t.Errorf("Metaspace: %v", err)
	}
	for _, bad := range []struct{ js, want string }{
		{strings.Replace(meta, `"split": false`, `"split": true`, 1), "Metaspace"},
		{strings.Replace(js, `"byte_fallback": true`, `"byte_fallback": false`, 1), "byte_fallback"},
		{strings.Replace(js, `"<s>": 1,`, `"<s>": 700,`, 1), "ids 0..511"},
		{strings.Replace(js, `"added_tokens": [`, `"added_tokens": [{"id": 512, "content": "<pad>"},`, 1), "beyond the vocabulary"},
	} {
		if _, err := ParseHF([]byte(bad.js)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("got %v, want %q", err, bad.want)
		}
	}
}
