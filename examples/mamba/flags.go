package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/lilygo/lily/internal/outdir"
	"github.com/lilygo/lily/internal/sweep"
	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
)

// config is every setting of one run; its JSON form goes into results.json.
type config struct {
	Out        string `json:"out"`
	Overwrite  bool   `json:"-"`
	PEFTLayout bool   `json:"peft_layout"`

	// Text.
	Source        string  `json:"source,omitempty"`
	Target        string  `json:"target,omitempty"`
	TargetEval    string  `json:"target_eval,omitempty"`
	GlueDir       string  `json:"glue_dir,omitempty"`
	SourceTasks   string  `json:"source_tasks,omitempty"`
	TargetTask    string  `json:"target_task,omitempty"`
	HeldOut       float64 `json:"held_out"`
	MaxSourceDocs int     `json:"max_source_docs"`
	MaxTargetDocs int     `json:"max_target_docs"`
	SynthDocs     int     `json:"synth_docs"`

	// Model and tokenizer.
	Model     string `json:"model,omitempty"`
	Tokenizer string `json:"tokenizer,omitempty"`
	Merges    int    `json:"merges"`
	Hidden    int    `json:"hidden"`
	Layers    int    `json:"layers"`
	StateSize int    `json:"state_size"`
	SeqLen    int    `json:"seq_len"`
	Batch     int    `json:"batch"`

	// Pretraining.
	PretrainSteps int     `json:"pretrain_steps"`
	PretrainLR    float64 `json:"pretrain_lr"`
	WeightDecay   float64 `json:"weight_decay"`
	Seed          uint64  `json:"seed"`

	// Adaptation.
	Methods     string  `json:"methods"`
	Seeds       string  `json:"seeds"`
	Steps       int     `json:"steps"`
	EvalEvery   int     `json:"eval_every"`
	WarmupRatio float64 `json:"warmup_ratio"`
	LilyLR      float64 `json:"lily_lr"`
	LoraLR      float64 `json:"lora_lr"`
	LilyR       int     `json:"lily_r"`
	LilyStrideA int     `json:"lily_stride_A"`
	LilyNumB    int     `json:"lily_num_B"`
	LilyScaling float64 `json:"lily_scaling"`
	LilyRouting string  `json:"lily_routing"`
	LoraR       int     `json:"lora_r"`
	LoraAlpha   float64 `json:"lora_alpha"`

	// Training: -grad_accum, -save_every, -resume.
	train.Flags
}

// defaults are the flag defaults: the synthetic run that needs no flags and
// takes a few minutes on 2 cores.
var defaults = config{
	Out: "runs/mamba", HeldOut: 0.1, SynthDocs: 2000,
	Merges: 300, Hidden: 64, Layers: 4, StateSize: 8, SeqLen: 64, Batch: 8,
	PretrainSteps: 250, PretrainLR: 3e-3, WeightDecay: 0.1, Seed: 1,
	Methods: "lily_in,lily_dt_in,lora_in,lora_dt_in", Seeds: "1", Steps: 80, WarmupRatio: 0.06,
	LilyLR: 3e-3, LoraLR: 3e-3, LilyR: 16, LilyNumB: 2, LilyScaling: 1, LilyRouting: "batch",
}

// usageHeader explains the program above the flag list.
const usageHeader = `mamba: pretrain a small Mamba language model on one corpus, then adapt it to
another corpus with Lily "in" (in_proj), Lily "Δ + in" (in_proj and dt_proj)
and LoRA on the same sites at matched trainable parameters, and compare the
held-out perplexity (token-weighted) on the target corpus.

With no flags it runs on two SYNTHETIC corpora generated in code (an
English-like and an invented verb-final language), in a few minutes on 2 cores.

Real text:
  -glue_dir ../shared/data/glue -source_tasks cola,rte,qnli -target_task sst2
      pretrain on the sentences of CoLA, RTE and QNLI (train split, or dev where
      there is no train split), adapt on SST-2 train, evaluate on SST-2 dev
  -source a.txt -target b.txt [-target_eval c.txt]
      files with one document per line (without -target_eval, -held_out of the
      target documents are held out)
  -model DIR [-tokenizer DIR]
      skip pretraining: a Hugging Face Mamba directory (config.json,
      model.safetensors) and its byte-level BPE tokenizer (vocab.json and
      merges.txt, or encoder.json and vocab.bpe; default: the model directory)

Outputs in -out: results.json (with every run's analysis of its adapter's
updates), perplexity.png (held-out perplexity vs step per method),
updates-<method>-seed<N>.png (the effective rank of each update),
pretrain_loss.png, pretrained/ (mamba.SaveHF plus the tokenizer) and
adapters/<method>-seed<N>/ (adapterfile); an -out that holds a finished run
or another kind of run is refused unless -overwrite is given. Ctrl-C stops
after the current step, still writes every output, keeps a checkpoint in
-out/checkpoints and exits with status 130; -resume (with the same flags)
continues from it — or from the last -save_every checkpoint of a killed run —
skipping the finished runs, and gives exactly the uninterrupted run's
results. -grad_accum K makes every optimiser step K micro-batches of -batch
windows; under mpirun (a build with -tags mpi) every rank trains on its share
of each step and rank 0 writes the outputs.

'mamba eval -h' and 'mamba export -h': the perplexity of a text with a saved
adapter, and the adapter merged into a Hugging Face Mamba directory.
'mamba search -h': the best Lily shape at a fixed parameter budget.

Flags:
`

// newFlags returns the flag set bound to c, which it fills with the defaults.
func newFlags(c *config, out io.Writer) *flag.FlagSet {
	*c = defaults
	fs := flag.NewFlagSet("mamba", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Out, "out", c.Out, "output folder")
	fs.BoolVar(&c.Overwrite, "overwrite", false, "replace -out when it holds a finished run or another kind of run")
	c.Flags.Register(fs)
	fs.BoolVar(&c.PEFTLayout, "peft_layout", false, "save the adapters exactly as PEFT does (Lily's shared tensors repeated per layer, no lily_go config section), so PeftModel.from_pretrained loads them without a warning; Lily needs batch routing")

	fs.StringVar(&c.Source, "source", "", "pretraining text: a file with one document per line")
	fs.StringVar(&c.Target, "target", "", "adaptation text: a file with one document per line")
	fs.StringVar(&c.TargetEval, "target_eval", "", "held-out target text, one document per line (default: -held_out of -target)")
	fs.StringVar(&c.GlueDir, "glue_dir", "", "GLUE directory (<TASK>/train.tsv, dev.tsv) for -source_tasks and -target_task")
	fs.StringVar(&c.SourceTasks, "source_tasks", "", "comma-separated GLUE tasks whose sentences are the pretraining text (e.g. cola,rte,qnli)")
	fs.StringVar(&c.TargetTask, "target_task", "", "GLUE task whose train sentences are adapted on and whose dev sentences are held out (e.g. sst2)")
	fs.Float64Var(&c.HeldOut, "held_out", c.HeldOut, "fraction of documents held out where no separate held-out text is given (target, and always the source)")
	fs.IntVar(&c.MaxSourceDocs, "max_source_docs", 0, "use at most this many pretraining documents, a seeded sample (0: all)")
	fs.IntVar(&c.MaxTargetDocs, "max_target_docs", 0, "use at most this many target training documents, a seeded sample (0: all)")
	fs.IntVar(&c.SynthDocs, "synth_docs", c.SynthDocs, "documents per synthetic corpus (the run without text flags)")

	fs.StringVar(&c.Model, "model", "", "Hugging Face Mamba directory to adapt instead of pretraining one")
	fs.StringVar(&c.Tokenizer, "tokenizer", "", "tokenizer directory for -model (default: the -model directory)")
	fs.IntVar(&c.Merges, "merges", c.Merges, "BPE merges learnt from the pretraining text (the vocabulary is 257 + merges)")
	fs.IntVar(&c.Hidden, "hidden", c.Hidden, "hidden size d_model of the pretrained model (d_inner is twice it)")
	fs.IntVar(&c.Layers, "layers", c.Layers, "Mamba blocks of the pretrained model")
	fs.IntVar(&c.StateSize, "state_size", c.StateSize, "SSM state size d_state of the pretrained model")
	fs.IntVar(&c.SeqLen, "seq_len", c.SeqLen, "tokens per training and evaluation window")
	fs.IntVar(&c.Batch, "batch", c.Batch, "windows per step (also per evaluation run)")

	fs.IntVar(&c.PretrainSteps, "pretrain_steps", c.PretrainSteps, "pretraining steps (AdamW, linear schedule with -warmup_ratio warm-up, gradient clipping at 1)")
	fs.Float64Var(&c.PretrainLR, "pretrain_lr", c.PretrainLR, "peak pretraining learning rate")
	fs.Float64Var(&c.WeightDecay, "weight_decay", c.WeightDecay, "pretraining weight decay (not on A_log, D, biases, norms); adapters get none")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "pretraining seed (initialisation and batches); the data split and synthetic text do not depend on it")

	fs.StringVar(&c.Methods, "methods", c.Methods, "comma-separated adaptation methods: lily_in, lily_dt_in, lora_in, lora_dt_in")
	fs.StringVar(&c.Seeds, "seeds", c.Seeds, "comma-separated adaptation seeds (adapter initialisation and batches); every method runs once per seed")
	fs.IntVar(&c.Steps, "steps", c.Steps, "adaptation steps per method and seed")
	fs.IntVar(&c.EvalEvery, "eval_every", 0, "held-out evaluation every N adaptation steps, and at the end (0: four times per run)")
	fs.Float64Var(&c.WarmupRatio, "warmup_ratio", c.WarmupRatio, "fraction of steps with a linearly rising learning rate (pretraining and adaptation)")
	fs.Float64Var(&c.LilyLR, "lily_lr", c.LilyLR, "peak adaptation learning rate of Lily (AdamW, no weight decay)")
	fs.Float64Var(&c.LoraLR, "lora_lr", c.LoraLR, "peak adaptation learning rate of LoRA (AdamW, no weight decay)")
	fs.IntVar(&c.LilyR, "lily_r", c.LilyR, "Lily rank r")
	fs.IntVar(&c.LilyStrideA, "lily_stride_A", 0, "Lily: consecutive layers sharing one A (0: half the layers, rounded up, so two A's per target)")
	fs.IntVar(&c.LilyNumB, "lily_num_B", c.LilyNumB, "Lily: B experts shared by all layers of a target")
	fs.Float64Var(&c.LilyScaling, "lily_scaling", c.LilyScaling, "Lily scaling s multiplying the adapter output")
	fs.StringVar(&c.LilyRouting, "lily_routing", c.LilyRouting, "Lily routing: batch (reference: one mix per batch), sequence or token")
	fs.IntVar(&c.LoraR, "lora_r", 0, "LoRA rank (0: the rank whose parameter count is nearest to Lily's on the same sites)")
	fs.Float64Var(&c.LoraAlpha, "lora_alpha", 0, "LoRA alpha; the update is scaled by alpha/r (0: alpha = r, scaling 1 like -lily_scaling's default)")
	fs.Usage = func() {
		fmt.Fprint(out, usageHeader)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses the command line into a validated configuration.
func parseFlags(args []string, out io.Writer) (config, error) {
	var c config
	fs := newFlags(&c, out)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, errors.Errorf("unexpected argument %q (every setting is a flag; see -h)", fs.Arg(0))
	}
	return c, c.validate()
}

// folder is the run's output folder.
func (c config) folder() outdir.Folder {
	return outdir.Folder{Flag: "-out", Path: c.Out, Kind: kindRun, Overwrite: c.Overwrite, Resumable: true}
}

// identity is what a resumed run must share with the run it continues.
func (c config) identity() config {
	c.Out, c.SaveEvery = "", 0
	return c
}

// synthetic reports whether the run uses the built-in synthetic corpora.
func (c config) synthetic() bool {
	return c.Source == "" && c.Target == "" && c.SourceTasks == "" && c.TargetTask == ""
}

// validate reports the first unusable setting and how to fix it.
func (c config) validate() error {
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case c.Out == "":
		return errors.New("-out is empty")
	case c.Target != "" && c.TargetTask != "":
		return errors.New("give -target or -target_task, not both")
	case c.Source != "" && c.SourceTasks != "":
		return errors.New("give -source or -source_tasks, not both")
	case (c.SourceTasks != "" || c.TargetTask != "") && c.GlueDir == "":
		return errors.New("-source_tasks and -target_task need -glue_dir")
	case c.TargetEval != "" && c.Target == "":
		return errors.New("-target_eval needs -target")
	case !c.synthetic() && c.Target == "" && c.TargetTask == "":
		return errors.New("name the target text: -target FILE or -target_task TASK")
	case !c.synthetic() && c.Model == "" && c.Source == "" && c.SourceTasks == "":
		return errors.New("name the pretraining text (-source FILE or -source_tasks TASKS) or a pretrained -model")
	case c.Model != "" && (c.Source != "" || c.SourceTasks != ""):
		return errors.New("-model skips pretraining: drop -source/-source_tasks")
	case c.Tokenizer != "" && c.Model == "":
		return errors.New("-tokenizer goes with -model; without -model a tokenizer is trained on the pretraining text")
	case !(c.HeldOut > 0 && c.HeldOut < 1):
		return errors.Errorf("-held_out %v must be in (0, 1)", c.HeldOut)
	case c.MaxSourceDocs < 0 || c.MaxTargetDocs < 0:
		return errors.New("-max_source_docs and -max_target_docs must not be negative")
	case c.SynthDocs < 20:
		return errors.Errorf("-synth_docs %d is too few; use at least 20", c.SynthDocs)
	case c.Merges < 0:
		return errors.Errorf("-merges %d must not be negative", c.Merges)
	case c.Hidden < 1 || c.Layers < 1 || c.StateSize < 1:
		return errors.Errorf("-hidden %d, -layers %d and -state_size %d must be positive", c.Hidden, c.Layers, c.StateSize)
	case c.SeqLen < 2 || c.Batch < 1:
		return errors.Errorf("-seq_len %d must be at least 2 and -batch %d positive", c.SeqLen, c.Batch)
	case c.PretrainSteps < 1 && c.Model == "":
		return errors.Errorf("-pretrain_steps %d must be positive", c.PretrainSteps)
	case c.Flags.Check() != nil:
		return c.Flags.Check()
	case c.Steps < 1:
		return errors.Errorf("-steps %d must be positive", c.Steps)
	case c.EvalEvery < 0:
		return errors.Errorf("-eval_every %d must not be negative", c.EvalEvery)
	case !(c.WarmupRatio >= 0 && c.WarmupRatio < 1):
		return errors.Errorf("-warmup_ratio %v must be in [0, 1)", c.WarmupRatio)
	case !(c.PretrainLR >= 0) || !(c.LilyLR >= 0) || !(c.LoraLR >= 0) || !finite(c.PretrainLR+c.LilyLR+c.LoraLR):
		return errors.New("-pretrain_lr, -lily_lr and -lora_lr must be non-negative numbers")
	case !(c.WeightDecay >= 0) || !finite(c.WeightDecay):
		return errors.Errorf("-weight_decay %v must be a non-negative number", c.WeightDecay)
	case c.LilyR < 1 || c.LilyNumB < 2 || c.LilyStrideA < 0:
		return errors.Errorf("-lily_r %d must be positive, -lily_num_B %d at least 2 and -lily_stride_A %d not negative", c.LilyR, c.LilyNumB, c.LilyStrideA)
	case !finite(c.LilyScaling) || !finite(c.LoraAlpha):
		return errors.New("-lily_scaling and -lora_alpha must be finite")
	case c.LoraR < 0:
		return errors.Errorf("-lora_r %d must not be negative (0 matches Lily's parameter count)", c.LoraR)
	}
	if _, err := lilyop.ParseRouting(c.LilyRouting); err != nil {
		return errors.Wrap(err, "-lily_routing")
	}
	if _, err := parseMethods(c.Methods); err != nil {
		return err
	}
	_, err := sweep.ParseSeeds(c.Seeds)
	return err
}

// method is one adaptation method of the comparison.
type method struct {
	// Name is the -methods spelling, e.g. "lily_dt_in".
	Name string `json:"name"`
	// Kind is "lily" or "lora".
	Kind string `json:"kind"`
	// Targets are the adapted modules of every block.
	Targets []string `json:"target_modules"`
	// Label is the name in tables and plots.
	Label string `json:"label"`
}

// methods lists every method, in the order tables show them.
var methods = []method{
	{Name: "lily_in", Kind: "lily", Targets: []string{"in_proj"}, Label: `Lily "in"`},
	{Name: "lily_dt_in", Kind: "lily", Targets: []string{"in_proj", "dt_proj"}, Label: `Lily "Δ + in"`},
	{Name: "lora_in", Kind: "lora", Targets: []string{"in_proj"}, Label: "LoRA in"},
	{Name: "lora_dt_in", Kind: "lora", Targets: []string{"in_proj", "dt_proj"}, Label: "LoRA Δ + in"},
}

// sites returns the method's adapted modules as text.
func (m method) sites() string { return strings.Join(m.Targets, "+") }

// kindLabel is "Lily" or "LoRA".
func (m method) kindLabel() string {
	if m.Kind == "lily" {
		return "Lily"
	}
	return "LoRA"
}

// parseMethods reads -methods: known names, no repeats, in table order.
func parseMethods(s string) ([]method, error) {
	want := map[string]bool{}
	for _, name := range splitList(s) {
		if want[name] {
			return nil, errors.Errorf("-methods names %s twice", name)
		}
		want[name] = true
	}
	var out []method
	for _, m := range methods {
		if want[m.Name] {
			out = append(out, m)
			delete(want, m.Name)
		}
	}
	for name := range want {
		return nil, errors.Errorf("-methods: unknown method %q; use lily_in, lily_dt_in, lora_in or lora_dt_in", name)
	}
	if len(out) == 0 {
		return nil, errors.New("-methods is empty; name at least one of lily_in, lily_dt_in, lora_in, lora_dt_in")
	}
	return out, nil
}

// splitList splits a comma-separated list, dropping blanks and spaces.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
