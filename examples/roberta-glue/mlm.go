package main

import (
	"bufio"
	"math/rand/v2"
	"os"
	"strings"

	"github.com/lilygo/lily/glue"
	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/tokenizers/bytebpe"
	"github.com/pkg/errors"
)

// BERT/RoBERTa masking: 15% of the real tokens are selected; of those, 80%
// become <mask>, 10% a random token and 10% stay as they are.
const (
	selectProb = 0.15
	maskFrac   = 0.8
	randomFrac = 0.1
)

// masker draws masked-language-model inputs and targets.
type masker struct {
	maskID    int
	special   []bool // by id: special tokens and padding, never selected
	randomIDs []int  // the ordinary tokens a selected token may become
}

// newMasker prepares masking for a tokenizer with a <mask> token.
func newMasker(tok *bytebpe.Tokenizer) (masker, error) {
	mask, ok := tok.TokenToID(bytebpe.Mask)
	if !ok {
		return masker{}, errors.New("the tokenizer has no <mask> token, which masked-language modelling needs")
	}
	m := masker{maskID: mask, special: make([]bool, tok.VocabSize())}
	for id := range m.special {
		_, used := tok.IDToToken(id)
		m.special[id] = tok.IsSpecial(id) || !used
		if !m.special[id] {
			m.randomIDs = append(m.randomIDs, id)
		}
	}
	if len(m.randomIDs) == 0 {
		return masker{}, errors.New("the tokenizer has no ordinary tokens")
	}
	return m, nil
}

// apply fills inputs and targets (each as long as ids) for one draw: a
// selected position's target is its original id and its input is <mask>, a
// random ordinary token or unchanged; every other target is IgnoreIndex. It
// returns the number of selected positions.
func (m masker) apply(rng *rand.Rand, ids, inputs, targets []int) int {
	n := 0
	for i, id := range ids {
		inputs[i], targets[i] = id, lilyop.IgnoreIndex
		if m.special[id] || rng.Float64() >= selectProb {
			continue
		}
		n++
		targets[i] = id
		switch u := rng.Float64(); {
		case u < maskFrac:
			inputs[i] = m.maskID
		case u < maskFrac+randomFrac:
			inputs[i] = m.randomIDs[rng.IntN(len(m.randomIDs))]
		}
	}
	return n
}

// packDocuments turns documents into sequences of exactly maxLen ids (the
// last one padded): the documents' tokens are concatenated with </s> between
// documents, cut into pieces of maxLen−2, and each piece is wrapped as
// <s> piece </s>, as RoBERTa's FULL-SENTENCES packing does. It also returns
// the attention masks.
func packDocuments(tok *bytebpe.Tokenizer, docs []string, maxLen int) (seqs, masks [][]int, err error) {
	if maxLen < 3 {
		return nil, nil, errors.Errorf("sequence length %d is too short to pack text", maxLen)
	}
	ids := map[string]int{}
	for _, s := range []string{bytebpe.BOS, bytebpe.EOS, bytebpe.Pad} {
		id, ok := tok.TokenToID(s)
		if !ok {
			return nil, nil, errors.Errorf("the tokenizer has no %s token", s)
		}
		ids[s] = id
	}
	var stream []int
	for _, d := range docs {
		enc := tok.Encode(d)
		if len(enc) == 0 {
			continue
		}
		if len(stream) > 0 {
			stream = append(stream, ids[bytebpe.EOS])
		}
		stream = append(stream, enc...)
	}
	body := maxLen - 2
	for start := 0; start < len(stream); start += body {
		piece := stream[start:min(start+body, len(stream))]
		seq := make([]int, maxLen)
		mask := make([]int, maxLen)
		seq[0] = ids[bytebpe.BOS]
		copy(seq[1:], piece)
		seq[1+len(piece)] = ids[bytebpe.EOS]
		for i := range seq {
			if i < len(piece)+2 {
				mask[i] = 1
			} else {
				seq[i] = ids[bytebpe.Pad]
			}
		}
		seqs = append(seqs, seq)
		masks = append(masks, mask)
	}
	return seqs, masks, nil
}

// pretrainTexts gathers the unlabeled documents: every line of textFile if
// it is set, otherwise both texts of every example of the TRAIN split of each
// GLUE task found in glueDir (dev and test splits are never read). It
// returns the documents and a description of each source.
func pretrainTexts(glueDir, textFile string) (docs, sources []string, err error) {
	if textFile != "" {
		f, err := os.Open(textFile)
		if err != nil {
			return nil, nil, errors.Wrap(err, "reading -text")
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<26)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" {
				docs = append(docs, line)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, nil, errors.Wrapf(err, "reading %s", textFile)
		}
		if len(docs) == 0 {
			return nil, nil, errors.Errorf("%s holds no text", textFile)
		}
		return docs, []string{textFile}, nil
	}
	for _, t := range glue.Tasks() {
		path, err := glue.Path(glueDir, t.Name, "train")
		if err != nil {
			return nil, nil, err
		}
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			continue
		}
		exs, err := glue.Load(glueDir, t.Name, "train")
		if err != nil {
			return nil, nil, err
		}
		for _, e := range exs {
			docs = append(docs, e.TextA)
			if t.Pair {
				docs = append(docs, e.TextB)
			}
		}
		sources = append(sources, path)
	}
	if len(docs) == 0 {
		return nil, nil, errors.Errorf("no GLUE train.tsv found under %s (expected e.g. %s/RTE/train.tsv); pass -glue_dir or -text", glueDir, glueDir)
	}
	return docs, sources, nil
}
