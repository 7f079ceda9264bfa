package main

import (
	"bufio"
	"math/rand/v2"
	"os"
	"sort"
	"strings"

	"github.com/lilygo/lily/glue"
	"github.com/lilygo/lily/graphs/llama"
	"github.com/pkg/errors"
)

// padMultiple is what batch lengths are rounded up to, bounding the number
// of distinct graph shapes to about maxLen/padMultiple per batch size.
const padMultiple = 8

// chunkBatches is how many batches' worth of shuffled sentences are sorted
// by length together before being cut into batches: enough for little
// padding, few enough that batches still mix lengths across chunks.
const chunkBatches = 20

// corpus is the tokenized training and held-out text.
type corpus struct {
	source      string  // where the text came from, for the output
	train, eval [][]int // BOS + tokens, at most max_len ids each
	trainTokens int     // ids in train
	// base is the held-out result of the untrained model, once a run has
	// computed it. Every run starts from it: adapters start at zero (B = 0),
	// which leaves the outputs bit for bit unchanged, and full fine-tuning
	// starts from the checkpoint.
	base *evalResult
}

// readTexts returns the training and held-out texts c asks for: one
// example per line of -train_file and -eval_file, or the sentences (for a
// pair task both texts joined by a space) of a GLUE task's train and dev
// splits. -train_examples and -eval_examples keep the first examples.
func readTexts(c ftConfig) (trainText, evalText []string, source string, err error) {
	if c.TrainFile != "" {
		if trainText, err = readLines(c.TrainFile); err != nil {
			return nil, nil, "", err
		}
		if evalText, err = readLines(c.EvalFile); err != nil {
			return nil, nil, "", err
		}
		source = "lines of " + c.TrainFile + " (held out: " + c.EvalFile + ")"
	} else {
		if trainText, err = glueTexts(c.GlueDir, c.GlueTask, "train"); err != nil {
			return nil, nil, "", err
		}
		if evalText, err = glueTexts(c.GlueDir, c.GlueTask, "dev"); err != nil {
			return nil, nil, "", err
		}
		source = c.GlueTask + " train sentences of " + c.GlueDir + " (held out: its dev sentences)"
	}
	if c.TrainExamples > 0 && c.TrainExamples < len(trainText) {
		trainText = trainText[:c.TrainExamples]
	}
	if c.EvalExamples > 0 && c.EvalExamples < len(evalText) {
		evalText = evalText[:c.EvalExamples]
	}
	return trainText, evalText, source, nil
}

// glueTexts reads the texts of one split of a GLUE task.
func glueTexts(dir, task, split string) ([]string, error) {
	exs, err := glue.Load(dir, task, split)
	if err != nil {
		return nil, errors.Wrapf(err, "reading %s %s", task, split)
	}
	out := make([]string, len(exs))
	for i, e := range exs {
		out[i] = strings.TrimSpace(e.TextA + " " + e.TextB)
	}
	return out, nil
}

// readLines returns the non-blank lines of a text file.
func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errors.Wrap(err, "reading text")
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			out = append(out, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, errors.Wrapf(err, "reading %s", path)
	}
	return out, nil
}

// encodeTexts tokenizes every text with BOS first and no EOS (as llama2.c's
// TinyStories data is), truncated to maxLen ids. Blank texts are skipped.
func encodeTexts(tok llama.Tokenizer, texts []string, maxLen int) ([][]int, error) {
	out := make([][]int, 0, len(texts))
	for i, s := range texts {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		ids, err := tok.Encode(s, true, false)
		if err != nil {
			return nil, errors.Wrapf(err, "tokenizing text %d", i+1)
		}
		out = append(out, ids[:min(len(ids), maxLen)])
	}
	return out, nil
}

// corpusKey is what a corpus depends on.
type corpusKey struct {
	checkpoint, tokenizer, glueDir, glueTask, trainFile, evalFile string
	trainExamples, evalExamples, maxLen, batchSize                int
	baseDtype                                                     string // the base model's held-out result depends on it
}

// corpusCache keeps tokenized corpora (and the base model's held-out result)
// for the runs of a sweep, which read the same text; a nil cache keeps
// nothing.
type corpusCache map[corpusKey]*corpus

// loadCorpus reads and tokenizes the text c asks for, or takes it from cache.
func loadCorpus(c ftConfig, tok llama.Tokenizer, cache corpusCache) (*corpus, error) {
	key := corpusKey{c.Checkpoint, c.Tokenizer, c.GlueDir, c.GlueTask, c.TrainFile, c.EvalFile, c.TrainExamples, c.EvalExamples, c.MaxLen, c.BatchSize, c.BaseDtype}
	if d, ok := cache[key]; ok {
		return d, nil
	}
	trainText, evalText, source, err := readTexts(c)
	if err != nil {
		return nil, err
	}
	d := &corpus{source: source}
	if d.train, err = encodeTexts(tok, trainText, c.MaxLen); err != nil {
		return nil, errors.Wrap(err, "training text")
	}
	if d.eval, err = encodeTexts(tok, evalText, c.MaxLen); err != nil {
		return nil, errors.Wrap(err, "held-out text")
	}
	if len(d.train) < c.BatchSize {
		return nil, errors.Errorf("%d training texts, fewer than one batch of %d", len(d.train), c.BatchSize)
	}
	if len(d.eval) == 0 {
		return nil, errors.New("no held-out text")
	}
	for _, s := range d.train {
		d.trainTokens += len(s)
	}
	if cache != nil {
		cache[key] = d
	}
	return d, nil
}

// paddedLen is the graph length for a batch whose longest sequence has n
// ids: n rounded up to a multiple of padMultiple, at most maxLen.
func paddedLen(n, maxLen int) int {
	return min((n+padMultiple-1)/padMultiple*padMultiple, maxLen)
}

// gather returns the sequences idx and the padded length of their batch.
func gather(seqs [][]int, idx []int, maxLen int) ([][]int, int) {
	out := make([][]int, len(idx))
	longest := 0
	for r, i := range idx {
		out[r] = seqs[i]
		longest = max(longest, len(seqs[i]))
	}
	return out, paddedLen(longest, maxLen)
}

// predicted counts the tokens a batch predicts: all but the first of each
// sequence.
func predicted(batch [][]int) int {
	n := 0
	for _, s := range batch {
		n += max(len(s)-1, 0)
	}
	return n
}

// lengths returns the lengths of the sequences.
func lengths(seqs [][]int) []int {
	out := make([]int, len(seqs))
	for i, s := range seqs {
		out[i] = len(s)
	}
	return out
}

// batcher draws training batches of exactly size sequences, epoch after
// epoch: each epoch is shuffled, sorted by length within chunks of
// chunkBatches batches, cut into batches (the last size-incomplete rest of
// the epoch is dropped) and the batches are shuffled.
type batcher struct {
	lengths []int
	size    int
	rng     *rand.Rand
	queue   [][]int
}

// newBatcher returns a batcher over sequences of the given lengths
// (at least size of them).
func newBatcher(lengths []int, size int, rng *rand.Rand) *batcher {
	return &batcher{lengths: lengths, size: size, rng: rng}
}

// next returns the indices of the next batch.
func (b *batcher) next() []int {
	if len(b.queue) == 0 {
		b.queue = b.epoch()
	}
	idx := b.queue[0]
	b.queue = b.queue[1:]
	return idx
}

// epoch returns one epoch of full batches.
func (b *batcher) epoch() [][]int {
	perm := b.rng.Perm(len(b.lengths))
	perm = perm[:len(perm)/b.size*b.size]
	chunk := b.size * chunkBatches
	var out [][]int
	for start := 0; start < len(perm); start += chunk {
		part := perm[start:min(start+chunk, len(perm))]
		sort.SliceStable(part, func(i, j int) bool { return b.lengths[part[i]] < b.lengths[part[j]] })
		for s := 0; s < len(part); s += b.size {
			out = append(out, part[s:s+b.size])
		}
	}
	b.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// evalBatches cuts the sequences, sorted by length (ties by position), into
// batches of at most size: a fixed order, so every evaluation sees the same
// batches (which matters for Lily's batch routing).
func evalBatches(lengths []int, size int) [][]int {
	order := make([]int, len(lengths))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return lengths[order[i]] < lengths[order[j]] })
	var out [][]int
	for s := 0; s < len(order); s += size {
		out = append(out, order[s:min(s+size, len(order))])
	}
	return out
}
