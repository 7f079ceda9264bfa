package llama2c

import (
	"bytes"
	"encoding/json"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/pkg/errors"
)

// File names WriteHF writes.
const (
	// HFTokenizerFile is Hugging Face's fast-tokenizer file.
	HFTokenizerFile = "tokenizer.json"
	// HFTokenizerConfigFile is transformers' tokenizer settings.
	HFTokenizerConfigFile = "tokenizer_config.json"
)

// Special token names in Hugging Face's LLaMA vocabulary. llama2.c's export
// writes BOS and EOS as "\n<s>\n" and "\n</s>\n"; WriteHF names them as
// SentencePiece does.
const (
	hfUnk = "<unk>"
	hfBOS = "<s>"
	hfEOS = "</s>"
	// metaSpace is SentencePiece's ▁, which llama2.c's export turned into " ".
	metaSpace = "\u2581"
	// neverMerges is llama2.c's starting best score: a piece scoring no
	// higher is never merged into.
	neverMerges = -1e10
)

// WriteHF writes the vocabulary to dir (creating it if needed) as a Hugging
// Face LLaMA tokenizer: tokenizer.json and tokenizer_config.json, replaced
// together (atomicfile.UpdateDir), other entries of dir kept. modelMaxLength
// is the model's context length (tokenizer_config's model_max_length).
//
// tokenizer.json holds a BPE model with byte_fallback over the same ids,
// with " " written as "▁" in every piece, ids 0, 1 and 2 named <unk>, <s>
// and </s>, and the normalizer, post-processor and decoder of Llama 2's own
// tokenizer.json: prepend "▁" to non-empty text and replace " " by "▁"; add
// <s> first; decode "▁" as " ", <0xNN> as its byte, and drop the first
// leading space. Its merges make Hugging Face's rank-ordered BPE merge as
// Encode does: every split of a piece into two pieces is a merge, and merges
// are ranked by the score of the piece they make, best first (then by its
// id, then by the split's position). This reproduces Encode exactly except
// where two candidate pairs of equal score differ in rank — two splits of
// one piece, or two pieces of equal score, present in a text at once: there
// Encode merges the leftmost and Hugging Face the lower rank. Text holding
// "<unk>", "<s>" or "</s>" also differs: Hugging Face reads them as the
// special tokens. docs/peft.md says what was verified.
func (t *Tokenizer) WriteHF(dir string, modelMaxLength int) error {
	tok, err := t.hfTokenizerJSON()
	if err != nil {
		return err
	}
	cfg, err := marshal(hfTokenizerConfig{
		AddBOS: true, BOS: hfBOS, EOS: hfEOS, Unk: hfUnk,
		Class: "LlamaTokenizer", Legacy: true, MaxLength: modelMaxLength,
	})
	if err != nil {
		return errors.Wrap(err, "llama2c.WriteHF: encoding tokenizer_config.json")
	}
	err = atomicfile.UpdateDir(dir, func(tmp string) error {
		if err := atomicfile.WriteBytes(filepath.Join(tmp, HFTokenizerFile), tok); err != nil {
			return err
		}
		return atomicfile.WriteBytes(filepath.Join(tmp, HFTokenizerConfigFile), cfg)
	})
	return errors.Wrap(err, "llama2c.WriteHF")
}

// hfTokenizerConfig is tokenizer_config.json.
type hfTokenizerConfig struct {
	AddBOS    bool   `json:"add_bos_token"`
	AddEOS    bool   `json:"add_eos_token"`
	BOS       string `json:"bos_token"`
	EOS       string `json:"eos_token"`
	Unk       string `json:"unk_token"`
	Class     string `json:"tokenizer_class"`
	Legacy    bool   `json:"legacy"`
	MaxLength int    `json:"model_max_length"`
}

// hfNames returns every token's name in Hugging Face's vocabulary, checking
// that the names are distinct and hold no literal "▁" (which Hugging Face's
// normalizer would not tell from a space).
func (t *Tokenizer) hfNames() ([]string, error) {
	names := make([]string, len(t.pieces))
	seen := map[string]int{}
	for id, p := range t.pieces {
		switch {
		case id == 0:
			names[id] = hfUnk
		case id == BOS:
			names[id] = hfBOS
		case id == EOS:
			names[id] = hfEOS
		case !utf8.ValidString(p):
			return nil, errors.Errorf("llama2c.WriteHF: token %d %q is not UTF-8, which tokenizer.json cannot hold", id, p)
		case strings.Contains(p, metaSpace):
			return nil, errors.Errorf("llama2c.WriteHF: token %d %q holds a literal %s, which Hugging Face's normalizer reads as a space", id, p, metaSpace)
		default:
			names[id] = strings.ReplaceAll(p, " ", metaSpace)
		}
		if other, dup := seen[names[id]]; dup {
			return nil, errors.Errorf("llama2c.WriteHF: tokens %d and %d are both %q in Hugging Face's vocabulary", other, id, names[id])
		}
		seen[names[id]] = id
	}
	return names, nil
}

// merge is one BPE merge: pieces left and right make piece id.
type merge struct {
	left, right, id int
	at              int // the split's byte offset in the piece
}

// hfMerges returns every way Encode can make a piece from two pieces, in
// the order Encode prefers them: by the made piece's score, best first.
func (t *Tokenizer) hfMerges() ([]merge, error) {
	var ms []merge
	for id, p := range t.pieces {
		s := t.scores[id]
		if t.ids[p] != id || math.IsNaN(float64(s)) || s <= neverMerges {
			continue // Encode never makes it
		}
		for at := 1; at < len(p); at++ {
			l, okL := t.ids[p[:at]]
			r, okR := t.ids[p[at:]]
			if !okL || !okR {
				continue
			}
			if special(l) || special(r) || special(id) {
				return nil, errors.Errorf("llama2c.WriteHF: token %d %q is made from tokens %d and %d, and Hugging Face's <unk>, <s> and </s> cannot take part in merges", id, p, l, r)
			}
			ms = append(ms, merge{left: l, right: r, id: id, at: at})
		}
	}
	sort.SliceStable(ms, func(i, j int) bool {
		a, b := ms[i], ms[j]
		if sa, sb := t.scores[a.id], t.scores[b.id]; sa != sb {
			return sa > sb
		}
		if a.id != b.id {
			return a.id < b.id
		}
		return a.at < b.at
	})
	return ms, nil
}

// special reports whether id is <unk>, BOS or EOS.
func special(id int) bool { return id == 0 || id == BOS || id == EOS }

// hfTokenizerJSON returns tokenizer.json's content.
func (t *Tokenizer) hfTokenizerJSON() ([]byte, error) {
	names, err := t.hfNames()
	if err != nil {
		return nil, err
	}
	ms, err := t.hfMerges()
	if err != nil {
		return nil, err
	}
	vocab := make(map[string]int, len(names))
	for id, n := range names {
		vocab[n] = id
	}
	merges := make([]string, len(ms))
	for i, m := range ms {
		// Names hold no " " (it became "▁"), so "left right" is unambiguous.
		merges[i] = names[m.left] + " " + names[m.right]
	}
	type obj = map[string]any
	str := func(s string) obj { return obj{"String": s} }
	added := []obj{}
	for _, id := range []int{0, BOS, EOS} {
		added = append(added, obj{"id": id, "content": names[id], "single_word": false, "lstrip": false,
			"rstrip": false, "normalized": false, "special": true})
	}
	bos := obj{"SpecialToken": obj{"id": hfBOS, "type_id": 0}}
	seq := func(id string, typ int) obj { return obj{"Sequence": obj{"id": id, "type_id": typ}} }
	doc := obj{
		"version":      "1.0",
		"truncation":   nil,
		"padding":      nil,
		"added_tokens": added,
		"normalizer": obj{"type": "Sequence", "normalizers": []obj{
			{"type": "Prepend", "prepend": metaSpace},
			{"type": "Replace", "pattern": str(" "), "content": metaSpace},
		}},
		"pre_tokenizer": nil,
		"post_processor": obj{
			"type":           "TemplateProcessing",
			"single":         []obj{bos, seq("A", 0)},
			"pair":           []obj{bos, seq("A", 0), {"SpecialToken": obj{"id": hfBOS, "type_id": 1}}, seq("B", 1)},
			"special_tokens": obj{hfBOS: obj{"id": hfBOS, "ids": []int{BOS}, "tokens": []string{hfBOS}}},
		},
		"decoder": obj{"type": "Sequence", "decoders": []obj{
			{"type": "Replace", "pattern": str(metaSpace), "content": " "},
			{"type": "ByteFallback"},
			{"type": "Fuse"},
			{"type": "Strip", "content": " ", "start": 1, "stop": 0},
		}},
		"model": obj{
			"type":                      "BPE",
			"dropout":                   nil,
			"unk_token":                 hfUnk,
			"continuing_subword_prefix": nil,
			"end_of_word_suffix":        nil,
			"fuse_unk":                  true,
			"byte_fallback":             true,
			"ignore_merges":             false,
			"vocab":                     vocab,
			"merges":                    merges,
		},
	}
	b, err := marshal(doc)
	return b, errors.Wrap(err, "llama2c.WriteHF: encoding tokenizer.json")
}

// marshal is indented JSON with a final newline, leaving <, > and & as they
// are (pieces such as <0x0A> stay readable).
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	err := enc.Encode(v)
	return b.Bytes(), err
}
