package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
)

// allLinears lists every adaptable linear of a LLaMA block; "all" in a
// target list stands for them.
const allLinears = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"

// Default peak learning rates per method (-lr 0 picks them): adapters start
// at zero and need large steps; full fine-tuning moves pretrained weights
// and needs small ones.
const (
	defaultAdapterLR = 1e-2
	defaultFullLR    = 2e-3
)

// ftConfig is the configuration of one fine-tuning run; its JSON form is
// written to results.json.
type ftConfig struct {
	Checkpoint    string `json:"checkpoint"`
	Tokenizer     string `json:"tokenizer"`
	GlueDir       string `json:"glue_dir,omitempty"`
	GlueTask      string `json:"glue_task,omitempty"`
	TrainFile     string `json:"train_file,omitempty"`
	EvalFile      string `json:"eval_file,omitempty"`
	TrainExamples int    `json:"train_examples"`
	EvalExamples  int    `json:"eval_examples"`

	Adapter     string  `json:"adapter"`
	LilyR       int     `json:"lily_r"`
	LilyStrideA int     `json:"lily_stride_A"`
	LilyNumB    int     `json:"lily_num_B"`
	LilyScaling float64 `json:"lily_scaling"`
	LilyTargets string  `json:"lily_target_modules"`
	LilyRouting string  `json:"lily_routing"`
	LilyUniform bool    `json:"lily_uniform,omitempty"`
	LoraR       int     `json:"lora_r"`
	LoraAlpha   float64 `json:"lora_alpha"`
	LoraTargets string  `json:"lora_target_modules"`

	MaxSteps    int     `json:"max_steps"`
	BatchSize   int     `json:"batch_size"`
	MaxLen      int     `json:"max_len"`
	LR          float64 `json:"lr"`
	WarmupRatio float64 `json:"warmup_ratio"`
	WeightDecay float64 `json:"weight_decay"`
	EvalEvery   int     `json:"eval_every"`
	Seed        uint64  `json:"seed"`
	Out         string  `json:"out"`
	Overwrite   bool    `json:"-"`
	PEFTLayout  bool    `json:"peft_layout"`
	BaseDtype   string  `json:"base_dtype"`
	train.Flags
}

// defaultConfig is what finetune runs with no flags: the protocol of
// docs/results.md (150 steps of 32 sentences, max_len 128, which keeps 99% of
// the SST-2 dev sentences whole) with Lily and LoRA at the same budget
// (23,738 and 23,120 trainable parameters on every linear).
func defaultConfig() ftConfig {
	return ftConfig{GlueTask: "sst2", Adapter: "lily",
		LilyR: 13, LilyStrideA: 5, LilyNumB: 2, LilyScaling: 1, LilyTargets: allLinears, LilyRouting: "batch",
		LoraR: 4, LoraAlpha: 4, LoraTargets: allLinears,
		MaxSteps: 150, BatchSize: 32, MaxLen: 128, WarmupRatio: 0.06, EvalEvery: 50, Seed: 1, BaseDtype: "f32"}
}

// finetuneUsage explains the subcommand; -h prints it above the flags.
const finetuneUsage = `llama finetune: adapt a LLaMA (a llama2.c file or a Hugging Face directory;
default: stories260K, trained on children's stories) to a new text domain and
measure held-out perplexity.

By default the training text is the SST-2 training sentences (movie-review
language the model never saw) and the held-out text the SST-2 dev sentences.
Each sentence is one sequence: BOS + its tokens (no EOS), truncated to
-max_len, right-padded to a multiple of 8 in its batch. Perplexity is
token-weighted over every predicted (non-padding) token.

-adapter lily | lora | full: Lily or LoRA on the target modules (the model is
frozen), or full fine-tuning (every weight trainable, no adapter). Target
lists are comma-separated module names; "all" means every linear of a block
(` + allLinears + `).

Writes results.json, perplexity.png and adapter/ (PEFT-style; for full
fine-tuning every weight; the weights of the best held-out evaluation) to
-out, replacing the folder as a whole; for Lily and LoRA also updates.png,
the effective rank of each site's update (results.json's "analysis"). An
-out that holds a finished run or another kind of run is refused unless
-overwrite is given. Load it with 'llama generate -adapter DIR'. Ctrl-C
stops after the current step, still writes them and exits with status 130.

Flags:
`

// addFinetuneFlags registers the fine-tuning flags on fs, bound to c, whose
// values are the defaults.
func addFinetuneFlags(fs *flag.FlagSet, c *ftConfig) {
	fs.StringVar(&c.Checkpoint, "checkpoint", "", checkpointHelp)
	fs.StringVar(&c.Tokenizer, "tokenizer", "", tokenizerHelp)
	fs.StringVar(&c.GlueDir, "glue_dir", "", "GLUE directory for the text (default ../shared/data/"+defaultGlueDir+")")
	fs.StringVar(&c.GlueTask, "glue_task", c.GlueTask, "GLUE task whose train sentences are trained on and dev sentences held out")
	fs.StringVar(&c.TrainFile, "train_file", "", "plain-text training file, one example per line (instead of GLUE; needs -eval_file)")
	fs.StringVar(&c.EvalFile, "eval_file", "", "plain-text held-out file, one example per line")
	fs.IntVar(&c.TrainExamples, "train_examples", 0, "use only the first N training examples (0: all)")
	fs.IntVar(&c.EvalExamples, "eval_examples", 0, "use only the first N held-out examples (0: all)")
	fs.StringVar(&c.Adapter, "adapter", c.Adapter, "lily, lora, or full (full fine-tuning: every weight trainable)")
	fs.IntVar(&c.LilyR, "lily_r", c.LilyR, "Lily rank r")
	fs.IntVar(&c.LilyStrideA, "lily_stride_A", c.LilyStrideA, "Lily: consecutive layers sharing one A (5 = one A per target for a 5-layer model)")
	fs.IntVar(&c.LilyNumB, "lily_num_B", c.LilyNumB, "Lily: number of B experts shared by all layers of a target")
	fs.Float64Var(&c.LilyScaling, "lily_scaling", c.LilyScaling, "Lily scaling s multiplying the adapter output (not alpha/r)")
	fs.StringVar(&c.LilyTargets, "lily_target_modules", c.LilyTargets, "Lily: modules to adapt (comma-separated, or all)")
	fs.StringVar(&c.LilyRouting, "lily_routing", c.LilyRouting, "Lily routing: batch (reference: one mix per batch, padding included), sequence or token")
	fs.BoolVar(&c.LilyUniform, "lily_uniform", false, "Lily without routers: every layer mixes its B experts uniformly (the paper's \"monoscale\" ablation)")
	fs.IntVar(&c.LoraR, "lora_r", c.LoraR, "LoRA rank r")
	fs.Float64Var(&c.LoraAlpha, "lora_alpha", c.LoraAlpha, "LoRA alpha (the update is scaled by alpha/r)")
	fs.StringVar(&c.LoraTargets, "lora_target_modules", c.LoraTargets, "LoRA: modules to adapt (comma-separated, or all)")
	fs.IntVar(&c.MaxSteps, "max_steps", c.MaxSteps, "optimiser steps")
	fs.IntVar(&c.BatchSize, "batch_size", c.BatchSize, "sentences per batch (training and evaluation)")
	fs.IntVar(&c.MaxLen, "max_len", c.MaxLen, "longest sequence in ids, BOS included; longer texts are truncated")
	fs.Float64Var(&c.LR, "lr", 0, fmt.Sprintf("peak learning rate (default %g for lily and lora, %g for full)", defaultAdapterLR, defaultFullLR))
	fs.Float64Var(&c.WarmupRatio, "warmup_ratio", c.WarmupRatio, "fraction of the steps with linearly rising learning rate (then linear decay to 0)")
	fs.Float64Var(&c.WeightDecay, "weight_decay", c.WeightDecay, "AdamW decoupled weight decay")
	fs.IntVar(&c.EvalEvery, "eval_every", c.EvalEvery, "held-out evaluation every N steps (also before training and at the end)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "random seed (adapter initialisation, batch order)")
	fs.StringVar(&c.Out, "out", "", "results folder (default runs/llama-<adapter>)")
	fs.BoolVar(&c.Overwrite, "overwrite", false, "replace -out when it holds a finished run or another kind of run")
	c.Flags.Register(fs)
	fs.StringVar(&c.BaseDtype, "base_dtype", c.BaseDtype, baseDtypeHelp)
	fs.BoolVar(&c.PEFTLayout, "peft_layout", false, "save the adapter exactly as PEFT does (Lily's shared tensors repeated per layer, no lily_go config section), so PeftModel.from_pretrained loads it without a warning; Lily needs batch routing")
}

// parseFinetune parses finetune arguments into a resolved, validated
// configuration.
func parseFinetune(args []string, usageOut io.Writer) (ftConfig, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("llama finetune", flag.ContinueOnError)
	fs.SetOutput(usageOut)
	addFinetuneFlags(fs, &c)
	fs.Usage = func() {
		fmt.Fprint(usageOut, finetuneUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, errors.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	c.resolve()
	return c, c.validate()
}

// resolve fills the defaults that depend on other settings: data paths,
// the learning rate, the output folder, "all" in target lists.
func (c *ftConfig) resolve() {
	c.Checkpoint = orShared(c.Checkpoint, defaultCheckpoint)
	c.Tokenizer = tokenizerFor(c.Checkpoint, c.Tokenizer)
	if c.TrainFile == "" {
		c.GlueDir = orShared(c.GlueDir, defaultGlueDir)
	}
	if c.LR == 0 {
		c.LR = defaultAdapterLR
		if c.Adapter == "full" {
			c.LR = defaultFullLR
		}
	}
	if c.Out == "" {
		c.Out = "runs/llama-" + c.Adapter
	}
	c.LilyTargets = strings.Join(splitList(c.LilyTargets), ",")
	c.LoraTargets = strings.Join(splitList(c.LoraTargets), ",")
}

// validate reports the first unusable setting.
func (c ftConfig) validate() error {
	bad := errors.Errorf
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case c.Adapter != "lily" && c.Adapter != "lora" && c.Adapter != "full":
		return bad("-adapter %q: use lily, lora or full", c.Adapter)
	case (c.TrainFile == "") != (c.EvalFile == ""):
		return bad("-train_file and -eval_file go together")
	case c.TrainExamples < 0 || c.EvalExamples < 0:
		return bad("-train_examples %d and -eval_examples %d must not be negative", c.TrainExamples, c.EvalExamples)
	case c.LilyR < 1 || c.LoraR < 1:
		return bad("-lily_r (%d) and -lora_r (%d) must be positive", c.LilyR, c.LoraR)
	case c.LilyStrideA < 1:
		return bad("-lily_stride_A %d must be positive", c.LilyStrideA)
	case c.LilyNumB < 2:
		return bad("-lily_num_B %d: Lily needs at least 2 experts for its router", c.LilyNumB)
	case !finite(c.LilyScaling) || !finite(c.LoraAlpha):
		return bad("-lily_scaling %v and -lora_alpha %v must be finite", c.LilyScaling, c.LoraAlpha)
	case c.LilyTargets == "" || c.LoraTargets == "":
		return bad("-lily_target_modules and -lora_target_modules must name at least one module, e.g. q_proj,v_proj or all")
	case c.MaxSteps < 1:
		return bad("-max_steps %d must be positive", c.MaxSteps)
	case c.Flags.Check() != nil:
		return c.Flags.Check()
	case c.BatchSize < 1:
		return bad("-batch_size %d must be positive", c.BatchSize)
	case c.MaxLen < 2:
		return bad("-max_len %d is too short: a sequence needs BOS and one token", c.MaxLen)
	case !finite(c.LR) || c.LR <= 0:
		return bad("-lr %v must be a positive number", c.LR)
	case !(c.WarmupRatio >= 0 && c.WarmupRatio < 1):
		return bad("-warmup_ratio %v must be in [0, 1)", c.WarmupRatio)
	case !finite(c.WeightDecay) || c.WeightDecay < 0:
		return bad("-weight_decay %v must be a non-negative number", c.WeightDecay)
	case !validBaseDtype(c.BaseDtype):
		return bad("-base_dtype %q: use %s", c.BaseDtype, baseDtypes)
	case c.BaseDtype != "f32" && c.Adapter == "full":
		return bad("-adapter full trains every weight, which half-precision storage (-base_dtype %s) cannot hold; use -base_dtype f32", c.BaseDtype)
	case c.EvalEvery < 0:
		return bad("-eval_every %d must not be negative (0: only before and after training)", c.EvalEvery)
	}
	if _, err := lilyop.ParseRouting(c.LilyRouting); err != nil {
		return errors.Wrap(err, "-lily_routing")
	}
	return nil
}

// splitList splits a comma-separated list, dropping blanks and expanding
// "all" into every linear of a block.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		switch p = strings.TrimSpace(p); p {
		case "":
		case "all":
			out = append(out, strings.Split(allLinears, ",")...)
		default:
			out = append(out, p)
		}
	}
	return out
}

// describeAdapter summarises the adapter settings in one line.
func describeAdapter(c ftConfig) string {
	switch c.Adapter {
	case "lily":
		routing := c.LilyRouting
		if c.LilyUniform {
			routing = "none (uniform mixing)"
		}
		return fmt.Sprintf("lily (r %d, stride_A %d, num_B %d, scaling %g, routing %s, targets %s)", c.LilyR, c.LilyStrideA, c.LilyNumB, c.LilyScaling, routing, c.LilyTargets)
	case "lora":
		return fmt.Sprintf("lora (r %d, alpha %g, targets %s)", c.LoraR, c.LoraAlpha, c.LoraTargets)
	}
	return "full fine-tuning (every weight trainable)"
}
