// Package llama2c reads the tokenizer files of Andrej Karpathy's llama2.c
// (tokenizer.bin, tok512.bin, ...) and encodes and decodes text exactly as
// llama2.c's run.c does: a SentencePiece-style BPE driven by piece scores,
// with byte-fallback tokens <0x00>..<0xFF>, BOS = 1 and EOS = 2. (Unlike
// the C code, which reads C strings, a NUL byte does not end the text.)
//
// WriteHF converts the vocabulary to a Hugging Face tokenizer.json that
// encodes as Encode does.
//
// The file format is an int32 max_token_length followed, for every token in
// id order, by a float32 score, an int32 byte length and the piece's bytes
// (all little-endian).
package llama2c

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"strconv"

	"github.com/pkg/errors"
)

// Special token ids of llama2.c's vocabularies.
const (
	// BOS begins every sequence.
	BOS = 1
	// EOS ends a sequence.
	EOS = 2
)

// Tokenizer is a loaded llama2.c vocabulary. It is safe for concurrent use.
type Tokenizer struct {
	pieces         []string
	scores         []float32
	maxTokenLength int
	ids            map[string]int // piece → lowest id holding it
	byteIDs        [256]int       // id of "<0xNN>", or -1
}

// Load reads a llama2.c tokenizer file.
func Load(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errors.Wrap(err, "llama2c")
	}
	t, err := Parse(data)
	return t, errors.Wrap(err, path)
}

// Parse reads a whole llama2.c tokenizer file held in memory; the vocabulary
// size is the number of entries in the file.
func Parse(data []byte) (*Tokenizer, error) {
	if len(data) < 4 {
		return nil, errors.New("llama2c: tokenizer file shorter than its 4-byte header")
	}
	t := &Tokenizer{maxTokenLength: int(int32(binary.LittleEndian.Uint32(data))), ids: map[string]int{}}
	if t.maxTokenLength < 0 {
		return nil, errors.Errorf("llama2c: negative max_token_length %d", t.maxTokenLength)
	}
	for off := 4; off < len(data); {
		id := len(t.pieces)
		if len(data)-off < 8 {
			return nil, errors.Errorf("llama2c: token %d: truncated entry at byte %d", id, off)
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
		n := int(int32(binary.LittleEndian.Uint32(data[off+4:])))
		off += 8
		if n < 0 || n > len(data)-off {
			return nil, errors.Errorf("llama2c: token %d: length %d at byte %d exceeds the file", id, n, off-4)
		}
		piece := string(data[off : off+n])
		off += n
		t.pieces = append(t.pieces, piece)
		t.scores = append(t.scores, score)
		if _, dup := t.ids[piece]; !dup {
			t.ids[piece] = id
		}
	}
	if len(t.pieces) <= EOS {
		return nil, errors.Errorf("llama2c: vocabulary of %d tokens lacks BOS and EOS", len(t.pieces))
	}
	for b := range t.byteIDs {
		id, ok := t.ids[fmt.Sprintf("<0x%02X>", b)]
		if !ok {
			id = -1
		}
		t.byteIDs[b] = id
	}
	return t, nil
}

// VocabSize is the number of tokens.
func (t *Tokenizer) VocabSize() int { return len(t.pieces) }

// MaxTokenLength is the header's longest piece length.
func (t *Tokenizer) MaxTokenLength() int { return t.maxTokenLength }

// Piece returns token id's string and score.
func (t *Tokenizer) Piece(id int) (string, float32, error) {
	if id < 0 || id >= len(t.pieces) {
		return "", 0, errors.Errorf("llama2c: token %d outside [0, %d)", id, len(t.pieces))
	}
	return t.pieces[id], t.scores[id], nil
}

// BOS returns the begin-of-sequence id, 1.
func (t *Tokenizer) BOS() int { return BOS }

// EOS returns the end-of-sequence id, 2.
func (t *Tokenizer) EOS() int { return EOS }

// Encode tokenizes text as llama2.c does: BOS first if bos is set; a dummy
// prefix " " before non-empty text; every UTF-8 character (a lead byte and
// up to three continuation bytes) as its piece, or as byte-fallback tokens
// when the vocabulary lacks it; then, repeatedly, the adjacent pair whose
// concatenation is the highest-scoring piece (the leftmost on ties) is
// merged; EOS last if eos is set. It fails when a byte has no fallback
// token or the vocabulary lacks the " " piece.
func (t *Tokenizer) Encode(text string, bos, eos bool) ([]int, error) {
	var toks []int
	if bos {
		toks = append(toks, BOS)
	}
	start := len(toks)
	if text != "" {
		id, ok := t.ids[" "]
		if !ok {
			return nil, errors.New("llama2c: the vocabulary has no \" \" piece for the dummy prefix")
		}
		toks = append(toks, id)
	}
	for i := 0; i < len(text); {
		j := i + 1
		for j < len(text) && j-i < 4 && text[j]&0xC0 == 0x80 {
			j++
		}
		if id, ok := t.ids[text[i:j]]; ok {
			toks = append(toks, id)
		} else {
			for k := i; k < j; k++ {
				id := t.byteIDs[text[k]]
				if id < 0 {
					return nil, errors.Errorf("llama2c: byte 0x%02X has no <0x%02X> fallback token", text[k], text[k])
				}
				toks = append(toks, id)
			}
		}
		i = j
	}
	merged := t.merge(toks[start:])
	toks = append(toks[:start], merged...)
	if eos {
		toks = append(toks, EOS)
	}
	return toks, nil
}

// merge applies BPE merges by score until no adjacent pair forms a piece.
func (t *Tokenizer) merge(toks []int) []int {
	for {
		// llama2.c starts from −1e10, so lower-scoring pieces never merge.
		best, bestID, bestAt := float32(-1e10), -1, -1
		for i := 0; i+1 < len(toks); i++ {
			id, ok := t.ids[t.pieces[toks[i]]+t.pieces[toks[i+1]]]
			if ok && t.scores[id] > best {
				best, bestID, bestAt = t.scores[id], id, i
			}
		}
		if bestAt < 0 {
			return toks
		}
		toks[bestAt] = bestID
		toks = append(toks[:bestAt+1], toks[bestAt+2:]...)
	}
}

// Decode returns the text of token id following token prev, as llama2.c
// prints it: a byte-fallback piece <0xNN> is the byte itself, and a leading
// space is dropped right after BOS.
func (t *Tokenizer) Decode(prev, id int) (string, error) {
	if id < 0 || id >= len(t.pieces) {
		return "", errors.Errorf("llama2c: token %d outside [0, %d)", id, len(t.pieces))
	}
	p := t.pieces[id]
	if prev == BOS && len(p) > 0 && p[0] == ' ' {
		p = p[1:]
	}
	if len(p) == 6 && p[:3] == "<0x" && p[5] == '>' {
		if b, err := strconv.ParseUint(p[3:5], 16, 8); err == nil {
			return string([]byte{byte(b)}), nil
		}
	}
	return p, nil
}

// DecodeAll returns the text of ids[1:], each decoded after its
// predecessor, as llama2.c prints a generated sequence that starts with
// ids[0] (usually BOS).
func (t *Tokenizer) DecodeAll(ids []int) (string, error) {
	var out []byte
	for i := 1; i < len(ids); i++ {
		s, err := t.Decode(ids[i-1], ids[i])
		if err != nil {
			return "", err
		}
		out = append(out, s...)
	}
	return string(out), nil
}
