package bytebpe

import (
	"github.com/pkg/errors"
)

// EncodeOptions controls EncodeSingle and EncodePair. The zero value adds
// RoBERTa's special tokens and neither truncates nor pads.
type EncodeOptions struct {
	// MaxLength, when positive, is the most ids the result may hold, special
	// tokens included (padding aside). Longer input is truncated at the end;
	// for a pair, tokens come off the longer sequence first, as Hugging
	// Face's "longest_first" strategy does.
	MaxLength int
	// PadTo, when positive, pads the result with <pad> at the right up to
	// this many ids. A longer result is left as it is.
	PadTo int
	// OmitSpecialTokens leaves out <s> and </s>: a single text is encoded as
	// A and a pair as A B.
	OmitSpecialTokens bool
	// ParseSpecial makes the special tokens that appear in the input text,
	// such as "<mask>", encode to their ids instead of to the BPE tokens of
	// their characters.
	ParseSpecial bool
}

// Encoding is the result of EncodeSingle and EncodePair.
type Encoding struct {
	// IDs are the token ids.
	IDs []int
	// AttentionMask is 1 for a real token and 0 for padding.
	AttentionMask []int
	// SpecialTokensMask is 1 for the added special tokens and padding, and 0
	// for the tokens of the input text.
	SpecialTokensMask []int
	// SequenceIDs tells which input each id comes from: 0 or 1, or -1 for
	// added special tokens and padding.
	SequenceIDs []int
}

// EncodeSingle encodes one text as RoBERTa does: <s> A </s>.
func (t *Tokenizer) EncodeSingle(text string, opts EncodeOptions) (Encoding, error) {
	return t.encode([]string{text}, opts)
}

// EncodePair encodes two texts as RoBERTa does: <s> A </s></s> B </s>.
func (t *Tokenizer) EncodePair(a, b string, opts EncodeOptions) (Encoding, error) {
	return t.encode([]string{a, b}, opts)
}

func (t *Tokenizer) encode(texts []string, opts EncodeOptions) (Encoding, error) {
	if opts.MaxLength < 0 || opts.PadTo < 0 {
		return Encoding{}, errors.Errorf("bytebpe: negative MaxLength (%d) or PadTo (%d)", opts.MaxLength, opts.PadTo)
	}
	var bos, eos, pad int
	added := 0
	if !opts.OmitSpecialTokens {
		var err error
		if bos, err = t.specialID(BOS); err != nil {
			return Encoding{}, err
		}
		if eos, err = t.specialID(EOS); err != nil {
			return Encoding{}, err
		}
		added = 2
		if len(texts) == 2 {
			added = 4
		}
	}
	if opts.PadTo > 0 {
		var err error
		if pad, err = t.specialID(Pad); err != nil {
			return Encoding{}, err
		}
	}
	seqs := make([][]int, len(texts))
	for i, s := range texts {
		if opts.ParseSpecial {
			seqs[i] = t.appendEncodedSpecial(nil, s)
		} else {
			seqs[i] = t.appendEncoded(nil, s)
		}
	}
	if opts.MaxLength > 0 {
		if opts.MaxLength < added {
			return Encoding{}, errors.Errorf("bytebpe: MaxLength %d leaves no room for the %d special tokens", opts.MaxLength, added)
		}
		truncate(seqs, opts.MaxLength-added)
	}

	var e Encoding
	add := func(id, special, seq int) {
		e.IDs = append(e.IDs, id)
		e.AttentionMask = append(e.AttentionMask, 1)
		e.SpecialTokensMask = append(e.SpecialTokensMask, special)
		e.SequenceIDs = append(e.SequenceIDs, seq)
	}
	for i, seq := range seqs {
		if !opts.OmitSpecialTokens {
			if i == 0 {
				add(bos, 1, -1)
			} else {
				add(eos, 1, -1)
			}
		}
		for _, id := range seq {
			add(id, t.specialMask(id), i)
		}
		if !opts.OmitSpecialTokens {
			add(eos, 1, -1)
		}
	}
	for len(e.IDs) < opts.PadTo {
		add(pad, 1, -1)
		e.AttentionMask[len(e.AttentionMask)-1] = 0
	}
	return e, nil
}

// specialMask is 1 for special ids (which ParseSpecial lets into a sequence).
func (t *Tokenizer) specialMask(id int) int {
	if t.IsSpecial(id) {
		return 1
	}
	return 0
}

// specialID returns the id of a special token, or an error saying how to add
// it.
func (t *Tokenizer) specialID(token string) (int, error) {
	id, ok := t.vocab[token]
	if !ok {
		return 0, errors.Errorf("bytebpe: the tokenizer has no %s token; add it with AddSpecialToken", token)
	}
	return int(id), nil
}

// truncate shortens the sequences (one or two) to at most budget ids in all,
// cutting at the end. With two, it follows Hugging Face tokenizers'
// "longest_first": when the shorter one fits in half the budget only the
// longer is cut; otherwise each gets half, the longer one (or, at equal
// length, the second) taking the odd id.
func truncate(seqs [][]int, budget int) {
	if len(seqs) == 1 {
		if len(seqs[0]) > budget {
			seqs[0] = seqs[0][:budget]
		}
		return
	}
	n1, n2 := len(seqs[0]), len(seqs[1])
	if n1+n2 <= budget {
		return
	}
	swap := n1 > n2
	if swap {
		n1, n2 = n2, n1
	}
	// Now n1 <= n2.
	if n1 > budget {
		n2 = n1
	} else {
		n2 = max(n1, budget-n1)
	}
	if n1+n2 > budget {
		n1 = budget / 2
		n2 = n1 + budget%2
	}
	if swap {
		n1, n2 = n2, n1
	}
	seqs[0] = seqs[0][:min(n1, len(seqs[0]))]
	seqs[1] = seqs[1][:min(n2, len(seqs[1]))]
}

// Decode turns ids back into text. Special tokens become their own text, or
// nothing when skipSpecial is set. Ids that cut a multi-byte character apart
// give a string that is not valid UTF-8 (strings.ToValidUTF8 repairs it);
// decoding the ids of a whole text gives that text back exactly. An id
// outside the vocabulary is an error.
func (t *Tokenizer) Decode(ids []int, skipSpecial bool) (string, error) {
	n := 0
	for _, id := range ids {
		if id < 0 || id >= len(t.raw) || t.idToToken[id] == "" {
			return "", errors.Errorf("bytebpe: id %d is not in the vocabulary", id)
		}
		n += len(t.raw[id])
	}
	buf := make([]byte, 0, n)
	for _, id := range ids {
		if skipSpecial && t.special[id] {
			continue
		}
		buf = append(buf, t.raw[id]...)
	}
	return string(buf), nil
}
