package bytebpe

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/pkg/errors"
)

// LoadTokenizerJSON reads a tokenizer from a Hugging Face tokenizer.json, the
// single-file format of the tokenizers library, in which GPT-2, RoBERTa,
// GPT-NeoX (Pythia, Mamba) and LLaMA 3 checkpoints ship their byte-level BPE.
//
// What it reads:
//
//   - model: its type must be "BPE"; model.vocab is the vocabulary (token to
//     id, checked as vocab.json is) and model.merges the merges in rank
//     order, each either "a b" (older files) or ["a", "b"] (tokenizers 0.20
//     and later). continuing_subword_prefix and end_of_word_suffix must be
//     empty and dropout unset or 0, since each would change the
//     tokenization; unk_token and byte_fallback do not matter to byte-level
//     BPE, which has a token for every byte, and are ignored. ignore_merges
//     true (LLaMA 3's) is followed: a pre-token that is itself in the
//     vocabulary becomes that token without merges.
//   - pre_tokenizer: must be ByteLevel with use_regex true (the default),
//     alone or as the only member of a Sequence (GPT-2's pattern), or
//     LLaMA 3's Sequence of a Split by Llama3Pattern (behavior Isolated)
//     and a ByteLevel with use_regex false; anything else means the file is
//     not byte-level BPE split as GPT-2 or LLaMA 3 split text, and is an
//     error. add_prefix_space must be false (for GPT-2's form, given and
//     false): this package has no such option (prepend the space to the
//     text yourself instead).
//   - normalizer: none, or NFC (GPT-NeoX's). The Tokenizer does not
//     normalize, so to get the ids of the tokenizers library, pass text that
//     is already in NFC, as most text is. Any other normalizer is an error.
//   - added_tokens: each {"id", "content", "special"} keeps the id the file
//     gives it. One that model.vocab holds must have the same id there; one
//     that model.vocab lacks is registered with AddSpecialToken. A token
//     marked special must not be one that BPE can produce.
//
// post_processor, decoder, truncation and padding are not read: Encode adds
// no special tokens, EncodeSingle and EncodePair use RoBERTa's template, and
// Decode is byte-level decoding.
//
// Added tokens that BPE cannot produce become special tokens as this
// package defines them (see the package documentation), even when the file
// marks them "special": false, as GPT-NeoX's runs of spaces are: plain
// Encode never produces them, EncodeOptions.ParseSpecial recognizes them in
// the text (which is what the tokenizers library always does for added
// tokens), and Decode with skipSpecial drops them. An added token with
// "special": false that BPE can produce stays an ordinary token; the
// tokenizers library would split it out of the text before BPE, so ids
// around it can differ. The lstrip, rstrip, single_word and normalized flags
// are ignored, as they are for vocab.json.
//
// Errors name the file, and the line where there is one.
func LoadTokenizerJSON(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errors.Wrap(err, "bytebpe: reading tokenizer.json")
	}
	return parseTokenizerJSON(data, path)
}

// span is the byte range [start, end) of a JSON value in a file.
type span struct{ start, end int64 }

// jsonFile is a JSON file being read: its bytes and the name errors give it.
type jsonFile struct {
	data []byte
	name string
}

// fail makes an error naming the file and the line of byte offset off.
func (f jsonFile) fail(off int64, format string, args ...any) error {
	return errors.Errorf("bytebpe: %s:%d: "+format, append([]any{f.name, lineAt(f.data, off)}, args...)...)
}

// jsonErr turns an error of a decoder reading data[base:] into one naming the
// line.
func (f jsonFile) jsonErr(dec *json.Decoder, base int64, err error) error {
	off := dec.InputOffset()
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		off = syn.Offset
	}
	return f.fail(base+off, "malformed JSON: %v", err)
}

// valueErr turns the error of decoding the value that starts at byte
// start into one naming its line. The offsets in a json.Decoder's syntax
// errors count only the bytes read by Decode, not by Token, so the value is
// scanned again on its own to find where it goes wrong.
func (f jsonFile) valueErr(start, end int64, err error) error {
	off := start
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		var raw json.RawMessage
		if err2 := json.NewDecoder(bytes.NewReader(f.data[start:end])).Decode(&raw); errors.As(err2, &syn) {
			off = start + syn.Offset
		}
	} else if errors.Is(err, io.ErrUnexpectedEOF) {
		off = end
	}
	return f.fail(off, "malformed JSON: %v", err)
}

// decoder reads the JSON value at sp.
func (f jsonFile) decoder(sp span) *json.Decoder {
	return json.NewDecoder(bytes.NewReader(f.data[sp.start:sp.end]))
}

// skipTo returns the offset of the first byte of data[off:end] that is not
// JSON whitespace or one of the separators in seps.
func (f jsonFile) skipTo(off, end int64, seps string) int64 {
	for off < end && strings.IndexByte(" \t\r\n"+seps, f.data[off]) >= 0 {
		off++
	}
	return off
}

// object reads the JSON object at sp and returns the span of each member's
// value. what names the object in errors. A key given twice is an error, as
// in the tokenizers library.
func (f jsonFile) object(sp span, what string) (map[string]span, error) {
	dec := f.decoder(sp)
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, f.fail(sp.start, "%s: empty file", what)
	}
	if err != nil {
		return nil, f.jsonErr(dec, sp.start, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, f.fail(sp.start, "%s: want a JSON object, not %s", what, jsonValueString(tok))
	}
	members := make(map[string]span)
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, f.jsonErr(dec, sp.start, err)
		}
		key := kt.(string) // inside an object, Token returns keys as strings
		keyEnd := sp.start + dec.InputOffset()
		if _, dup := members[key]; dup {
			return nil, f.fail(keyEnd, "%s: key %q is listed twice", what, key)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, f.valueErr(f.skipTo(keyEnd, sp.end, ":"), sp.end, err)
		}
		end := sp.start + dec.InputOffset()
		members[key] = span{f.skipTo(keyEnd, end, ":"), end}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, f.jsonErr(dec, sp.start, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, f.fail(sp.start+dec.InputOffset(), "%s: data after the JSON object", what)
	}
	return members, nil
}

// isNull reports whether the value at sp is JSON null.
func (f jsonFile) isNull(sp span) bool {
	return string(f.data[sp.start:sp.end]) == "null"
}

// unmarshal decodes the value at sp into v; what names it in errors.
func (f jsonFile) unmarshal(sp span, v any, what string) error {
	if err := json.Unmarshal(f.data[sp.start:sp.end], v); err != nil {
		return f.fail(sp.start, "%s: %v", what, err)
	}
	return nil
}

// array calls each with the span of every element of the JSON array at sp.
func (f jsonFile) array(sp span, what string, each func(i int, el span) error) error {
	dec := f.decoder(sp)
	tok, err := dec.Token()
	if err != nil {
		return f.jsonErr(dec, sp.start, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return f.fail(sp.start, "%s: want a JSON array, not %s", what, jsonValueString(tok))
	}
	for i := 0; dec.More(); i++ {
		before := sp.start + dec.InputOffset()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return f.valueErr(f.skipTo(before, sp.end, ","), sp.end, err)
		}
		end := sp.start + dec.InputOffset()
		if err := each(i, span{f.skipTo(before, end, ","), end}); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing bracket
		return f.jsonErr(dec, sp.start, err)
	}
	return nil
}

// brief shows at most 40 bytes of a JSON value in an error.
func brief(raw []byte) string {
	if len(raw) > 40 {
		return string(raw[:40]) + "…"
	}
	return string(raw)
}

// hfComponent is the part of a pre_tokenizer or normalizer that matters here.
type hfComponent struct {
	Type           string            `json:"type"`
	AddPrefixSpace *bool             `json:"add_prefix_space"`
	UseRegex       *bool             `json:"use_regex"`
	PreTokenizers  []json.RawMessage `json:"pretokenizers"`
	Normalizers    []json.RawMessage `json:"normalizers"`
}

// notByteLevel is the end of the errors about pre-tokenizers.
const notByteLevel = "this tokenizer is not byte-level BPE as GPT-2 and RoBERTa do it (want a ByteLevel pre_tokenizer)"

// checkPreTokenizer returns the number of ByteLevel pre-tokenizers in raw,
// or an error when raw holds anything else or a ByteLevel this package
// cannot follow.
func checkPreTokenizer(raw []byte) (int, error) {
	var c hfComponent
	if err := json.Unmarshal(raw, &c); err != nil {
		return 0, errors.Errorf("malformed pre_tokenizer %s: %v", brief(raw), err)
	}
	switch c.Type {
	case "ByteLevel":
		if c.AddPrefixSpace == nil {
			// The tokenizers library requires the field; its default is true.
			return 0, errors.New(`pre_tokenizer ByteLevel lacks "add_prefix_space"; set it to false`)
		}
		if *c.AddPrefixSpace {
			return 0, errors.New(`pre_tokenizer ByteLevel has "add_prefix_space": true, which this package does not support (Encode would differ for text that does not start with a space); prepend the space to the text instead`)
		}
		if c.UseRegex != nil && !*c.UseRegex {
			return 0, errors.New(`pre_tokenizer ByteLevel has "use_regex": false, so the text is not split by GPT-2's pattern; ` + notByteLevel)
		}
		return 1, nil
	case "Sequence":
		n := 0
		for _, p := range c.PreTokenizers {
			k, err := checkPreTokenizer(p)
			if err != nil {
				return 0, err
			}
			n += k
		}
		return n, nil
	case "":
		return 0, errors.Errorf("pre_tokenizer %s has no type; %s", brief(raw), notByteLevel)
	}
	return 0, errors.Errorf("pre_tokenizer %s is not supported; %s", c.Type, notByteLevel)
}

// checkNormalizer returns an error unless raw is an NFC normalizer or a
// Sequence of them.
func checkNormalizer(raw []byte) error {
	var c hfComponent
	if err := json.Unmarshal(raw, &c); err != nil {
		return errors.Errorf("malformed normalizer %s: %v", brief(raw), err)
	}
	switch c.Type {
	case "NFC":
		return nil
	case "Sequence":
		for _, n := range c.Normalizers {
			if err := checkNormalizer(n); err != nil {
				return err
			}
		}
		return nil
	case "":
		return errors.Errorf("normalizer %s has no type", brief(raw))
	}
	return errors.Errorf("normalizer %s is not supported: this package does not normalize text (only NFC, which leaves NFC text as it is, is accepted)", c.Type)
}

// isLlama3PreTokenizer reports whether raw is LLaMA 3's pre_tokenizer: a
// Sequence of a Split by Llama3Pattern (behavior Isolated, not inverted)
// and a ByteLevel without its own regex or prefix space. A Split by another
// pattern is an error; anything else is not LLaMA 3's (false, no error).
func isLlama3PreTokenizer(raw []byte) (bool, error) {
	var seq struct {
		Type          string            `json:"type"`
		PreTokenizers []json.RawMessage `json:"pretokenizers"`
	}
	if json.Unmarshal(raw, &seq) != nil || seq.Type != "Sequence" || len(seq.PreTokenizers) == 0 {
		return false, nil
	}
	var split struct {
		Type    string `json:"type"`
		Pattern struct {
			Regex  *string `json:"Regex"`
			String *string `json:"String"`
		} `json:"pattern"`
		Behavior string `json:"behavior"`
		Invert   bool   `json:"invert"`
	}
	if json.Unmarshal(seq.PreTokenizers[0], &split) != nil || split.Type != "Split" {
		return false, nil
	}
	switch {
	case split.Pattern.Regex == nil || *split.Pattern.Regex != Llama3Pattern:
		return false, errors.Errorf("pre_tokenizer Split by %s is not supported (only LLaMA 3's pattern, Llama3Pattern, then ByteLevel with use_regex false); %s", brief(seq.PreTokenizers[0]), notByteLevel)
	case split.Behavior != "Isolated" || split.Invert:
		return false, errors.Errorf("pre_tokenizer Split by LLaMA 3's pattern with behavior %q and invert %t is not supported (want Isolated, false)", split.Behavior, split.Invert)
	case len(seq.PreTokenizers) != 2:
		return false, errors.Errorf("pre_tokenizer: LLaMA 3's Split must be followed by exactly one ByteLevel, not %d pre-tokenizers", len(seq.PreTokenizers)-1)
	}
	var bl hfComponent
	if err := json.Unmarshal(seq.PreTokenizers[1], &bl); err != nil || bl.Type != "ByteLevel" {
		return false, errors.Errorf("pre_tokenizer: LLaMA 3's Split is followed by %s, not ByteLevel", brief(seq.PreTokenizers[1]))
	}
	if bl.AddPrefixSpace != nil && *bl.AddPrefixSpace {
		return false, errors.New(`pre_tokenizer ByteLevel has "add_prefix_space": true, which this package does not support; prepend the space to the text instead`)
	}
	if bl.UseRegex == nil || *bl.UseRegex {
		return false, errors.New(`pre_tokenizer: the ByteLevel after LLaMA 3's Split must have "use_regex": false (else GPT-2's pattern would split the pieces again)`)
	}
	return true, nil
}

// addedToken is one entry of added_tokens.
type addedToken struct {
	id      int
	content string
	special bool
	off     int64 // where the entry starts in the file
}

// parseTokenizerJSON builds a tokenizer from the bytes of a tokenizer.json;
// name labels errors.
func parseTokenizerJSON(data []byte, name string) (*Tokenizer, error) {
	f := jsonFile{data, name}
	top, err := f.object(span{0, int64(len(data))}, "tokenizer.json")
	if err != nil {
		return nil, err
	}
	modelSpan, ok := top["model"]
	if !ok || f.isNull(modelSpan) {
		return nil, errors.Errorf(`bytebpe: %s: no "model": not a Hugging Face tokenizer.json`, name)
	}
	model, err := f.object(modelSpan, "model")
	if err != nil {
		return nil, err
	}

	// The model's type first, so that a WordPiece or Unigram file says so.
	typeSpan, ok := model["type"]
	if !ok {
		return nil, f.fail(modelSpan.start, `the model has no "type"; want "BPE"`)
	}
	var typ string
	if err := f.unmarshal(typeSpan, &typ, "model.type"); err != nil {
		return nil, err
	}
	if typ != "BPE" {
		return nil, f.fail(typeSpan.start, "the model is %s, not BPE: this package reads byte-level BPE only", strconv.Quote(typ))
	}
	ignoreMerges, err := f.checkModelOptions(model)
	if err != nil {
		return nil, err
	}

	pre, ok := top["pre_tokenizer"]
	if !ok || f.isNull(pre) {
		return nil, errors.Errorf("bytebpe: %s: no pre_tokenizer; %s", name, notByteLevel)
	}
	llama3, err := isLlama3PreTokenizer(data[pre.start:pre.end])
	if err != nil {
		return nil, f.fail(pre.start, "%v", err)
	}
	if !llama3 {
		n, err := checkPreTokenizer(data[pre.start:pre.end])
		if err != nil {
			return nil, f.fail(pre.start, "%v", err)
		}
		if n != 1 {
			return nil, f.fail(pre.start, "pre_tokenizer has %d ByteLevel members, not 1; %s", n, notByteLevel)
		}
	}
	if norm, ok := top["normalizer"]; ok && !f.isNull(norm) {
		if err := checkNormalizer(data[norm.start:norm.end]); err != nil {
			return nil, f.fail(norm.start, "%v", err)
		}
	}

	vocabSpan, ok := model["vocab"]
	if !ok {
		return nil, f.fail(modelSpan.start, `the model has no "vocab"`)
	}
	vocab, err := parseVocabSpan(data, vocabSpan, name, "model.vocab: ")
	if err != nil {
		return nil, err
	}
	mergesSpan, ok := model["merges"]
	if !ok {
		return nil, f.fail(modelSpan.start, `the model has no "merges"`)
	}
	merges, mergeOffs, err := f.merges(mergesSpan)
	if err != nil {
		return nil, err
	}
	var added []addedToken
	if sp, ok := top["added_tokens"]; ok && !f.isNull(sp) {
		if added, err = f.addedTokens(sp); err != nil {
			return nil, err
		}
	}

	t, err := newTokenizer(vocab, merges, func(i int, err error) error {
		if i < 0 {
			return errors.Wrapf(err, "bytebpe: %s:%d: model.vocab", name, lineAt(data, vocabSpan.start))
		}
		return errors.Wrapf(err, "bytebpe: %s:%d: model.merges[%d]", name, lineAt(data, mergeOffs[i]), i)
	})
	if err != nil {
		return nil, err
	}
	t.llama3 = llama3
	if ignoreMerges {
		t.ignoreMerges = true
		listed := map[string]bool{}
		for _, a := range added {
			listed[a.content] = true
		}
		t.markSpecialsExcept(listed)
	}
	if err := f.registerAdded(t, vocab, added); err != nil {
		return nil, err
	}
	return t, nil
}

// checkModelOptions rejects BPE options that would make the tokenization
// differ from GPT-2's, except ignore_merges, which it returns.
func (f jsonFile) checkModelOptions(model map[string]span) (ignoreMerges bool, err error) {
	if sp, ok := model["dropout"]; ok && !f.isNull(sp) {
		var p float64
		if err := f.unmarshal(sp, &p, "model.dropout"); err != nil {
			return false, err
		}
		if p != 0 {
			return false, f.fail(sp.start, "model.dropout is %v: BPE dropout is not supported", p)
		}
	}
	for _, key := range []string{"continuing_subword_prefix", "end_of_word_suffix"} {
		if sp, ok := model[key]; ok && !f.isNull(sp) {
			var s string
			if err := f.unmarshal(sp, &s, "model."+key); err != nil {
				return false, err
			}
			if s != "" {
				return false, f.fail(sp.start, "model.%s is %q: not supported by byte-level BPE", key, s)
			}
		}
	}
	if sp, ok := model["ignore_merges"]; ok && !f.isNull(sp) {
		var b bool
		if err := f.unmarshal(sp, &b, "model.ignore_merges"); err != nil {
			return false, err
		}
		ignoreMerges = b
	}
	return ignoreMerges, nil
}

// merges reads model.merges, in either format, with the offset of each.
func (f jsonFile) merges(sp span) (pairs [][2]string, offs []int64, err error) {
	err = f.array(sp, "model.merges", func(i int, el span) error {
		raw := f.data[el.start:el.end]
		var pair [2]string
		switch raw[0] {
		case '"':
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return f.fail(el.start, "model.merges[%d]: %v", i, err)
			}
			parts := strings.Split(s, " ")
			if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
				return f.fail(el.start, "model.merges[%d]: malformed merge %q: want two tokens separated by a space", i, s)
			}
			pair = [2]string{parts[0], parts[1]}
		case '[':
			var p []string
			if err := json.Unmarshal(raw, &p); err != nil || len(p) != 2 {
				return f.fail(el.start, `model.merges[%d]: malformed merge %s: want two strings, ["a", "b"]`, i, brief(raw))
			}
			pair = [2]string{p[0], p[1]}
		default:
			return f.fail(el.start, `model.merges[%d]: malformed merge %s: want "a b" or ["a", "b"]`, i, brief(raw))
		}
		pairs = append(pairs, pair)
		offs = append(offs, el.start)
		return nil
	})
	return pairs, offs, err
}

// addedTokens reads added_tokens.
func (f jsonFile) addedTokens(sp span) ([]addedToken, error) {
	var out []addedToken
	err := f.array(sp, "added_tokens", func(i int, el span) error {
		var e struct {
			ID      json.RawMessage `json:"id"`
			Content *string         `json:"content"`
			Special *bool           `json:"special"`
		}
		raw := f.data[el.start:el.end]
		if raw[0] != '{' {
			return f.fail(el.start, "added_tokens[%d]: want a JSON object, not %s", i, brief(raw))
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return f.fail(el.start, "added_tokens[%d]: %v", i, err)
		}
		if len(e.ID) == 0 || string(e.ID) == "null" {
			return f.fail(el.start, `added_tokens[%d]: no "id"`, i)
		}
		id, err := strconv.ParseInt(string(e.ID), 10, 64)
		if err != nil || id < 0 || id >= maxID {
			return f.fail(el.start, "added_tokens[%d]: id %s is not an integer in [0, %d)", i, brief(e.ID), maxID)
		}
		if e.Content == nil {
			return f.fail(el.start, `added_tokens[%d]: no "content"`, i)
		}
		if *e.Content == "" {
			return f.fail(el.start, "added_tokens[%d]: the empty string is not a valid token", i)
		}
		out = append(out, addedToken{id: int(id), content: *e.Content, special: e.Special != nil && *e.Special, off: el.start})
		return nil
	})
	return out, err
}

// registerAdded checks the added tokens against the vocabulary and registers
// those it lacks as special tokens.
func (f jsonFile) registerAdded(t *Tokenizer, vocab map[string]int, added []addedToken) error {
	byID := make(map[int]string)
	byContent := make(map[string]int)
	for _, a := range added {
		if id, ok := byContent[a.content]; ok {
			if id != a.id {
				return f.fail(a.off, "added token %q is listed with ids %d and %d", a.content, id, a.id)
			}
			continue // listed twice alike: registered already
		}
		if c, ok := byID[a.id]; ok {
			return f.fail(a.off, "added tokens %q and %q share id %d", c, a.content, a.id)
		}
		byContent[a.content] = a.id
		byID[a.id] = a.content
		if vid, ok := vocab[a.content]; ok {
			if vid != a.id {
				return f.fail(a.off, "added token %q has id %d, but model.vocab gives it id %d", a.content, a.id, vid)
			}
			if a.special && !t.IsSpecial(vid) {
				return f.fail(a.off, "added token %q (id %d) is marked special, but BPE can produce it (it is a byte or a merge result), so this package cannot keep it apart", a.content, a.id)
			}
			continue // a token of the vocabulary: nothing to add
		}
		if other, ok := t.IDToToken(a.id); ok {
			return f.fail(a.off, "added token %q has id %d, which model.vocab gives to %q", a.content, a.id, other)
		}
		if err := t.AddSpecialToken(a.content, a.id); err != nil {
			return errors.Wrapf(err, "bytebpe: %s:%d: added token", f.name, lineAt(f.data, a.off))
		}
	}
	return nil
}
