package bytebpe

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/pkg/errors"
)

// File names of the three layouts Load understands.
const (
	VocabFile         = "vocab.json"     // Hugging Face (RoBERTa) vocabulary
	MergesFile        = "merges.txt"     // Hugging Face (RoBERTa) merges
	GPT2VocabFile     = "encoder.json"   // OpenAI GPT-2 vocabulary
	GPT2MergesFile    = "vocab.bpe"      // OpenAI GPT-2 merges
	TokenizerJSONFile = "tokenizer.json" // Hugging Face tokenizers' single file
)

// Load reads a tokenizer from dir, looking for the layouts in this order:
//
//  1. vocab.json and merges.txt (the Hugging Face layout, as RoBERTa ships)
//     when vocab.json exists;
//  2. otherwise GPT-2's encoder.json and vocab.bpe when encoder.json exists;
//  3. otherwise tokenizer.json, the single file of Hugging Face's tokenizers
//     library (see LoadTokenizerJSON), when it exists.
//
// The first layout whose first file exists is the one read: a missing
// merges.txt beside vocab.json is an error even when tokenizer.json is
// there too. With none of the three it returns an error wrapping
// os.ErrNotExist.
func Load(dir string) (*Tokenizer, error) {
	dir = atomicfile.Resolve(dir)
	hf := filepath.Join(dir, VocabFile)
	if _, err := os.Stat(hf); err == nil {
		return LoadFiles(hf, filepath.Join(dir, MergesFile))
	}
	gpt2 := filepath.Join(dir, GPT2VocabFile)
	if _, err := os.Stat(gpt2); err == nil {
		return LoadFiles(gpt2, filepath.Join(dir, GPT2MergesFile))
	}
	single := filepath.Join(dir, TokenizerJSONFile)
	if _, err := os.Stat(single); err == nil {
		return LoadTokenizerJSON(single)
	}
	return nil, errors.Wrapf(os.ErrNotExist, "bytebpe: %s holds neither %s nor %s nor %s", dir, VocabFile, GPT2VocabFile, TokenizerJSONFile)
}

// LoadFiles reads a tokenizer from a JSON vocabulary (an object from token to
// id) and a merges file (one merge a line: two tokens separated by a space,
// in rank order; a first line starting with "#version" is skipped, as are
// empty lines). Errors name the file and, where there is one, the line.
func LoadFiles(vocabPath, mergesPath string) (*Tokenizer, error) {
	vocab, err := readVocab(vocabPath)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(mergesPath)
	if err != nil {
		return nil, errors.Wrap(err, "bytebpe: reading merges")
	}
	defer f.Close()
	return fromReaders(vocab, vocabPath, f, mergesPath)
}

// readVocab reads and parses a JSON vocabulary file.
func readVocab(path string) (map[string]int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errors.Wrap(err, "bytebpe: reading vocabulary")
	}
	return parseVocab(data, path)
}

// parseVocab parses a JSON vocabulary, an object from token to id; name
// labels errors, which give the line. Besides malformed JSON it rejects ids
// that are not integers in [0, 2^24), the empty token, a token listed twice
// and an id given to two tokens.
func parseVocab(data []byte, name string) (map[string]int, error) {
	return parseVocabSpan(data, span{0, int64(len(data))}, name, "")
}

// parseVocabSpan is parseVocab of the JSON value data[sp.start:sp.end]; the
// lines in errors are those of data, and where (empty, or "model.vocab: ")
// follows the line in every message.
func parseVocabSpan(data []byte, sp span, name, where string) (map[string]int, error) {
	dec := json.NewDecoder(bytes.NewReader(data[sp.start:sp.end]))
	dec.UseNumber()
	fail := func(off int64, format string, args ...any) error {
		return errors.Errorf("bytebpe: %s:%d: "+where+format, append([]any{name, lineAt(data, sp.start+off)}, args...)...)
	}
	jsonErr := func(err error) error {
		off := dec.InputOffset()
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			off = syn.Offset
		}
		return fail(off, "malformed vocabulary: %v", err)
	}
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, fail(0, "malformed vocabulary: empty file")
	}
	if err != nil {
		return nil, jsonErr(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fail(dec.InputOffset(), "malformed vocabulary: want a JSON object from token to id")
	}
	vocab := make(map[string]int)
	owner := make(map[int]string)
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, jsonErr(err)
		}
		key := kt.(string) // inside an object, Token returns keys as strings
		line := dec.InputOffset()
		vt, err := dec.Token()
		if err != nil {
			return nil, jsonErr(err)
		}
		num, ok := vt.(json.Number)
		if !ok {
			return nil, fail(line, "token %q: the id is %v, not a number", key, jsonValueString(vt))
		}
		id64, err := num.Int64()
		if err != nil || id64 < 0 || id64 >= maxID {
			return nil, fail(line, "token %q: id %s is not an integer in [0, %d)", key, num, maxID)
		}
		id := int(id64)
		if key == "" {
			return nil, fail(line, "the empty string is not a valid token")
		}
		if _, dup := vocab[key]; dup {
			return nil, fail(line, "token %q is listed twice", key)
		}
		if other, dup := owner[id]; dup {
			return nil, fail(line, "tokens %q and %q share id %d", other, key, id)
		}
		vocab[key] = id
		owner[id] = key
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, jsonErr(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fail(dec.InputOffset(), "malformed vocabulary: data after the JSON object")
	}
	return vocab, nil
}

// jsonValueString describes a JSON token in an error.
func jsonValueString(v json.Token) string {
	switch v := v.(type) {
	case json.Delim:
		return "a JSON " + map[json.Delim]string{'{': "object", '[': "array"}[v]
	case string:
		return fmt.Sprintf("the string %q", v)
	case nil:
		return "null"
	}
	return fmt.Sprint(v)
}

// lineAt is the 1-based line holding byte offset off of data.
func lineAt(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	return bytes.Count(data[:off], []byte{'\n'}) + 1
}

// fromReaders builds a tokenizer from a parsed vocabulary and a merges
// stream; vocabName and mergesName label errors.
func fromReaders(vocab map[string]int, vocabName string, merges io.Reader, mergesName string) (*Tokenizer, error) {
	data, err := io.ReadAll(merges)
	if err != nil {
		return nil, errors.Wrapf(err, "bytebpe: reading %s", mergesName)
	}
	pairs, lines, err := parseMerges(string(data), mergesName)
	if err != nil {
		return nil, err
	}
	return newTokenizer(vocab, pairs, func(i int, err error) error {
		if i < 0 {
			return errors.Wrapf(err, "bytebpe: %s", vocabName)
		}
		return errors.Wrapf(err, "bytebpe: %s:%d", mergesName, lines[i])
	})
}

// parseMerges splits a merges file into pairs, with the line of each.
func parseMerges(data, name string) (pairs [][2]string, lines []int, err error) {
	lineNo := 0
	for len(data) > 0 {
		lineNo++
		line := data
		if i := strings.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = ""
		}
		line = strings.TrimSuffix(line, "\r")
		if lineNo == 1 && strings.HasPrefix(line, "#version") {
			continue
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, nil, errors.Errorf("bytebpe: %s:%d: malformed merge %q: want two tokens separated by a space", name, lineNo, line)
		}
		pairs = append(pairs, [2]string{f[0], f[1]})
		lines = append(lines, lineNo)
	}
	return pairs, lines, nil
}
