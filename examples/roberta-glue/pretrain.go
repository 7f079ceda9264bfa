package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lilygo/lily/gorgoniafix"
	"github.com/lilygo/lily/graphs/roberta"
	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/internal/outdir"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/tokenizers/bytebpe"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Files a pretraining run writes besides the Hugging Face model files.
const (
	stateFile        = "trainer_state.json"
	pretrainLogFile  = "pretrain_log.json"
	pretrainPlotFile = "pretrain_loss.png"
	checkpointPrefix = "checkpoint-"
)

// calibSteps is how many steps -minutes times before fixing the step budget.
const calibSteps = 5

// zeroLR is a schedule whose learning rate is 0 at every step.
var zeroLR = train.Schedule{Warmup: 1, Total: 1}

// ptConfig is the configuration of a pretraining run.
type ptConfig struct {
	GlueDir      string  `json:"glue_dir"`
	Text         string  `json:"text"`
	Tokenizer    string  `json:"tokenizer"`
	Merges       int     `json:"merges"`
	Out          string  `json:"out"`
	MaxLen       int     `json:"max_len"`
	Hidden       int     `json:"hidden"`
	Layers       int     `json:"layers"`
	Heads        int     `json:"heads"`
	Intermediate int     `json:"intermediate"`
	Dropout      float64 `json:"dropout"`
	InitRange    float64 `json:"init_range"`
	BatchSize    int     `json:"batch_size"`
	LR           float64 `json:"lr"`
	WarmupRatio  float64 `json:"warmup_ratio"`
	WeightDecay  float64 `json:"weight_decay"`
	MaxSteps     int     `json:"max_steps"`
	Minutes      float64 `json:"minutes"`
	SaveEvery    int     `json:"save_every"`
	Seed         uint64  `json:"seed"`
	Resume       bool    `json:"-"`
	Overwrite    bool    `json:"-"`
}

// defaultPretrain holds the defaults of the pretrain flags: a 2-layer,
// 128-wide encoder trained for 30 minutes (see the package documentation
// for the measured speed and why 2 layers).
var defaultPretrain = ptConfig{Merges: 2000, Out: "runs/pretrain", MaxLen: 64, Hidden: 128, Layers: 2, Heads: 4,
	Dropout: 0.1, InitRange: 0.05, BatchSize: 32, LR: 1e-3, WarmupRatio: 0.06, WeightDecay: 0.01, Minutes: 30, SaveEvery: 1000, Seed: 42}

// pretrainHeader explains the pretrain mode for -h.
const pretrainHeader = `roberta-glue pretrain: masked-language-model pretraining of a small RoBERTa
from scratch, float32, on unlabeled text: both texts of every example of the
TRAIN split of each GLUE task found in -glue_dir (dev and test are never read),
or the lines of -text. Without -tokenizer a byte-level BPE tokenizer is trained
first (RoBERTa's special tokens <s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last).
Text is packed into sequences of -max_len ids; 15% of the tokens are selected
(80% <mask>, 10% random, 10% unchanged) afresh at every step. The MLM head's
output bias starts at the log unigram frequencies of the text.

-out becomes a Hugging Face model directory (config.json, model.safetensors
with the MLM head, vocab.json, merges.txt, trainer_state.json) that
fine-tuning reads with -model; it also gets pretrain_log.json (losses,
held-out loss and accuracy, tokens/s) and pretrain_loss.png. Checkpoints go to
-out/checkpoint-N every -save_every steps, with the log (every write of -out
is swapped in whole, so a killed run leaves complete files; only the latest
checkpoint is kept); -resume continues from the latest. An -out that holds a
finished run, an unfinished one or another kind of run is refused unless
-overwrite replaces it. The step, the random generator and the weights are
restored; AdamW's moments are not saved and restart from zero.

The defaults train a 2-layer encoder (hidden 128, 4 heads, intermediate 512,
64 positions, 0.71M parameters with a 2000-merge vocabulary, weights drawn
with standard deviation 0.05) on batches of 32 sequences at peak learning
rate 1e-3 for 30 minutes: the first 5 steps are timed at learning rate 0 and
the step budget (and so the learning-rate schedule) is fitted to -minutes,
then fitted again to the time left at every checkpoint, as the speed of a
shared machine changes. -max_steps sets a fixed budget instead. The pure-Go
and the -tags openblas builds run it at about the same speed (pretrain
-minutes 1 on the 2-core development machine, 2026-12-04: 18,550 and 16,369
tokens/s; docs/results.md has the commands); docs/results.md's 30-minute run
used -tags openblas.

Example:
  go run ./examples/roberta-glue pretrain -glue_dir ../shared/data/glue -out runs/pretrain
  go run ./examples/roberta-glue -task rte -glue_dir ../shared/data/glue -model runs/pretrain

Flags:
`

// newPretrainFlags returns the pretrain flag set bound to c.
func newPretrainFlags(c *ptConfig, out io.Writer) *flag.FlagSet {
	*c = defaultPretrain
	fs := flag.NewFlagSet("roberta-glue pretrain", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.GlueDir, "glue_dir", "", "GLUE directory whose TRAIN splits are the text (e.g. ../shared/data/glue)")
	fs.StringVar(&c.Text, "text", "", "text file, one document per line (instead of -glue_dir)")
	fs.StringVar(&c.Tokenizer, "tokenizer", "", "directory with vocab.json and merges.txt to use instead of training a tokenizer")
	fs.IntVar(&c.Merges, "merges", c.Merges, "BPE merges to learn when training the tokenizer")
	fs.StringVar(&c.Out, "out", c.Out, "output model directory")
	fs.IntVar(&c.MaxLen, "max_len", c.MaxLen, "ids per sequence, <s> and </s> included (also the model's position limit)")
	fs.IntVar(&c.Hidden, "hidden", c.Hidden, "hidden size")
	fs.IntVar(&c.Layers, "layers", c.Layers, "encoder layers")
	fs.IntVar(&c.Heads, "heads", c.Heads, "attention heads")
	fs.IntVar(&c.Intermediate, "intermediate", 0, "feed-forward width (default 4 × hidden)")
	fs.Float64Var(&c.Dropout, "dropout", c.Dropout, "hidden and attention dropout")
	fs.Float64Var(&c.InitRange, "init_range", c.InitRange, "standard deviation of the fresh weights (config.json's initializer_range; 0: Hugging Face's 0.02)")
	fs.IntVar(&c.BatchSize, "batch_size", c.BatchSize, "sequences per step")
	fs.Float64Var(&c.LR, "lr", c.LR, "peak learning rate (AdamW, betas 0.9/0.98, eps 1e-6, gradient clipping at norm 1)")
	fs.Float64Var(&c.WarmupRatio, "warmup_ratio", c.WarmupRatio, "fraction of the steps with linearly rising learning rate")
	fs.Float64Var(&c.WeightDecay, "weight_decay", c.WeightDecay, "AdamW weight decay (not applied to biases and LayerNorm weights)")
	fs.IntVar(&c.MaxSteps, "max_steps", 0, "optimiser steps; replaces the -minutes budget (default 0: use -minutes)")
	fs.Float64Var(&c.Minutes, "minutes", c.Minutes, "train for about this many minutes: the step budget is set from the speed of the first 5 steps (run at learning rate 0)")
	fs.IntVar(&c.SaveEvery, "save_every", c.SaveEvery, "write a checkpoint every N steps")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "random seed")
	fs.BoolVar(&c.Resume, "resume", false, "continue from the latest checkpoint in -out (its settings are used)")
	fs.BoolVar(&c.Overwrite, "overwrite", false, "replace -out when it holds a run (finished or not) or another kind of run")
	fs.Usage = func() {
		fmt.Fprint(out, pretrainHeader)
		fs.PrintDefaults()
	}
	return fs
}

// resumeOverrides are the flags that may change on -resume: where the data
// and the output are, and how often to save.
var resumeOverrides = map[string]bool{"glue_dir": true, "text": true, "out": true, "save_every": true, "resume": true}

// parsePretrain parses the pretrain mode's arguments.
func parsePretrain(args []string, out io.Writer) (ptConfig, map[string]bool, error) {
	var c ptConfig
	fs := newPretrainFlags(&c, out)
	if err := fs.Parse(args); err != nil {
		return c, nil, err
	}
	if fs.NArg() > 0 {
		return c, nil, errors.Errorf("pretrain: unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.Resume && c.Overwrite {
		return c, set, errors.New("pretrain: -resume continues the run in -out and -overwrite replaces it; give one of them")
	}
	if c.Resume {
		for name := range set {
			if !resumeOverrides[name] {
				return c, set, errors.Errorf("pretrain: -%s cannot change on -resume (the checkpoint's settings are used); only -glue_dir, -text, -out and -save_every may be given", name)
			}
		}
		return c, set, nil
	}
	if set["minutes"] && set["max_steps"] {
		return c, set, errors.New("pretrain: set -minutes or -max_steps, not both")
	}
	if c.MaxSteps > 0 {
		c.Minutes = 0
	}
	if c.Intermediate == 0 {
		c.Intermediate = 4 * c.Hidden
	}
	return c, set, c.validate()
}

// validate reports the first unusable setting.
func (c ptConfig) validate() error {
	switch {
	case c.GlueDir == "" && c.Text == "":
		return errors.New("pretrain: give -glue_dir (GLUE train splits) or -text (one document per line)")
	case c.Out == "":
		return errors.New("pretrain: -out is empty")
	case c.Tokenizer == "" && c.Merges < 1:
		return errors.Errorf("pretrain: -merges %d must be positive", c.Merges)
	case c.MaxLen < 8:
		return errors.Errorf("pretrain: -max_len %d is too short; use at least 8", c.MaxLen)
	case c.Hidden < 1 || c.Layers < 1 || c.Heads < 1 || c.Intermediate < 1:
		return errors.Errorf("pretrain: -hidden %d, -layers %d, -heads %d and -intermediate %d must be positive", c.Hidden, c.Layers, c.Heads, c.Intermediate)
	case c.Hidden%c.Heads != 0:
		return errors.Errorf("pretrain: -hidden %d is not divisible by -heads %d", c.Hidden, c.Heads)
	case !(c.Dropout >= 0 && c.Dropout < 1):
		return errors.Errorf("pretrain: -dropout %v must be in [0, 1)", c.Dropout)
	case !(c.InitRange >= 0 && c.InitRange < 10):
		return errors.Errorf("pretrain: -init_range %v must be in [0, 10)", c.InitRange)
	case c.BatchSize < 1:
		return errors.Errorf("pretrain: -batch_size %d must be positive", c.BatchSize)
	case !(c.LR >= 0) || math.IsInf(c.LR, 0):
		return errors.Errorf("pretrain: -lr %v must be a non-negative number", c.LR)
	case !(c.WarmupRatio >= 0 && c.WarmupRatio < 1):
		return errors.Errorf("pretrain: -warmup_ratio %v must be in [0, 1)", c.WarmupRatio)
	case !(c.WeightDecay >= 0) || math.IsInf(c.WeightDecay, 0):
		return errors.Errorf("pretrain: -weight_decay %v must be a non-negative number", c.WeightDecay)
	case c.MaxSteps < 0:
		return errors.Errorf("pretrain: -max_steps %d must be positive", c.MaxSteps)
	case c.MaxSteps == 0 && !(c.Minutes > 0 && c.Minutes < 1e6):
		return errors.Errorf("pretrain: -minutes %v must be a positive number (or set -max_steps)", c.Minutes)
	case c.SaveEvery < 1:
		return errors.Errorf("pretrain: -save_every %d must be positive", c.SaveEvery)
	}
	return nil
}

// heldOutRecord is one evaluation on the held-out sequences.
type heldOutRecord struct {
	Step     int     `json:"step"`
	Loss     float64 `json:"loss"`
	Accuracy float64 `json:"accuracy"` // of the masked-token predictions
}

// ptState is trainer_state.json: everything, besides the weights, that
// -resume needs, and the log of the run so far.
type ptState struct {
	Config       ptConfig        `json:"config"`
	Step         int             `json:"step"`
	TotalSteps   int             `json:"total_steps"`
	RNG          []byte          `json:"rng_state"` // PCG state of the masking and dropout generator
	Sequences    int             `json:"sequences"`
	HeldOut      int             `json:"held_out_sequences"`
	DataHash     string          `json:"data_hash"`
	Sources      []string        `json:"sources"`
	Losses       []float64       `json:"loss_per_step"`
	Evals        []heldOutRecord `json:"held_out"`
	Tokens       int64           `json:"tokens"` // real tokens trained on
	TrainSeconds float64         `json:"train_seconds"`
	WallSeconds  float64         `json:"wall_seconds"` // of the training loops, evaluations and saving included
	TokensPerSec float64         `json:"tokens_per_second"`
	Params       int             `json:"params"`
	Interrupted  bool            `json:"interrupted"`
	Note         string          `json:"note"`
}

// stateNote says what a checkpoint does not hold.
const stateNote = "AdamW moments are not saved: -resume restores the step, the random generator and the weights and restarts the moments from zero"

// mlmGraph is a compiled masked-language-model graph.
type mlmGraph struct {
	g       *layers.Graph
	m       *roberta.Model
	vm      G.VM
	loss    *G.Node
	targets *G.Node
	groups  []*train.Group
}

// newMLMGraph builds a [batch, seqLen] MLM graph; a training graph also
// gets the optimiser groups (decay for weights, none for biases and norms).
func newMLMGraph(store *layers.Store, cfg roberta.Config, batch, seqLen int, trainMode bool, decay, noDecay *gorgoniafix.AdamW, lr float64) (*mlmGraph, error) {
	g := store.NewGraph(trainMode)
	m, err := roberta.Build(g, cfg, nil, batch, seqLen, roberta.Options{MLM: true})
	if err != nil {
		return nil, err
	}
	mg := &mlmGraph{g: g, m: m, targets: layers.IDs(g, "mlm_targets", batch, seqLen)}
	if mg.loss, err = lilyop.CrossEntropy(m.MLMLogits, mg.targets); err != nil {
		return nil, err
	}
	if !trainMode {
		mg.vm, err = g.Machine(nil, mg.loss, m.MLMLogits)
		return mg, err
	}
	if mg.vm, err = g.Machine(mg.loss); err != nil {
		return nil, err
	}
	var dec, nodec G.Nodes
	for _, n := range g.Learnables() {
		name := n.Name()
		if strings.HasSuffix(name, ".bias") || strings.Contains(name, "LayerNorm") || strings.Contains(name, "layer_norm") {
			nodec = append(nodec, n)
		} else {
			dec = append(dec, n)
		}
	}
	mg.groups = []*train.Group{{Name: "decay", PeakLR: lr, Nodes: dec, Opt: decay}, {Name: "no_decay", PeakLR: lr, Nodes: nodec, Opt: noDecay}}
	return mg, nil
}

// modelConfig is the RoBERTa configuration of a new model.
func (c ptConfig) modelConfig(tok *bytebpe.Tokenizer) (roberta.Config, error) {
	pad, ok := tok.TokenToID(bytebpe.Pad)
	if !ok {
		return roberta.Config{}, errors.New("the tokenizer has no <pad> token")
	}
	bos, _ := tok.TokenToID(bytebpe.BOS)
	eos, _ := tok.TokenToID(bytebpe.EOS)
	mc := roberta.BaseConfig()
	mc.VocabSize, mc.HiddenSize, mc.NumHiddenLayers = tok.VocabSize(), c.Hidden, c.Layers
	mc.NumAttentionHeads, mc.IntermediateSize = c.Heads, c.Intermediate
	mc.HiddenDropoutProb, mc.AttentionProbsDropoutProb = c.Dropout, c.Dropout
	if c.InitRange > 0 {
		mc.InitializerRange = c.InitRange
	}
	mc.PadTokenID = pad
	mc.MaxPositionEmbeddings = c.MaxLen + pad + 1
	mc.Extra = map[string]json.RawMessage{
		"architectures": json.RawMessage(`["RobertaForMaskedLM"]`),
		"bos_token_id":  json.RawMessage(strconv.Itoa(bos)),
		"eos_token_id":  json.RawMessage(strconv.Itoa(eos)),
	}
	return mc, mc.Validate()
}

// trainTokenizer learns a byte-level BPE with RoBERTa's special tokens:
// <s> <pad> </s> <unk> first, <mask> after the merges.
func trainTokenizer(docs []string, merges int) (*bytebpe.Tokenizer, error) {
	tok, err := bytebpe.TrainStrings(docs, bytebpe.TrainOptions{NumMerges: merges, MinFrequency: 2,
		SpecialTokens: []string{bytebpe.BOS, bytebpe.Pad, bytebpe.EOS, bytebpe.Unk}})
	if err != nil {
		return nil, errors.Wrap(err, "training the tokenizer")
	}
	if err := tok.AddSpecialToken(bytebpe.Mask, tok.VocabSize()); err != nil {
		return nil, errors.Wrap(err, "adding <mask>")
	}
	return tok, nil
}

// dataHash fingerprints the packed sequences, so that -resume can tell that
// it reads the same data.
func dataHash(seqs [][]int) string {
	h := fnv.New64a()
	var b [8]byte
	for _, s := range seqs {
		for _, id := range s {
			for i := range b {
				b[i] = byte(uint64(id) >> (8 * i))
			}
			h.Write(b[:])
		}
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// heldOutCount is how many packed sequences are kept out of training to
// measure the MLM loss on: a tenth, at least 1 and at most 256 (16k ids at
// the default length, about 2,400 masked tokens: enough for the loss to be
// read to ±0.03).
func heldOutCount(n int) int { return max(1, min(n/10, 256)) }

// pretrainer holds a pretraining run.
type pretrainer struct {
	c        ptConfig
	cfg      roberta.Config
	tok      *bytebpe.Tokenizer
	store    *layers.Store
	mk       masker
	seqs     [][]int // training sequences
	masks    [][]int
	nHeld    int // held-out sequences, flattened with their fixed masking
	heldIn   []int
	heldTgt  []int
	heldMask []int
	pcg      *rand.PCG
	rng      *rand.Rand
	st       ptState
	perms    map[int][]int // epoch → order of the training sequences
	// trainBase is the training time of the run before a resume.
	trainBase float64
}

// pretrain runs (or resumes) MLM pretraining and writes the model directory.
// A cancelled ctx stops it after the current step, with a checkpoint.
func pretrain(ctx context.Context, c ptConfig, set map[string]bool, w io.Writer, hooks runHooks) (*ptState, error) {
	p := &pretrainer{c: c, perms: map[int][]int{}}
	var ckDir string
	if err := claimPretrainOut(c); err != nil {
		return nil, err
	}
	if c.Resume {
		dir, err := latestCheckpoint(c.Out)
		if err != nil {
			return nil, err
		}
		ckDir = dir
		if err := p.loadState(dir, set); err != nil {
			return nil, err
		}
		fmt.Fprintf(w, "resuming from %s at step %d of %d\n", dir, p.st.Step, p.st.TotalSteps)
		if p.st.TotalSteps > 0 && p.st.Step >= p.st.TotalSteps {
			fmt.Fprintln(w, "that checkpoint is the end of its run; only the held-out evaluation and the files are redone")
		}
	}
	docs, sources, err := pretrainTexts(p.c.GlueDir, p.c.Text)
	if err != nil {
		return nil, err
	}
	if err := p.setup(docs, ckDir, w); err != nil {
		return nil, err
	}
	if !c.Resume {
		p.st.Sources = sources
	}
	p.trainBase = p.st.TrainSeconds
	if err := p.run(ctx, w, hooks); err != nil {
		return nil, err
	}
	return &p.st, nil
}

// claimPretrainOut checks -out before anything is done: a new run needs a
// new or empty folder (or -overwrite) and takes it over; a resumed run
// needs a pretraining run there, whose interrupted last write is finished.
func claimPretrainOut(c ptConfig) error {
	folder := pretrainFolder(c)
	if !c.Resume {
		if err := folder.Check(); err != nil {
			return err
		}
		return folder.Claim()
	}
	if err := atomicfile.Recover(c.Out); err != nil {
		return errors.Wrap(err, "-resume")
	}
	rec, ok, err := outdir.ReadRecord(c.Out)
	if err != nil {
		return errors.Wrap(err, "-resume")
	}
	if ok && rec.Kind != kindPretrain {
		return errors.Errorf("-resume: %s holds a %s run, not a pretraining run", c.Out, rec.Kind)
	}
	return nil
}

// pretrainFolder is the run's output folder.
func pretrainFolder(c ptConfig) outdir.Folder {
	return outdir.Folder{Flag: "-out", Path: c.Out, Kind: kindPretrain, Overwrite: c.Overwrite, Resumable: true}
}

// loadState reads trainer_state.json of a checkpoint and applies the
// overrides allowed on -resume.
func (p *pretrainer) loadState(dir string, set map[string]bool) error {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return errors.Wrap(err, "reading the training state")
	}
	if err := json.Unmarshal(b, &p.st); err != nil {
		return errors.Wrapf(err, "parsing %s", filepath.Join(dir, stateFile))
	}
	cur := p.c
	p.c = p.st.Config
	p.c.Resume = true
	if set["glue_dir"] || set["text"] {
		p.c.GlueDir, p.c.Text = cur.GlueDir, cur.Text
	}
	p.c.Out = cur.Out
	if set["save_every"] {
		p.c.SaveEvery = cur.SaveEvery
	}
	p.st.Config = p.c
	p.st.Interrupted = false
	p.pcg = &rand.PCG{}
	if err := p.pcg.UnmarshalBinary(p.st.RNG); err != nil {
		return errors.Wrapf(err, "%s: random generator state", dir)
	}
	p.rng = rand.New(p.pcg)
	return nil
}

// setup prepares the tokenizer, the sequences and the model, fresh or from
// the checkpoint directory ckDir.
func (p *pretrainer) setup(docs []string, ckDir string, w io.Writer) error {
	var err error
	switch {
	case ckDir != "":
		p.tok, err = bytebpe.Load(ckDir)
	case p.c.Tokenizer != "":
		p.tok, err = bytebpe.Load(p.c.Tokenizer)
	default:
		t0 := time.Now()
		p.tok, err = trainTokenizer(docs, p.c.Merges)
		if err == nil {
			fmt.Fprintf(w, "trained a byte-level BPE tokenizer on %d documents: %d merges, vocabulary %d (%.1f s)\n", len(docs), p.tok.NumMerges(), p.tok.VocabSize(), time.Since(t0).Seconds())
		}
	}
	if err != nil {
		return err
	}
	if p.mk, err = newMasker(p.tok); err != nil {
		return err
	}
	seqs, masks, err := packDocuments(p.tok, docs, p.c.MaxLen)
	if err != nil {
		return err
	}
	if len(seqs) < 2 {
		return errors.Errorf("the text packs into %d sequence(s) of %d ids; pretraining needs at least 2", len(seqs), p.c.MaxLen)
	}
	hash := dataHash(seqs)
	if ckDir != "" && (hash != p.st.DataHash || len(seqs) != p.st.Sequences) {
		return errors.Errorf("the text now packs into %d sequences (hash %s), the checkpoint was trained on %d (hash %s): resume with the same data and tokenizer", len(seqs), hash, p.st.Sequences, p.st.DataHash)
	}
	nHeld := heldOutCount(len(seqs))
	var held, heldMasks [][]int
	stride := len(seqs) / nHeld // held-out sequences are spread over all sources
	for i := range seqs {
		if i%stride == 0 && len(held) < nHeld {
			held, heldMasks = append(held, seqs[i]), append(heldMasks, masks[i])
		} else {
			p.seqs, p.masks = append(p.seqs, seqs[i]), append(p.masks, masks[i])
		}
	}
	p.nHeld, p.heldMask = nHeld, flatten(heldMasks)
	flat := flatten(held)
	p.heldIn, p.heldTgt = make([]int, len(flat)), make([]int, len(flat))
	p.mk.apply(rand.New(rand.NewPCG(p.c.Seed, 99)), flat, p.heldIn, p.heldTgt)

	if ckDir != "" {
		ck, err := roberta.Load(ckDir, roberta.LoadOptions{LMHead: true})
		if err != nil {
			return err
		}
		p.cfg, p.store = ck.Config, ck.Store
	} else {
		if p.cfg, err = p.c.modelConfig(p.tok); err != nil {
			return err
		}
		if err := pretrainNeed(p.cfg, p.c.BatchSize, p.c.MaxLen, nHeld).Check(); err != nil {
			return errors.Wrap(err, "pretraining")
		}
		if p.store, err = layers.NewStore(tensor.Float32); err != nil {
			return err
		}
		if err := roberta.InitStore(p.store, p.cfg, p.c.Seed); err != nil {
			return err
		}
		if err := roberta.AddLMHead(p.store, p.cfg, p.c.Seed); err != nil {
			return err
		}
		if err := unigramBias(p.store, p.seqs, p.mk); err != nil {
			return err
		}
		p.pcg = rand.NewPCG(p.c.Seed, 7)
		p.rng = rand.New(p.pcg)
		p.st = ptState{Config: p.c, TotalSteps: p.c.MaxSteps, Sequences: len(seqs), HeldOut: nHeld, DataHash: hash, Note: stateNote}
	}
	if err := checkTokenizer(p.tok, p.cfg); err != nil {
		return err
	}
	p.st.Params, _ = p.store.Count()
	fmt.Fprintf(w, "%d documents → %d sequences of %d ids (%d held out); model: %d layers, hidden %d, %d heads, intermediate %d, vocabulary %d, %s parameters\n",
		len(docs), len(seqs), p.c.MaxLen, nHeld, p.cfg.NumHiddenLayers, p.cfg.HiddenSize, p.cfg.NumAttentionHeads, p.cfg.IntermediateSize, p.cfg.VocabSize, commas(p.st.Params))
	return nil
}

// seqAt returns the training sequence at global position k of the stream of
// epochs, each a fresh permutation seeded by (seed, epoch), so that a
// resumed run sees the same order.
func (p *pretrainer) seqAt(k int) int {
	n := len(p.seqs)
	epoch := k / n
	perm, ok := p.perms[epoch]
	if !ok {
		for e := range p.perms {
			if e < epoch-1 {
				delete(p.perms, e)
			}
		}
		perm = rand.New(rand.NewPCG(p.c.Seed, uint64(1000+epoch))).Perm(n)
		p.perms[epoch] = perm
	}
	return perm[k%n]
}

// run is the training loop.
func (p *pretrainer) run(ctx context.Context, w io.Writer, hooks runHooks) error {
	c := p.c
	decay := gorgoniafix.NewAdamW(gorgoniafix.WithLearnRate(c.LR), gorgoniafix.WithBetas(0.9, 0.98), gorgoniafix.WithEps(1e-6),
		gorgoniafix.WithWeightDecay(c.WeightDecay), gorgoniafix.WithClipNorm(1))
	noDecay := gorgoniafix.NewAdamW(gorgoniafix.WithLearnRate(c.LR), gorgoniafix.WithBetas(0.9, 0.98), gorgoniafix.WithEps(1e-6),
		gorgoniafix.WithWeightDecay(0), gorgoniafix.WithClipNorm(1))
	tg, err := newMLMGraph(p.store, p.cfg, c.BatchSize, c.MaxLen, true, decay, noDecay, c.LR)
	if err != nil {
		return err
	}
	defer tg.vm.Close()
	eg, err := newMLMGraph(p.store, p.cfg, p.nHeld, c.MaxLen, false, nil, nil, 0)
	if err != nil {
		return err
	}
	defer eg.vm.Close()
	if err := eg.m.SetInputs(p.heldIn, p.heldMask, nil); err != nil {
		return err
	}
	copy(eg.targets.Value().Data().([]int), p.heldTgt)

	// With a time budget (-minutes) the step budget is unknown until the
	// first calibSteps steps have been timed; they run at learning rate 0
	// (zeroLR), which only warms up AdamW's moments.
	calibrate := p.st.TotalSteps == 0
	sched := zeroLR
	if !calibrate {
		if sched, err = train.NewSchedule(p.st.TotalSteps, c.WarmupRatio); err != nil {
			return err
		}
	}
	ids := make([]int, c.BatchSize*c.MaxLen)
	mask := make([]int, len(ids))
	inputs := make([]int, len(ids))
	var progress *train.Progress
	var trainTime time.Duration
	budget := timeBudget{minutes: c.Minutes, wallBase: p.st.WallSeconds, started: time.Now(), startStep: p.st.Step}
	if !calibrate {
		progress = train.NewProgress(p.st.TotalSteps-p.st.Step, "pretrain", hooks.progress)
	} else {
		fmt.Fprintf(w, "timing %d steps to fit the run into %g minutes\n", calibSteps, c.Minutes)
	}
	for calibrate || p.st.Step < p.st.TotalSteps {
		if ctx.Err() != nil {
			p.st.Interrupted = true
			break
		}
		step := p.st.Step
		for r := 0; r < c.BatchSize; r++ {
			s := p.seqAt(step*c.BatchSize + r)
			copy(ids[r*c.MaxLen:], p.seqs[s])
			copy(mask[r*c.MaxLen:], p.masks[s])
		}
		p.mk.apply(p.rng, ids, inputs, tg.targets.Value().Data().([]int))
		if err := tg.m.SetInputs(inputs, mask, nil); err != nil {
			return err
		}
		if err := tg.g.RefillDropout(p.rng); err != nil {
			return err
		}
		t0 := time.Now()
		tg.vm.Reset()
		if err := tg.vm.RunAll(); err != nil {
			return errors.Wrapf(err, "pretraining step %d", step)
		}
		loss := scalar(tg.loss.Value())
		if err := train.CheckLoss(loss, step); err != nil {
			return err
		}
		if err := train.Step(tg.groups, sched, step); err != nil {
			return err
		}
		trainTime += time.Since(t0)
		p.st.Step++
		p.st.Losses = append(p.st.Losses, loss)
		p.st.Tokens += int64(sum(mask))
		if progress != nil {
			progress.Step("pretrain", loss, c.LR*sched.Factor(step))
		}
		if calibrate && p.st.Step-budget.startStep >= calibSteps {
			calibrate = false
			p.st.TotalSteps = budget.fit(p.st.Step)
			if sched, err = train.NewSchedule(p.st.TotalSteps, c.WarmupRatio); err != nil {
				return err
			}
			fmt.Fprintf(w, "%.0f tokens/s → %d steps in all\n", float64(p.st.Tokens)/trainTime.Seconds(), p.st.TotalSteps)
			progress = train.NewProgress(p.st.TotalSteps-p.st.Step, "pretrain", hooks.progress)
		}
		if hooks.afterStep != nil {
			hooks.afterStep(p.st.Step)
		}
		if p.st.Step%c.SaveEvery != 0 || p.st.Step >= p.st.TotalSteps {
			continue
		}
		// The machine's speed may have changed since the budget was fitted:
		// fit it again to the time left, keeping the warm-up.
		if c.Minutes > 0 && p.st.Step >= sched.Warmup {
			if total := budget.fit(p.st.Step); total != p.st.TotalSteps {
				p.st.TotalSteps, sched = total, train.Schedule{Warmup: sched.Warmup, Total: total}
				progress.Finish()
				fmt.Fprintf(w, "budget fitted again to the time left: %d steps in all\n", total)
				progress = train.NewProgress(p.st.TotalSteps-p.st.Step, "pretrain", hooks.progress)
			}
		}
		p.st.WallSeconds = budget.wall()
		if err := p.checkpoint(eg, trainTime, false, w); err != nil {
			return err
		}
	}
	if progress != nil {
		progress.Finish()
	}
	if p.st.Interrupted {
		fmt.Fprintf(w, "interrupted at step %d of %d; saving (continue with -resume)\n", p.st.Step, p.st.TotalSteps)
	}
	p.st.WallSeconds = budget.wall()
	return p.checkpoint(eg, trainTime, true, w)
}

// timeBudget fits the step budget of a -minutes run to the time left.
type timeBudget struct {
	minutes   float64
	wallBase  float64 // seconds the run took before this process (resumed runs)
	started   time.Time
	startStep int
}

// wall is the run's time so far, in seconds.
func (b timeBudget) wall() float64 { return b.wallBase + time.Since(b.started).Seconds() }

// fit returns the total steps that end the run at its time limit, at the
// speed this process has had so far; at least one more step.
func (b timeBudget) fit(step int) int {
	per := time.Since(b.started).Seconds() / float64(max(1, step-b.startStep))
	return step + max(1, int((b.minutes*60-b.wall())/per))
}

// checkpoint evaluates the held-out loss and writes a checkpoint directory;
// final also writes the model, log and plot to -out itself.
func (p *pretrainer) checkpoint(eg *mlmGraph, trainTime time.Duration, final bool, w io.Writer) error {
	rec, err := p.heldOut(eg)
	if err != nil {
		return err
	}
	if n := len(p.st.Evals); n == 0 || p.st.Evals[n-1].Step != rec.Step {
		p.st.Evals = append(p.st.Evals, rec)
	}
	p.st.TrainSeconds = p.trainBase + trainTime.Seconds()
	if p.st.TrainSeconds > 0 {
		p.st.TokensPerSec = float64(p.st.Tokens) / p.st.TrainSeconds
	}
	if p.st.RNG, err = p.pcg.MarshalBinary(); err != nil {
		return errors.Wrap(err, "saving the random generator")
	}
	fmt.Fprintf(w, "\nstep %d: held-out MLM loss %.4f, masked-token accuracy %.3f, %.0f tokens/s\n", rec.Step, rec.Loss, rec.Accuracy, p.st.TokensPerSec)
	name := fmt.Sprintf("%s%d", checkpointPrefix, p.st.Step)
	// The checkpoint, the log and (at the end) the model and the record
	// replace their namesakes in -out together; the older checkpoint goes
	// after.
	err = pretrainFolder(p.c).Update(final && !p.st.Interrupted, func(dir string) error {
		if err := p.writeModel(filepath.Join(dir, name)); err != nil {
			return err
		}
		if err := p.writeLog(dir); err != nil {
			return err
		}
		if !final {
			return nil
		}
		return p.writeModel(dir)
	})
	if err != nil {
		return err
	}
	if err := pruneCheckpoints(p.c.Out, filepath.Join(p.c.Out, name)); err != nil {
		return err
	}
	if final {
		fmt.Fprintf(w, "wrote the model to %s (use it with -model %s)\n", p.c.Out, p.c.Out)
	}
	return nil
}

// writeModel writes the Hugging Face files, the tokenizer and the state.
func (p *pretrainer) writeModel(dir string) error {
	if err := roberta.Save(dir, p.store, p.cfg); err != nil {
		return err
	}
	if err := p.tok.Save(dir); err != nil {
		return err
	}
	return train.WriteJSON(filepath.Join(dir, stateFile), &p.st)
}

// writeLog writes the JSON log and the loss plot to dir.
func (p *pretrainer) writeLog(dir string) error {
	if err := train.WriteJSON(filepath.Join(dir, pretrainLogFile), &p.st); err != nil {
		return err
	}
	var x, y []float64
	for i, l := range smooth(p.st.Losses, lossWindow) {
		x = append(x, float64(i+1))
		y = append(y, l)
	}
	var ex, ey []float64
	for _, e := range p.st.Evals {
		ex = append(ex, float64(e.Step))
		ey = append(ey, e.Loss)
	}
	return train.Plot(filepath.Join(dir, pretrainPlotFile), "MLM pretraining", "step", "cross-entropy",
		train.Series{Name: fmt.Sprintf("training loss (mean of %d steps)", lossWindow), X: x, Y: y},
		train.Series{Name: "held-out loss", X: ex, Y: ey})
}

// heldOut computes the MLM loss and masked-token accuracy on the held-out
// sequences with their fixed masking.
func (p *pretrainer) heldOut(eg *mlmGraph) (heldOutRecord, error) {
	eg.vm.Reset()
	if err := eg.vm.RunAll(); err != nil {
		return heldOutRecord{}, errors.Wrap(err, "held-out evaluation")
	}
	logits := eg.m.MLMLogits.Value().Data().([]float32)
	v := p.cfg.VocabSize
	right, n := 0, 0
	for i, t := range p.heldTgt {
		if t == lilyop.IgnoreIndex {
			continue
		}
		row := logits[i*v : (i+1)*v]
		best := 0
		for j, x := range row {
			if x > row[best] {
				best = j
			}
		}
		n++
		if best == t {
			right++
		}
	}
	rec := heldOutRecord{Step: p.st.Step, Loss: scalar(eg.loss.Value())}
	if n > 0 {
		rec.Accuracy = float64(right) / float64(n)
	}
	return rec, nil
}

// latestCheckpoint returns the checkpoint directory with the highest step
// under out.
func latestCheckpoint(out string) (string, error) {
	entries, err := os.ReadDir(out)
	if errors.Is(err, os.ErrNotExist) {
		return "", errors.Errorf("-resume: %s does not exist; there is no run to continue", out)
	}
	if err != nil {
		return "", errors.Wrap(err, "-resume: reading the output directory")
	}
	best, bestStep := "", -1
	for _, e := range entries {
		s, ok := strings.CutPrefix(e.Name(), checkpointPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		if n, err := strconv.Atoi(s); err == nil && n > bestStep {
			best, bestStep = filepath.Join(out, e.Name()), n
		}
	}
	if best == "" {
		return "", errors.Errorf("-resume: no %sN directory in %s", checkpointPrefix, out)
	}
	return best, nil
}

// pruneCheckpoints removes every checkpoint directory under out except keep.
func pruneCheckpoints(out, keep string) error {
	entries, err := os.ReadDir(out)
	if err != nil {
		return errors.Wrap(err, "listing checkpoints")
	}
	var old []string
	for _, e := range entries {
		if p := filepath.Join(out, e.Name()); e.IsDir() && strings.HasPrefix(e.Name(), checkpointPrefix) && p != keep {
			old = append(old, p)
		}
	}
	sort.Strings(old)
	for _, d := range old {
		if err := os.RemoveAll(d); err != nil {
			return errors.Wrap(err, "removing an old checkpoint")
		}
	}
	return nil
}

// flatten concatenates rows.
func flatten(rows [][]int) []int {
	var out []int
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

// smooth returns the running mean of the last k values at each position.
func smooth(v []float64, k int) []float64 {
	out := make([]float64, len(v))
	s := 0.0
	for i, x := range v {
		s += x
		if i >= k {
			s -= v[i-k]
		}
		out[i] = s / float64(min(i+1, k))
	}
	return out
}

// commas formats n with thousands separators.
func commas(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// lmBiasName is the store name of the MLM head's output bias.
const lmBiasName = "lm_head.bias"

// unigramBias sets the MLM head's output bias to the log-frequencies of the
// ordinary tokens in seqs (add-one smoothed; special tokens get the
// smoothing mass only). A fresh model then starts at the unigram loss
// instead of having to learn it: otherwise the quickest way down that slope
// is to make every hidden state the same vector whose decoding is the
// unigram distribution, a collapse that a short pretraining does not leave.
func unigramBias(s *layers.Store, seqs [][]int, mk masker) error {
	p, ok := s.Get(lmBiasName)
	if !ok {
		return errors.Errorf("the store has no %s", lmBiasName)
	}
	counts := make([]float64, p.Value.Shape().TotalSize())
	total := 0.0
	for _, seq := range seqs {
		for _, id := range seq {
			if id < len(mk.special) && !mk.special[id] {
				counts[id]++
				total++
			}
		}
	}
	norm := math.Log(total + float64(len(counts)))
	setFloats(p.Value, func(i int) float64 { return math.Log(counts[i]+1) - norm })
	return nil
}
