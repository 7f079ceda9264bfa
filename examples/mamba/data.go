package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/lilygo/lily/glue"
	"github.com/lilygo/lily/tokenizers/bytebpe"
	"github.com/pkg/errors"
)

// EndOfText separates documents in the token streams; a tokenizer trained
// here has it as id 0, as GPT-NeoX's (the tokenizer of the Mamba
// checkpoints) does.
const EndOfText = "<|endoftext|>"

// dataSeed seeds every split and sample of the documents, so that all runs
// see the same text whatever -seed and -seeds say.
const dataSeed = 0x6c696c79

// Seeds of the synthetic corpora: the source, the target's training and its
// held-out documents.
const (
	synthSourceSeed     = 11
	synthTargetSeed     = 22
	synthTargetEvalSeed = 33
)

// corpus is the text of one experiment, as documents.
type corpus struct {
	// Synthetic is true for the built-in made-up languages.
	Synthetic bool `json:"synthetic"`
	// Source and SourceEval are the pretraining documents and those held
	// out from pretraining (empty with -model).
	Source     []string `json:"-"`
	SourceEval []string `json:"-"`
	// Target and TargetEval are the adaptation documents and the held-out
	// documents every perplexity is measured on.
	Target     []string `json:"-"`
	TargetEval []string `json:"-"`
	// SourceName and TargetName say where the text comes from.
	SourceName string `json:"source"`
	TargetName string `json:"target"`
}

// loadCorpus reads (or generates) the documents c names.
func loadCorpus(c config) (corpus, error) {
	var out corpus
	var err error
	if c.synthetic() {
		out.Synthetic = true
		n := c.SynthDocs
		out.SourceName = fmt.Sprintf("synthetic English-like language, %d documents (seed %d)", n, synthSourceSeed)
		out.TargetName = fmt.Sprintf("synthetic verb-final language, %d training documents (seed %d) and %d held-out (seed %d)", n, synthTargetSeed, n/10, synthTargetEvalSeed)
		if c.Model == "" {
			out.Source = synthDocs(n, synthSourceSeed, enSentence)
		}
		out.Target = synthDocs(n, synthTargetSeed, kaSentence)
		out.TargetEval = synthDocs(max(1, n/10), synthTargetEvalSeed, kaSentence)
	} else {
		if out, err = loadSource(c); err != nil {
			return out, err
		}
		if err = loadTarget(c, &out); err != nil {
			return out, err
		}
	}
	if len(out.Source) > 0 {
		out.Source = sample(out.Source, c.MaxSourceDocs)
		if out.SourceEval, out.Source, err = split(out.Source, c.HeldOut); err != nil {
			return out, errors.Wrap(err, "holding out source documents")
		}
	}
	out.Target = sample(out.Target, c.MaxTargetDocs)
	if len(out.Target) == 0 || len(out.TargetEval) == 0 {
		return out, errors.Errorf("the target text has %d training and %d held-out documents; both must be non-empty", len(out.Target), len(out.TargetEval))
	}
	return out, nil
}

// loadSource reads the pretraining documents from -source or -source_tasks.
func loadSource(c config) (corpus, error) {
	var out corpus
	switch {
	case c.Source != "":
		docs, err := readLines(c.Source)
		if err != nil {
			return out, err
		}
		out.Source, out.SourceName = docs, c.Source
	case c.SourceTasks != "":
		var names []string
		for _, task := range splitList(c.SourceTasks) {
			if c.TargetTask != "" && sameTask(task, c.TargetTask) {
				return out, errors.Errorf("-source_tasks includes the target task %s; pretrain on other tasks", c.TargetTask)
			}
			split := "train"
			if !hasSplit(c.GlueDir, task, split) {
				split = "dev"
			}
			exs, err := glue.Load(c.GlueDir, task, split)
			if err != nil {
				return out, errors.Wrapf(err, "reading the source task %s", task)
			}
			out.Source = append(out.Source, texts(exs)...)
			names = append(names, fmt.Sprintf("%s %s", task, split))
		}
		out.SourceName = "GLUE sentences of " + strings.Join(names, ", ") + " in " + c.GlueDir
	}
	return out, nil
}

// loadTarget reads the adaptation and held-out documents into out.
func loadTarget(c config, out *corpus) error {
	var err error
	switch {
	case c.TargetTask != "":
		if hasSplit(c.GlueDir, c.TargetTask, "train") {
			if out.Target, err = taskTexts(c.GlueDir, c.TargetTask, "train"); err != nil {
				return err
			}
			if out.TargetEval, err = taskTexts(c.GlueDir, c.TargetTask, "dev"); err != nil {
				return err
			}
			out.TargetName = fmt.Sprintf("GLUE %s sentences: train for adaptation, dev held out", c.TargetTask)
			return nil
		}
		docs, err := taskTexts(c.GlueDir, c.TargetTask, "dev")
		if err != nil {
			return err
		}
		out.TargetName = fmt.Sprintf("GLUE %s dev sentences (no train split): %g held out", c.TargetTask, c.HeldOut)
		out.TargetEval, out.Target, err = split(docs, c.HeldOut)
		return err
	case c.TargetEval != "":
		if out.Target, err = readLines(c.Target); err != nil {
			return err
		}
		out.TargetEval, err = readLines(c.TargetEval)
		out.TargetName = fmt.Sprintf("%s (held out: %s)", c.Target, c.TargetEval)
		return err
	default:
		docs, err := readLines(c.Target)
		if err != nil {
			return err
		}
		out.TargetName = fmt.Sprintf("%s (%g held out)", c.Target, c.HeldOut)
		out.TargetEval, out.Target, err = split(docs, c.HeldOut)
		return err
	}
}

// sameTask reports whether two GLUE task names denote the same task.
func sameTask(a, b string) bool {
	ta, errA := glue.Lookup(a)
	tb, errB := glue.Lookup(b)
	return errA == nil && errB == nil && ta.Name == tb.Name
}

// hasSplit reports whether the task's split file exists in glueDir.
func hasSplit(glueDir, task, split string) bool {
	p, err := glue.Path(glueDir, task, split)
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}

// taskTexts returns every text of a GLUE split.
func taskTexts(glueDir, task, split string) ([]string, error) {
	exs, err := glue.Load(glueDir, task, split)
	if err != nil {
		return nil, errors.Wrapf(err, "reading %s %s", task, split)
	}
	return texts(exs), nil
}

// texts returns the non-empty texts of examples: both texts of a pair.
func texts(exs []glue.Example) []string {
	var out []string
	for _, e := range exs {
		for _, s := range []string{e.TextA, e.TextB} {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// readLines reads a text file with one document per line, skipping blank
// lines.
func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errors.Wrap(err, "reading documents")
	}
	defer f.Close()
	var docs []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<26)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			docs = append(docs, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, errors.Wrapf(err, "reading %s", path)
	}
	if len(docs) == 0 {
		return nil, errors.Errorf("%s has no documents (one per line)", filepath.Clean(path))
	}
	return docs, nil
}

// split holds out round(frac·n) documents, at least 1, chosen by a shuffle
// seeded with dataSeed; both parts keep the original order.
func split(docs []string, frac float64) (held, rest []string, err error) {
	k := max(1, int(frac*float64(len(docs))+0.5))
	if len(docs) < 2 || k >= len(docs) {
		return nil, nil, errors.Errorf("%d documents cannot be split into held-out and training parts", len(docs))
	}
	chosen := map[int]bool{}
	for _, i := range rand.New(rand.NewPCG(dataSeed, uint64(len(docs)))).Perm(len(docs))[:k] {
		chosen[i] = true
	}
	for i, d := range docs {
		if chosen[i] {
			held = append(held, d)
		} else {
			rest = append(rest, d)
		}
	}
	return held, rest, nil
}

// sample returns at most n documents (all when n is 0), a seeded sample in
// the original order.
func sample(docs []string, n int) []string {
	if n == 0 || n >= len(docs) {
		return docs
	}
	_, kept, _ := split(docs, 1-float64(n)/float64(len(docs)))
	return kept
}

// trainTokenizer learns a byte-level BPE vocabulary from the pretraining
// documents, with EndOfText as id 0.
func trainTokenizer(docs []string, merges int) (*bytebpe.Tokenizer, error) {
	tok, err := bytebpe.TrainStrings(docs, bytebpe.TrainOptions{NumMerges: max(1, merges), MinFrequency: 2, SpecialTokens: []string{EndOfText}})
	return tok, errors.Wrap(err, "training the tokenizer")
}

// tokenStream encodes the documents into one stream, each followed by eos.
func tokenStream(tok *bytebpe.Tokenizer, docs []string, eos int) []int {
	var out []int
	for _, d := range docs {
		out = append(out, tok.Encode(d)...)
		out = append(out, eos)
	}
	return out
}

// windows draws training batches from a token stream.
type windows struct {
	stream []int
	seqLen int
}

// batch fills ids and labels ([batch, seqLen] row-major) with batch windows
// starting at random positions: labels are the tokens that follow.
func (w windows) batch(rng *rand.Rand, ids, labels []int) {
	for r := 0; r < len(ids)/w.seqLen; r++ {
		s := rng.IntN(len(w.stream) - w.seqLen)
		copy(ids[r*w.seqLen:(r+1)*w.seqLen], w.stream[s:])
		copy(labels[r*w.seqLen:(r+1)*w.seqLen], w.stream[s+1:])
	}
}

// newWindows checks that the stream holds at least one window and its
// labels.
func newWindows(stream []int, seqLen int, what string) (windows, error) {
	if len(stream) < seqLen+1 {
		return windows{}, errors.Errorf("the %s text has %d tokens, fewer than one window of -seq_len %d plus one", what, len(stream), seqLen)
	}
	return windows{stream: stream, seqLen: seqLen}, nil
}
