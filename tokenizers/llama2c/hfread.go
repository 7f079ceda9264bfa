package llama2c

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"strings"

	"github.com/pkg/errors"
)

// LoadHF reads a SentencePiece-style Hugging Face tokenizer.json, as LLaMA
// 2 and TinyLlama ship theirs and WriteHF writes it, into a Tokenizer:
// a BPE model with byte_fallback over pieces with "▁" for a space, ids 1
// and 2 being <s> and </s>, and either the normalizer Sequence [Prepend
// "▁", Replace " " → "▁"] without pre_tokenizer, or a Metaspace
// pre_tokenizer ("▁", prepending it, not splitting) without normalizer.
//
// Encode then merges by score as llama2.c does, with each piece's score the
// negated rank of the first merge that makes it (pieces no merge makes
// never form). That is Hugging Face's rank-ordered BPE except where two
// candidate pairs make pieces whose first merges differ in rank from the
// pairs' own ranks (two splits of one piece, both present in a text):
// Hugging Face takes the lower-ranked pair, Encode the leftmost. Anything
// else (another model, pre-tokenizer or normalizer, added tokens beyond
// the vocabulary, BPE dropout) is an error that says so.
func LoadHF(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errors.Wrap(err, "llama2c")
	}
	t, err := ParseHF(data)
	return t, errors.Wrap(err, path)
}

// IsSentencePieceJSON reports whether a tokenizer.json holds a BPE model
// with byte_fallback, the mark of SentencePiece-style (LLaMA 2) tokenizers,
// which LoadHF reads; byte-level BPE has no byte_fallback.
func IsSentencePieceJSON(data []byte) bool {
	var doc struct {
		Model struct {
			Type         string `json:"type"`
			ByteFallback bool   `json:"byte_fallback"`
		} `json:"model"`
	}
	return json.Unmarshal(data, &doc) == nil && doc.Model.Type == "BPE" && doc.Model.ByteFallback
}

// hfComponent is a normalizer, pre-tokenizer or one of their members.
type hfComponent struct {
	Type          string          `json:"type"`
	Prepend       string          `json:"prepend"`
	Pattern       json.RawMessage `json:"pattern"`
	Content       string          `json:"content"`
	Normalizers   []hfComponent   `json:"normalizers"`
	Replacement   string          `json:"replacement"`
	PrependScheme string          `json:"prepend_scheme"`
	AddPrefix     *bool           `json:"add_prefix_space"`
	Split         *bool           `json:"split"`
}

// ParseHF is LoadHF for the bytes of a tokenizer.json.
func ParseHF(data []byte) (*Tokenizer, error) {
	var doc struct {
		AddedTokens []struct {
			ID      int    `json:"id"`
			Content string `json:"content"`
		} `json:"added_tokens"`
		Normalizer   *hfComponent `json:"normalizer"`
		PreTokenizer *hfComponent `json:"pre_tokenizer"`
		Model        struct {
			Type         string            `json:"type"`
			ByteFallback bool              `json:"byte_fallback"`
			Dropout      *float64          `json:"dropout"`
			Prefix       *string           `json:"continuing_subword_prefix"`
			Suffix       *string           `json:"end_of_word_suffix"`
			IgnoreMerges bool              `json:"ignore_merges"`
			Vocab        map[string]int    `json:"vocab"`
			Merges       []json.RawMessage `json:"merges"`
		} `json:"model"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, errors.Wrap(err, "llama2c: parsing tokenizer.json")
	}
	m := doc.Model
	switch {
	case m.Type != "BPE" || !m.ByteFallback:
		return nil, errors.Errorf("llama2c: tokenizer.json's model is %q with byte_fallback %t, not SentencePiece-style BPE (BPE with byte_fallback)", m.Type, m.ByteFallback)
	case m.Dropout != nil && *m.Dropout != 0:
		return nil, errors.New("llama2c: tokenizer.json has BPE dropout, which is not supported")
	case m.Prefix != nil && *m.Prefix != "" || m.Suffix != nil && *m.Suffix != "":
		return nil, errors.New("llama2c: tokenizer.json has a continuing_subword_prefix or end_of_word_suffix, which SentencePiece-style BPE does not")
	case m.IgnoreMerges:
		return nil, errors.New("llama2c: tokenizer.json has ignore_merges, which SentencePiece-style BPE does not")
	}
	if err := checkMetaspace(doc.Normalizer, doc.PreTokenizer); err != nil {
		return nil, err
	}
	names := make([]string, len(m.Vocab))
	for name, id := range m.Vocab {
		if id < 0 || id >= len(names) || names[id] != "" || name == "" {
			return nil, errors.Errorf("llama2c: tokenizer.json's vocabulary is not the ids 0..%d once each (token %q has id %d)", len(names)-1, name, id)
		}
		names[id] = name
	}
	if len(names) <= EOS || names[BOS] != hfBOS || names[EOS] != hfEOS {
		return nil, errors.Errorf("llama2c: tokenizer.json must have %s at id %d and %s at id %d, as LLaMA 2's", hfBOS, BOS, hfEOS, EOS)
	}
	for _, a := range doc.AddedTokens {
		if a.ID < 0 || a.ID >= len(names) || names[a.ID] != a.Content {
			return nil, errors.Errorf("llama2c: added token %q (id %d) is not the vocabulary's token of that id; added tokens beyond the vocabulary are not supported", a.Content, a.ID)
		}
	}
	scores := make([]float32, len(names))
	for i := range scores {
		scores[i] = neverMerges
	}
	for i, raw := range m.Merges {
		var pair []string
		var s string
		if json.Unmarshal(raw, &s) == nil {
			pair = strings.Split(s, " ")
		} else if json.Unmarshal(raw, &pair) != nil {
			return nil, errors.Errorf("llama2c: tokenizer.json: merge %d %s is neither \"a b\" nor [\"a\", \"b\"]", i, raw)
		}
		if len(pair) != 2 {
			return nil, errors.Errorf("llama2c: tokenizer.json: merge %d %s does not have two parts", i, raw)
		}
		id, ok := m.Vocab[pair[0]+pair[1]]
		if !ok {
			return nil, errors.Errorf("llama2c: tokenizer.json: merge %d makes %q, which the vocabulary lacks", i, pair[0]+pair[1])
		}
		if i >= 1<<24 {
			return nil, errors.New("llama2c: tokenizer.json has more merges than float32 scores can rank")
		}
		if scores[id] == neverMerges {
			scores[id] = -float32(i)
		}
	}
	var buf bytes.Buffer
	maxLen := 0
	pieces := make([]string, len(names))
	for id, n := range names {
		pieces[id] = strings.ReplaceAll(n, metaSpace, " ")
		maxLen = max(maxLen, len(pieces[id]))
	}
	binary.Write(&buf, binary.LittleEndian, int32(maxLen))
	for id, p := range pieces {
		binary.Write(&buf, binary.LittleEndian, math.Float32bits(scores[id]))
		binary.Write(&buf, binary.LittleEndian, int32(len(p)))
		buf.WriteString(p)
	}
	return Parse(buf.Bytes())
}

// checkMetaspace accepts the two ways LLaMA 2's tokenizer.json turns
// spaces into "▁" and prepends one.
func checkMetaspace(norm, pre *hfComponent) error {
	const want = `SentencePiece-style tokenizer.json must turn " " into "▁" and prepend one as LLaMA 2's does: the normalizer Sequence [Prepend "▁", Replace " " → "▁"] without pre_tokenizer, or a Metaspace pre_tokenizer ("▁", prepend_scheme first or always, split false) without normalizer`
	if norm != nil && pre == nil {
		ns := norm.Normalizers
		var pattern struct {
			String string `json:"String"`
		}
		if norm.Type == "Sequence" && len(ns) == 2 && ns[0].Type == "Prepend" && ns[0].Prepend == metaSpace &&
			ns[1].Type == "Replace" && json.Unmarshal(ns[1].Pattern, &pattern) == nil && pattern.String == " " && ns[1].Content == metaSpace {
			return nil
		}
	}
	if norm == nil && pre != nil && pre.Type == "Metaspace" && pre.Replacement == metaSpace && (pre.Split == nil || !*pre.Split) &&
		(pre.PrependScheme == "first" || pre.PrependScheme == "always" || pre.PrependScheme == "" && pre.AddPrefix != nil && *pre.AddPrefix) {
		return nil
	}
	return errors.New("llama2c: " + want)
}
