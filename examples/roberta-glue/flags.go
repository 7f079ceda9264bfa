package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	"github.com/lilygo/lily/glue"
	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
)

// ftConfig is the configuration of one fine-tuning run; its JSON form is
// written to results.json.
type ftConfig struct {
	Task    string `json:"task"`
	GlueDir string `json:"glue_dir"`
	Model   string `json:"model"`
	Adapter string `json:"adapter"`

	LilyR       int     `json:"lily_r"`
	LilyStrideA int     `json:"lily_stride_A"` // 0 until resolved from the recipe and the model's depth
	LilyNumB    int     `json:"lily_num_B"`
	LilyScaling float64 `json:"lily_scaling"`
	LilyTargets string  `json:"lily_target_modules"`
	LilyRouting string  `json:"lily_routing"`
	LoraR       int     `json:"lora_r"`
	LoraAlpha   float64 `json:"lora_alpha"`
	LoraTargets string  `json:"lora_target_modules"`

	Epochs      int     `json:"epochs"`
	MaxSteps    int     `json:"max_steps"`
	BatchSize   int     `json:"batch_size"`
	MaxLen      int     `json:"max_len"`
	HeadLR      float64 `json:"head_lr"`
	AdapterLR   float64 `json:"adapter_lr"`
	WarmupRatio float64 `json:"warmup_ratio"`
	WeightDecay float64 `json:"weight_decay"`
	Seed        uint64  `json:"seed"`
	Out         string  `json:"out"`
	Overwrite   bool    `json:"-"`
	EvalEvery   int     `json:"eval_every"`
	PEFTLayout  bool    `json:"peft_layout"`
	train.Flags

	// FromRecipe lists the settings taken from the task's recipe because
	// no flag set them.
	FromRecipe []string `json:"from_recipe"`
}

// usageHeader explains the five modes; -h prints it above the flags.
const usageHeader = `roberta-glue: Lily, LoRA or head-only fine-tuning of a RoBERTa encoder on GLUE.

Five modes:

  go run ./examples/roberta-glue
      With no flags: a self-contained demo on SYNTHETIC data made up in code.
      It writes a small GLUE-format sentiment task (negation and intensifiers),
      pretrains a tiny encoder on its train split (tokenizer included), then
      fine-tunes Lily, LoRA (same parameter budget) and head-only and prints a
      table. Takes a few minutes on 2 cores. Only -out and -seed apply.

  go run ./examples/roberta-glue pretrain [flags]
      Masked-language-model pretraining of a small RoBERTa from scratch on the
      TRAIN splits of the GLUE tasks in -glue_dir (or any -text file). Writes a
      Hugging Face model directory for -model. See 'pretrain -h'.

  go run ./examples/roberta-glue -task rte -glue_dir ../shared/data/glue -model DIR [flags]
      Fine-tuning on a GLUE task; DIR holds config.json, model.safetensors,
      vocab.json and merges.txt (from 'pretrain', or a converted roberta-base).
      Writes results.json, training.png and the adapter (PEFT layout) to -out;
      for Lily and LoRA also updates.png, the effective rank of each site's
      update (results.json's "analysis").

  go run ./examples/roberta-glue sweep -glue_dir ../shared/data/glue -model DIR [flags]
      Fine-tuning of several configurations (default: Lily, LoRA, head only)
      on several tasks (default: sst2,rte,cola,qnli) over several seeds, with
      a table of mean ± std. See 'sweep -h'.

  go run ./examples/roberta-glue search -task rte -glue_dir ../shared/data/glue -model DIR [flags]
      The Lily shape (r, stride_A, num_B) that fine-tunes best at a fixed
      number of trainable parameters (default: LoRA r 4's), by successive
      halving over every shape within -tolerance of it. See 'search -h'.

After fine-tuning (each has its own -h):

  go run ./examples/roberta-glue eval -model DIR -adapter RUN/adapter -glue_dir G
      The run's dev metrics again, exactly.
  go run ./examples/roberta-glue predict -model DIR -adapter RUN/adapter -glue_dir G -out SUBMIT
      GLUE submission files for the test split (or -input FILE: your own text).
  go run ./examples/roberta-glue export -model DIR -adapter RUN/adapter -glue_dir G -out MERGED
      A Hugging Face model with the adapter merged (Lily needs -calibrate).

Ctrl-C stops any mode after the current step, still writes what was done and
exits with status 130. Every output folder is replaced as a whole; one that
holds a finished run or another kind of run is refused unless -overwrite.
Fine-tuning writes a checkpoint into -out every -save_every steps and when
stopped; -resume continues it exactly (the same losses, metrics and adapter
as a run that was never stopped; give the same flags, -save_every may
change). Each optimiser step trains on -batch_size × -grad_accum × MPI ranks
examples: built with -tags mpi and started with mpirun -np N, the ranks
share every batch and the dev set and rank 0 writes, with the results of
one process with -grad_accum N.
The default build is pure Go (package gemm's assembly kernels); with
OpenBLAS installed (libopenblas-dev), 'go run -tags openblas
./examples/roberta-glue ...' runs the products on OpenBLAS instead, at about
the same speed (docs/performance.md).

Fine-tuning flags:
`

// usageFooter documents the recipe defaults.
func usageFooter(w io.Writer) {
	fmt.Fprint(w, `
Per-task recipe: flags marked "recipe" default to the Lily paper's RoBERTa-base
GLUE settings for -task (AdamW, weight decay 0, linear schedule, 6% warm-up,
targets query,value, r=32, num_B = number of A's). The number of A's becomes
-lily_stride_A = ceil(layers / A's), so a 12-layer model gets the paper's A's
and a shallower one fewer. A flag given explicitly always wins.

`)
	printRecipes(w)
	fmt.Fprint(w, `
QNLI has no train.tsv in ../shared/data: a task without train.tsv is trained on
a seeded 80% of dev.tsv and evaluated on the other 20% (the output says so).
MNLI is evaluated on dev_matched and dev_mismatched. STS-B is a regression
(one output, MSE loss; Pearson and Spearman).
`)
}

// newFinetuneFlags returns the fine-tuning flag set bound to c, with c holding
// the defaults that do not depend on the task.
func newFinetuneFlags(c *ftConfig, out io.Writer) *flag.FlagSet {
	*c = ftConfig{Adapter: "lily", LilyR: 32, LilyTargets: "query,value", LilyRouting: "batch",
		LoraR: 8, LoraAlpha: 8, LoraTargets: "query,value", WarmupRatio: 0.06, Seed: 42}
	fs := flag.NewFlagSet("roberta-glue", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Task, "task", "", "GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte or wnli (without it: the synthetic demo)")
	fs.StringVar(&c.GlueDir, "glue_dir", "", "GLUE directory with <TASK>/train.tsv and dev.tsv, e.g. ../shared/data/glue (required with -task)")
	fs.StringVar(&c.Model, "model", "", "Hugging Face RoBERTa directory: config.json, model.safetensors, vocab.json, merges.txt (required with -task)")
	fs.StringVar(&c.Adapter, "adapter", c.Adapter, "adapter: lily, lora, or none (train the classifier head only)")
	fs.IntVar(&c.LilyR, "lily_r", c.LilyR, "Lily rank r")
	fs.IntVar(&c.LilyStrideA, "lily_stride_A", 0, "Lily: consecutive layers sharing one A (default: recipe, ceil(layers / A's))")
	fs.IntVar(&c.LilyNumB, "lily_num_B", 0, "Lily: number of B experts shared by all layers (default: recipe)")
	fs.Float64Var(&c.LilyScaling, "lily_scaling", 0, "Lily scaling s multiplying the adapter output (default: recipe)")
	fs.StringVar(&c.LilyTargets, "lily_target_modules", c.LilyTargets, "Lily: comma-separated modules to adapt (query, key, value, dense)")
	fs.StringVar(&c.LilyRouting, "lily_routing", c.LilyRouting, "Lily routing: batch (reference: one mix per batch, padding included), sequence or token")
	fs.IntVar(&c.LoraR, "lora_r", c.LoraR, "LoRA rank r")
	fs.Float64Var(&c.LoraAlpha, "lora_alpha", c.LoraAlpha, "LoRA alpha (the update is scaled by alpha/r)")
	fs.StringVar(&c.LoraTargets, "lora_target_modules", c.LoraTargets, "LoRA: comma-separated modules to adapt")
	fs.IntVar(&c.Epochs, "epochs", 0, "training epochs (default: recipe)")
	fs.IntVar(&c.MaxSteps, "max_steps", 0, "stop after this many optimiser steps; overrides -epochs when positive (default 0: use -epochs)")
	fs.IntVar(&c.BatchSize, "batch_size", 0, "examples per micro-batch (default: recipe); an optimiser step trains on batch_size × grad_accum × MPI ranks, and an epoch has ceil(examples / that) steps")
	fs.IntVar(&c.MaxLen, "max_len", 0, "longest tokenized example, special tokens included; longer ones are truncated (default: 128, or the model's position limit if lower)")
	fs.Float64Var(&c.HeadLR, "head_lr", 0, "peak learning rate of the classifier head (default: recipe)")
	fs.Float64Var(&c.AdapterLR, "adapter_lr", 0, "peak learning rate of the adapter (default: recipe)")
	fs.Float64Var(&c.WarmupRatio, "warmup_ratio", c.WarmupRatio, "fraction of the steps with linearly rising learning rate")
	fs.Float64Var(&c.WeightDecay, "weight_decay", c.WeightDecay, "AdamW decoupled weight decay, for head and adapter (default 0, as the Lily paper)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "random seed (head and adapter initialisation, shuffling, dropout)")
	fs.StringVar(&c.Out, "out", "", "results folder (default: runs/<task>-<adapter>; for the demo a new temporary folder)")
	fs.BoolVar(&c.Overwrite, "overwrite", false, "replace -out when it holds a finished run or another kind of run")
	c.Flags.Register(fs)
	fs.IntVar(&c.EvalEvery, "eval_every", 0, "evaluate on dev every N steps (default: once per epoch, and at the end)")
	fs.BoolVar(&c.PEFTLayout, "peft_layout", false, "save the adapter exactly as PEFT does (Lily's shared tensors repeated per layer, no lily_go config section), so PeftModel.from_pretrained loads it without a warning; Lily needs -lily_routing batch")
	fs.Usage = func() {
		fmt.Fprint(out, usageHeader)
		fs.PrintDefaults()
		usageFooter(out)
	}
	return fs
}

// parseFinetune parses fine-tuning (or demo) arguments. It returns the
// configuration, with the recipe applied when -task is set, and the names of
// the flags given explicitly.
func parseFinetune(args []string, out io.Writer) (ftConfig, map[string]bool, error) {
	var c ftConfig
	fs := newFinetuneFlags(&c, out)
	if err := fs.Parse(args); err != nil {
		return c, nil, err
	}
	if fs.NArg() > 0 {
		return c, nil, errors.Errorf("unexpected argument %q (flags start with -; the pretraining mode is 'pretrain' as the first argument)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.Task == "" {
		return c, set, nil
	}
	if err := c.applyRecipe(set); err != nil {
		return c, set, err
	}
	return c, set, c.validate()
}

// applyRecipe canonicalises the task name and fills every recipe setting no
// flag set.
func (c *ftConfig) applyRecipe(set map[string]bool) error {
	t, err := glue.Lookup(c.Task)
	if err != nil {
		return err
	}
	c.Task = t.Name
	r := recipes[t.Name]
	c.FromRecipe = nil
	fill := func(name string, apply func()) {
		if !set[name] {
			apply()
			c.FromRecipe = append(c.FromRecipe, name)
		}
	}
	fill("lily_num_B", func() { c.LilyNumB = r.Blocks })
	fill("lily_scaling", func() { c.LilyScaling = r.Scaling })
	fill("epochs", func() { c.Epochs = r.Epochs })
	fill("batch_size", func() { c.BatchSize = r.Batch })
	fill("head_lr", func() { c.HeadLR = r.HeadLR })
	fill("adapter_lr", func() { c.AdapterLR = r.AdapterLR })
	if !set["lily_stride_A"] {
		c.FromRecipe = append(c.FromRecipe, "lily_stride_A")
	}
	if c.Out == "" {
		c.Out = fmt.Sprintf("runs/%s-%s", c.Task, c.Adapter)
	}
	sort.Strings(c.FromRecipe)
	return nil
}

// recipeBlocks is the recipe's number of A's for the configured task.
func (c ftConfig) recipeBlocks() int { return recipes[c.Task].Blocks }

// validate reports the first unusable setting.
func (c ftConfig) validate() error {
	bad := func(format string, args ...any) error { return errors.Errorf(format, args...) }
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case c.GlueDir == "":
		return bad("-glue_dir is required with -task (a folder holding %s/train.tsv and dev.tsv)", strings.ToUpper(c.Task))
	case c.Model == "":
		return bad("-model is required with -task: a RoBERTa directory (config.json, model.safetensors, vocab.json, merges.txt), e.g. the -out of 'pretrain'")
	case c.Adapter != "lily" && c.Adapter != "lora" && c.Adapter != "none":
		return bad("-adapter %q: use lily, lora or none", c.Adapter)
	case c.LilyR < 1 || c.LoraR < 1:
		return bad("-lily_r (%d) and -lora_r (%d) must be positive", c.LilyR, c.LoraR)
	case c.LilyStrideA < 0:
		return bad("-lily_stride_A %d must be positive (0 means: from the recipe)", c.LilyStrideA)
	case c.LilyNumB < 1:
		return bad("-lily_num_B %d must be positive", c.LilyNumB)
	case !finite(c.LilyScaling) || !finite(c.LoraAlpha):
		return bad("-lily_scaling %v and -lora_alpha %v must be finite", c.LilyScaling, c.LoraAlpha)
	case len(splitList(c.LilyTargets)) == 0 || len(splitList(c.LoraTargets)) == 0:
		return bad("-lily_target_modules and -lora_target_modules must name at least one module, e.g. query,value")
	case c.Epochs < 1 && c.MaxSteps < 1:
		return bad("-epochs %d: set a positive number of epochs or -max_steps", c.Epochs)
	case c.MaxSteps < 0:
		return bad("-max_steps %d must not be negative", c.MaxSteps)
	case c.BatchSize < 1:
		return bad("-batch_size %d must be positive", c.BatchSize)
	case c.Flags.Check() != nil:
		return c.Flags.Check()
	case c.MaxLen != 0 && c.MaxLen < 8:
		return bad("-max_len %d is too short; use at least 8", c.MaxLen)
	case !finite(c.HeadLR) || !finite(c.AdapterLR) || c.HeadLR < 0 || c.AdapterLR < 0:
		return bad("-head_lr %v and -adapter_lr %v must be non-negative numbers", c.HeadLR, c.AdapterLR)
	case !(c.WarmupRatio >= 0 && c.WarmupRatio < 1):
		return bad("-warmup_ratio %v must be in [0, 1)", c.WarmupRatio)
	case !finite(c.WeightDecay) || c.WeightDecay < 0:
		return bad("-weight_decay %v must be a non-negative number", c.WeightDecay)
	case c.EvalEvery < 0:
		return bad("-eval_every %d must not be negative", c.EvalEvery)
	}
	if _, err := lilyop.ParseRouting(c.LilyRouting); err != nil {
		return errors.Wrap(err, "-lily_routing")
	}
	return nil
}
