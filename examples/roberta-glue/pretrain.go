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
	"strconv"
	"strings"
	"time"

	"github.com/lilygo/lily/dataparallel"
	"github.com/lilygo/lily/gorgoniafix"
	"github.com/lilygo/lily/graphs/roberta"
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
	pretrainLogFile  = "pretrain_log.json"
	pretrainPlotFile = "pretrain_loss.png"
)

// calibSteps is how many forward and backward passes -minutes times before
// fixing the step budget.
const calibSteps = 5

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
	MaxSteps     int     `json:"max_steps"` // with -minutes: the fitted budget
	Minutes      float64 `json:"minutes"`
	Seed         uint64  `json:"seed"`
	Overwrite    bool    `json:"-"`
	train.Flags
}

// defaultPretrain holds the defaults of the pretrain flags: a 2-layer,
// 128-wide encoder trained for 30 minutes (see the package documentation
// for the measured speed and why 2 layers).
var defaultPretrain = ptConfig{Merges: 2000, Out: "runs/pretrain", MaxLen: 64, Hidden: 128, Layers: 2, Heads: 4,
	Dropout: 0.1, InitRange: 0.05, BatchSize: 32, LR: 1e-3, WarmupRatio: 0.06, WeightDecay: 0.01, Minutes: 30, Seed: 42,
	Flags: train.Flags{GradAccum: 1, SaveEvery: 1000}}

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
with the MLM head, vocab.json, merges.txt) that fine-tuning reads with -model;
it also gets pretrain_log.json (losses, held-out loss and accuracy, tokens/s)
and pretrain_loss.png. Every -save_every steps the held-out loss is measured
and a checkpoint is written to -out/checkpoint (weights, AdamW's moments, the
log; every write of -out is swapped in whole, so a killed run leaves complete
files), and when the run is stopped. -resume continues the run in -out from
its checkpoint exactly: the same losses, evaluations and weights as a run
that was never stopped. On -resume the run's settings are read from -out;
only -glue_dir, -text (the same text, elsewhere), -out and -save_every may
be given. An -out that holds a finished run, an unfinished one or another
kind of run is refused unless -overwrite replaces it. Each optimiser step
trains on -batch_size × -grad_accum × MPI ranks sequences: built with -tags
mpi and started with mpirun -np N, the ranks share every batch (all weights
train; the whole gradient is reduced) and rank 0 writes.

The defaults train a 2-layer encoder (hidden 128, 4 heads, intermediate 512,
64 positions, 0.71M parameters with a 2000-merge vocabulary, weights drawn
with standard deviation 0.05) on batches of 32 sequences at peak learning
rate 1e-3 for 30 minutes: 5 forward and backward passes are timed before
training (their gradients are dropped) and the step budget (and so the
learning-rate schedule) is fitted once to -minutes. The fitted budget is
one of the run's settings, so -resume keeps it: a resumed run is exact but
does not fit its budget again to the time left, and ends when the budget is
spent, earlier or later than -minutes says. -max_steps sets a fixed budget
instead. The pure-Go and the -tags openblas builds run it at about the same
speed (pretrain -minutes 1 on the 2-core development machine, 2026-12-04:
18,550 and 16,369 tokens/s; docs/results.md has the commands);
docs/results.md's 30-minute run used -tags openblas.

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
	fs.IntVar(&c.BatchSize, "batch_size", c.BatchSize, "sequences per micro-batch (an optimiser step trains on batch_size × grad_accum × MPI ranks)")
	fs.Float64Var(&c.LR, "lr", c.LR, "peak learning rate (AdamW, betas 0.9/0.98, eps 1e-6, gradient clipping at norm 1)")
	fs.Float64Var(&c.WarmupRatio, "warmup_ratio", c.WarmupRatio, "fraction of the steps with linearly rising learning rate")
	fs.Float64Var(&c.WeightDecay, "weight_decay", c.WeightDecay, "AdamW weight decay (not applied to biases and LayerNorm weights)")
	fs.IntVar(&c.MaxSteps, "max_steps", 0, "optimiser steps; replaces the -minutes budget (default 0: use -minutes)")
	fs.Float64Var(&c.Minutes, "minutes", c.Minutes, "train for about this many minutes: the step budget is fitted once, before training, from the time of 5 forward and backward passes (kept on -resume)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "random seed")
	c.Flags.Register(fs)
	fs.Lookup("save_every").Usage = "measure the held-out loss and write a checkpoint into -out every N optimiser steps (0: only when interrupted); -resume continues from it"
	fs.Lookup("resume").Usage = "continue the unfinished run in -out from its checkpoint, exactly as if it had not stopped (its settings are read from -out)"
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
				return c, set, errors.Errorf("pretrain: -%s cannot change on -resume (the run's settings are read from -out); only -glue_dir, -text, -out and -save_every may be given", name)
			}
		}
		return c, set, errors.Wrap(c.Flags.Check(), "pretrain")
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
	case c.Flags.Check() != nil:
		return errors.Wrap(c.Flags.Check(), "pretrain")
	}
	return nil
}

// heldOutRecord is one evaluation on the held-out sequences.
type heldOutRecord struct {
	Step     int     `json:"step"`
	Loss     float64 `json:"loss"`
	Accuracy float64 `json:"accuracy"` // of the masked-token predictions
}

// ptState is pretrain_log.json: the run's settings (read back on -resume),
// its data and the log of the run so far.
type ptState struct {
	Config       ptConfig        `json:"config"`
	Step         int             `json:"step"`
	TotalSteps   int             `json:"total_steps"`
	Sequences    int             `json:"sequences"`
	HeldOut      int             `json:"held_out_sequences"`
	DataHash     string          `json:"data_hash"`
	Sources      []string        `json:"sources"`
	Losses       []float64       `json:"loss_per_step"`
	Evals        []heldOutRecord `json:"held_out"`
	Tokens       int64           `json:"tokens"` // real tokens trained on, all ranks
	TrainSeconds float64         `json:"train_seconds"`
	EvalSeconds  float64         `json:"eval_seconds"`
	WallSeconds  float64         `json:"wall_seconds"` // of every process of the run, set-up and saving included
	TokensPerSec float64         `json:"tokens_per_second"`
	Params       int             `json:"params"`
	Interrupted  bool            `json:"interrupted"`
	Ranks        int             `json:"mpi_ranks"`
	// ResumedFrom is the step a -resume continued from (0: not resumed).
	ResumedFrom int `json:"resumed_from,omitempty"`
}

// mlmGraph is a compiled masked-language-model graph.
type mlmGraph struct {
	g       *layers.Graph
	m       *roberta.Model
	vm      G.VM
	loss    *G.Node
	targets *G.Node
}

// newMLMGraph builds a [batch, seqLen] MLM graph.
func newMLMGraph(store *layers.Store, cfg roberta.Config, batch, seqLen int, trainMode bool) (*mlmGraph, error) {
	g := store.NewGraph(trainMode)
	m, err := roberta.Build(g, cfg, nil, batch, seqLen, roberta.Options{MLM: true})
	if err != nil {
		return nil, err
	}
	mg := &mlmGraph{g: g, m: m, targets: layers.IDs(g, "mlm_targets", batch, seqLen)}
	if mg.loss, err = lilyop.CrossEntropy(m.MLMLogits, mg.targets); err != nil {
		return nil, err
	}
	if trainMode {
		mg.vm, err = g.Machine(mg.loss)
	} else {
		mg.vm, err = g.Machine(nil, mg.loss, m.MLMLogits)
	}
	return mg, err
}

// pretrainGroups returns the optimiser groups: AdamW (betas 0.9/0.98, eps
// 1e-6, gradient clipping at norm 1) with weight decay for the weights and
// without for biases and LayerNorm weights.
func pretrainGroups(s *layers.Store, lr, wd float64) []*train.Group {
	adamW := func(wd float64) *gorgoniafix.AdamW {
		return gorgoniafix.NewAdamW(gorgoniafix.WithLearnRate(lr), gorgoniafix.WithBetas(0.9, 0.98), gorgoniafix.WithEps(1e-6),
			gorgoniafix.WithWeightDecay(wd), gorgoniafix.WithClipNorm(1))
	}
	var dec, nodec []*layers.Param
	for _, p := range s.Trainable() {
		if strings.HasSuffix(p.Name, ".bias") || strings.Contains(p.Name, "LayerNorm") || strings.Contains(p.Name, "layer_norm") {
			nodec = append(nodec, p)
		} else {
			dec = append(dec, p)
		}
	}
	return []*train.Group{{Name: "decay", PeakLR: lr, Params: dec, Opt: adamW(wd)}, {Name: "no_decay", PeakLR: lr, Params: nodec, Opt: adamW(0)}}
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

// pretrainer is a pretraining run: the train.Task that train.Run drives.
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
	st       ptState
	perms    map[int][]int // epoch → order of the training sequences
	global   int           // sequences of one optimiser step over all ranks
	graphs   map[int]*mlmGraph
	eval     *mlmGraph
	w        io.Writer
	// wallBase is the wall time of the run's earlier processes (-resume).
	wallBase float64
}

// pretrain runs (or, with -resume, continues) MLM pretraining on every rank
// of an MPI job (train.World) and writes the model directory (rank 0). A
// cancelled ctx stops it after the current step, with a checkpoint that
// -resume continues from.
func pretrain(ctx context.Context, c ptConfig, set map[string]bool, w io.Writer, hooks runHooks) (*ptState, error) {
	c.Flags.Fill() // the demo builds its configurations in code
	start := time.Now()
	world, err := train.World()
	if err != nil {
		return nil, err
	}
	rank0 := world.Rank() == 0
	if !rank0 {
		w, hooks.progress = io.Discard, io.Discard
	} else if err := pretrainFolder(c).Admit(c.Resume); err != nil {
		return nil, err
	}
	// The other ranks read -out once rank 0 has checked it.
	if err := world.AllreduceSumFloat64([]float64{0}); err != nil {
		return nil, errors.Wrap(err, "waiting for rank 0 to check -out")
	}
	p := &pretrainer{c: c, perms: map[int][]int{}, graphs: map[int]*mlmGraph{}, w: w}
	defer p.close()
	if c.Resume {
		if err := p.loadLog(set); err != nil {
			return nil, err
		}
		fmt.Fprintf(w, "resuming the run in %s (%d steps in all)\n", c.Out, p.c.MaxSteps)
	}
	docs, sources, err := pretrainTexts(p.c.GlueDir, p.c.Text)
	if err != nil {
		return nil, err
	}
	if err := p.setup(docs, w); err != nil {
		return nil, err
	}
	if rank0 && !c.Resume {
		if err := pretrainFolder(c).Begin(false); err != nil {
			return nil, err
		}
	}
	tc := train.Config{Batch: p.c.BatchSize, GradAccum: p.c.GradAccum, Comm: world, Seed: p.c.Seed,
		Groups:     pretrainGroups(p.store, p.c.LR, p.c.WeightDecay),
		EvalAt:     func(s int) bool { return p.c.SaveEvery > 0 && s%p.c.SaveEvery == 0 },
		Checkpoint: train.CheckpointDir(p.c.Out), SaveEvery: p.c.SaveEvery, Resume: p.c.Resume,
		Progress: hooks.progress, Desc: "pretrain", AfterStep: hooks.afterStep}
	p.global = tc.GlobalBatch()
	if !c.Resume {
		p.st.Sources = sources
		if p.c.MaxSteps == 0 {
			if p.c.MaxSteps, err = p.fitSteps(world, start); err != nil {
				return nil, err
			}
		}
		p.st.Config, p.st.TotalSteps = p.c, p.c.MaxSteps
		if rank0 {
			// The settings (with the fitted budget) and the tokenizer, for
			// -resume.
			if err := pretrainFolder(p.c).Update(false, p.writeStart); err != nil {
				return nil, err
			}
		}
	}
	tc.Steps, tc.Identity = p.c.MaxSteps, p.identity()
	if tc.Schedule, err = train.NewSchedule(tc.Steps, p.c.WarmupRatio); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "%d steps of %d sequences (batch %d × grad_accum %d × %d ranks), lr %g, warm-up %g, weight decay %g, seed %d\n",
		tc.Steps, p.global, p.c.BatchSize, max(1, p.c.GradAccum), world.Size(), p.c.LR, p.c.WarmupRatio, p.c.WeightDecay, p.c.Seed)
	run, err := train.Run(ctx, tc, p)
	if err != nil {
		return nil, err
	}
	p.record(run, world.Size(), start)
	if !rank0 {
		return &p.st, nil
	}
	if p.st.Interrupted {
		fmt.Fprintf(w, "interrupted at step %d of %d; saving (continue with -resume)\n", p.st.Step, p.st.TotalSteps)
	}
	if err := pretrainFolder(p.c).End(!p.st.Interrupted, p.writeModel); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "wrote the model to %s (use it with -model %s)\n", p.c.Out, p.c.Out)
	return &p.st, nil
}

// pretrainFolder is the run's output folder.
func pretrainFolder(c ptConfig) outdir.Folder {
	return outdir.Folder{Flag: "-out", Path: c.Out, Kind: kindPretrain, Overwrite: c.Overwrite, Resumable: true}
}

// identity is what a resumed run must share with the run it continues:
// the settings but where the data and the outputs are and how often to
// save (the data must be the same: setup compares its hash).
func (p *pretrainer) identity() ptConfig {
	c := p.c
	c.GlueDir, c.Text, c.Out, c.SaveEvery = "", "", "", 0
	return c
}

// loadLog reads the settings and the log of the run in -out and applies
// the overrides allowed on -resume.
func (p *pretrainer) loadLog(set map[string]bool) error {
	path := filepath.Join(p.c.Out, pretrainLogFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return errors.Errorf("-resume: %s has no %s (the run was stopped before it began training); start it again with -overwrite", p.c.Out, pretrainLogFile)
	}
	if err != nil {
		return errors.Wrap(err, "-resume: reading the run's log")
	}
	if err := json.Unmarshal(b, &p.st); err != nil {
		return errors.Wrapf(err, "-resume: parsing %s", path)
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
	p.wallBase = p.st.WallSeconds
	return nil
}

// setup prepares the tokenizer (on -resume the run's, from -out), the
// sequences, the model and the held-out evaluation.
func (p *pretrainer) setup(docs []string, w io.Writer) error {
	var err error
	switch {
	case p.c.Resume:
		p.tok, err = bytebpe.Load(p.c.Out)
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
	if p.c.Resume && (hash != p.st.DataHash || len(seqs) != p.st.Sequences) {
		return errors.Errorf("the text now packs into %d sequences (hash %s), the run was trained on %d (hash %s): resume with the same data and tokenizer", len(seqs), hash, p.st.Sequences, p.st.DataHash)
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

	// A resumed run starts from these weights too; train.Run then reads the
	// checkpoint's.
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
	if err := checkTokenizer(p.tok, p.cfg); err != nil {
		return err
	}
	if !p.c.Resume {
		p.st = ptState{Config: p.c, Sequences: len(seqs), HeldOut: nHeld, DataHash: hash}
	}
	p.st.Params, _ = p.store.Count()
	if p.eval, err = newMLMGraph(p.store, p.cfg, nHeld, p.c.MaxLen, false); err != nil {
		return err
	}
	if err := p.eval.m.SetInputs(p.heldIn, p.heldMask, nil); err != nil {
		return err
	}
	copy(p.eval.targets.Value().Data().([]int), p.heldTgt)
	fmt.Fprintf(w, "%d documents → %d sequences of %d ids (%d held out); model: %d layers, hidden %d, %d heads, intermediate %d, vocabulary %d, %s parameters\n",
		len(docs), len(seqs), p.c.MaxLen, nHeld, p.cfg.NumHiddenLayers, p.cfg.HiddenSize, p.cfg.NumAttentionHeads, p.cfg.IntermediateSize, p.cfg.VocabSize, commas(p.st.Params))
	return nil
}

// fitSteps times calibSteps forward and backward passes of a micro-batch
// (whose gradients are dropped: the weights and the optimiser are not
// touched) and returns the step budget that fills the rest of -minutes at
// that speed, rank 0's on every rank.
func (p *pretrainer) fitSteps(world dataparallel.Comm, start time.Time) (int, error) {
	fmt.Fprintf(p.w, "timing %d forward and backward passes to fit the run into %g minutes\n", calibSteps, p.c.Minutes)
	acc, err := dataparallel.NewAccumulator(p.store.Trainable())
	if err != nil {
		return 0, err
	}
	idx := make([]int, p.c.BatchSize)
	for r := range idx {
		idx[r] = p.seqAt(r)
	}
	rng := rand.New(rand.NewPCG(p.c.Seed, 8))
	t0 := time.Now()
	tokens := 0
	for range calibSteps {
		_, nodes, n, err := p.forward(idx, rng)
		if err != nil {
			return 0, errors.Wrap(err, "timing the steps")
		}
		if err := acc.Add(nodes); err != nil { // takes the gradients out of the graph
			return 0, err
		}
		tokens += n
	}
	per := time.Since(t0).Seconds() / calibSteps * float64(max(1, p.c.GradAccum))
	total := []float64{float64(max(1, int((p.c.Minutes*60-time.Since(start).Seconds())/per)))}
	if err := world.BroadcastFloat64(total, 0); err != nil {
		return 0, errors.Wrap(err, "sharing the step budget")
	}
	fmt.Fprintf(p.w, "%.0f tokens/s → %d steps in all\n", float64(tokens)/time.Since(t0).Seconds(), int(total[0]))
	return int(total[0]), nil
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

// Batch returns the global batch of step: the next sequences of the stream.
func (p *pretrainer) Batch(step int) ([]int, error) {
	idx := make([]int, p.global)
	for r := range idx {
		idx[r] = p.seqAt(step*p.global + r)
	}
	return idx, nil
}

// Forward masks a micro-batch's sequences and runs forward and backward,
// with masking and dropout from the micro-batch's own generator.
func (p *pretrainer) Forward(m train.Micro) (float64, G.Nodes, int, error) {
	return p.forward(m.Examples, m.Rand)
}

// forward runs forward and backward on the training sequences idx, masked
// (and with dropout) from rng; it returns the loss, the graph's parameter
// nodes and the number of real tokens.
func (p *pretrainer) forward(idx []int, rng *rand.Rand) (float64, G.Nodes, int, error) {
	tg, ok := p.graphs[len(idx)]
	if !ok {
		var err error
		if tg, err = newMLMGraph(p.store, p.cfg, len(idx), p.c.MaxLen, true); err != nil {
			return 0, nil, 0, err
		}
		p.graphs[len(idx)] = tg
	}
	n := p.c.MaxLen
	ids, mask, inputs := make([]int, len(idx)*n), make([]int, len(idx)*n), make([]int, len(idx)*n)
	for r, s := range idx {
		copy(ids[r*n:], p.seqs[s])
		copy(mask[r*n:], p.masks[s])
	}
	p.mk.apply(rng, ids, inputs, tg.targets.Value().Data().([]int))
	if err := tg.m.SetInputs(inputs, mask, nil); err != nil {
		return 0, nil, 0, err
	}
	if err := tg.g.RefillDropout(rng); err != nil {
		return 0, nil, 0, err
	}
	tg.vm.Reset()
	if err := tg.vm.RunAll(); err != nil {
		return 0, nil, 0, errors.Wrap(err, "pretraining forward and backward pass")
	}
	return scalar(tg.loss.Value()), tg.g.Learnables(), sum(mask), nil
}

// EvalUnits: the held-out set is one unit, with its loss and accuracy.
func (p *pretrainer) EvalUnits() []int { return []int{2} }

// EvalUnit evaluates the held-out sequences.
func (p *pretrainer) EvalUnit(_ int, out []float64) error {
	rec, err := p.heldOut()
	out[0], out[1] = rec.Loss, rec.Accuracy
	return err
}

// Metrics is the held-out loss and accuracy; a lower loss is better.
func (p *pretrainer) Metrics(stats [][]float64) (heldOutRecord, float64, error) {
	return heldOutRecord{Loss: stats[0][0], Accuracy: stats[0][1]}, stats[0][0], nil
}

// Evaluated prints every evaluation.
func (p *pretrainer) Evaluated(e train.Evaluation[heldOutRecord]) {
	fmt.Fprintf(p.w, "\nstep %d: held-out MLM loss %.4f, masked-token accuracy %.3f\n", e.Step, e.Record.Loss, e.Record.Accuracy)
}

// record copies what train.Run did into the log.
func (p *pretrainer) record(run *train.Result[heldOutRecord], ranks int, start time.Time) {
	st := &p.st
	st.Step, st.Losses, st.Interrupted, st.ResumedFrom, st.Ranks = run.Steps, run.Losses, run.Interrupted, run.ResumedFrom, ranks
	st.Evals = nil
	for _, e := range run.Evals {
		st.Evals = append(st.Evals, heldOutRecord{Step: e.Step, Loss: e.Record.Loss, Accuracy: e.Record.Accuracy})
	}
	// Every micro-batch has the same sequences on every rank.
	st.Tokens = int64(run.Tokens * ranks)
	st.TrainSeconds, st.EvalSeconds = run.TrainSeconds, run.EvalSeconds
	if run.TrainSeconds > 0 {
		st.TokensPerSec = float64(st.Tokens) / run.TrainSeconds
	}
	st.WallSeconds = p.wallBase + time.Since(start).Seconds()
}

// close releases the compiled graphs.
func (p *pretrainer) close() {
	for _, g := range p.graphs {
		g.vm.Close()
	}
	if p.eval != nil {
		p.eval.vm.Close()
	}
}

// writeStart writes what -resume needs besides the checkpoint to dir: the
// log with the run's settings, and the tokenizer.
func (p *pretrainer) writeStart(dir string) error {
	if err := p.tok.Save(dir); err != nil {
		return err
	}
	return train.WriteJSON(filepath.Join(dir, pretrainLogFile), &p.st)
}

// writeModel writes the Hugging Face files, the tokenizer, the log and the
// loss plot to dir.
func (p *pretrainer) writeModel(dir string) error {
	if err := roberta.Save(dir, p.store, p.cfg); err != nil {
		return err
	}
	if err := p.writeStart(dir); err != nil {
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
func (p *pretrainer) heldOut() (heldOutRecord, error) {
	eg := p.eval
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
	rec := heldOutRecord{Loss: scalar(eg.loss.Value())}
	if n > 0 {
		rec.Accuracy = float64(right) / float64(n)
	}
	return rec, nil
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
