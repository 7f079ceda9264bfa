// Command roberta-glue fine-tunes a RoBERTa encoder on GLUE with Lily
// (arXiv 2407.09946), LoRA or only a classifier head, as the Lily paper's
// RoBERTa-base GLUE experiments do, and pretrains small RoBERTa encoders from
// scratch with masked-language modelling.
//
// Five training modes (run with -h for every flag and the per-task recipe):
//
//	go run ./examples/roberta-glue                      # synthetic demo, a few minutes
//	go run ./examples/roberta-glue pretrain -glue_dir ../shared/data/glue -out runs/pretrain
//	go run ./examples/roberta-glue -task rte -glue_dir ../shared/data/glue -model runs/pretrain -adapter lily
//	go run ./examples/roberta-glue sweep -glue_dir ../shared/data/glue -model runs/pretrain
//	go run ./examples/roberta-glue search -task rte -glue_dir ../shared/data/glue -model runs/pretrain -lora_budget 8
//
// and, for a fine-tuned adapter (the adapter/ folder of a run), three more:
//
//	go run ./examples/roberta-glue eval -model runs/pretrain -adapter runs/rte-lily/adapter -glue_dir ../shared/data/glue
//	go run ./examples/roberta-glue predict -model runs/pretrain -adapter runs/rte-lily/adapter -glue_dir ../shared/data/glue -out submit
//	go run ./examples/roberta-glue export -model runs/pretrain -adapter runs/rte-lily/adapter -glue_dir ../shared/data/glue -calibrate -out runs/rte-merged
//
// Fine-tuning freezes the encoder, attaches the adapter to the target
// modules, adds a fresh classification head (one output and an MSE loss for
// STS-B) and trains both with AdamW at their own learning rates under a
// linear schedule with warm-up. Batches are bucketed by length (padded to a
// multiple of 8); one graph is compiled per (batch size, length, mode) and a
// bounded cache keeps the recently used ones. The dev set is evaluated after
// every epoch (or every -eval_every steps) and the best evaluation is
// reported, as the paper does; the adapter and head of the best evaluation
// are saved in PEFT's layout.
//
// Fine-tuning, pretraining and sweeps train with train.Run: -grad_accum,
// MPI ranks (built with -tags mpi, under mpirun; rank 0 writes) and
// checkpoints every -save_every steps that -resume continues bit for bit.
//
// The default pretraining configuration (2 layers, hidden 128, 4 heads,
// intermediate 512, 64 positions, batch 32, a 2000-merge tokenizer, 0.71M
// parameters, weights drawn with standard deviation 0.05, peak learning rate
// 1e-3) trains for 30 minutes (-minutes 30): the step budget is fitted to
// the time once, from 5 forward and backward passes before training (a
// -resume keeps it, so that the resumed run is exact). Built with
// -tags openblas on the 2-core development machine it ran 11,161 steps at
// 13,800 tokens/s and reached held-out MLM loss 3.53 (35% of masked tokens
// right); HF's usual standard deviation 0.02, a higher learning rate or
// fewer steps leave it on the word-frequency plateau near 5.9, where it is
// useless for fine-tuning (docs/results.md).
package main

import (
	"context"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
)

// gcPercent replaces Go's default GOGC of 100 unless GOGC is set: Gorgonia
// allocates every activation afresh at each step, so with the default the
// heap grows to twice the live graphs plus a step's allocations (RTE
// fine-tuning of the default pretrained model peaked at 7 GB); at 50 it
// peaked at 2.3 GB, at the same speed.
const gcPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	train.Main("roberta-glue", run)
}

// afterStep, when set, is called after every optimiser step of a
// fine-tuning or pretraining run that run starts; tests set it to kill the
// process there.
var afterStep func(steps int)

// run dispatches to the modes (demo, fine-tuning, pretrain, sweep, and eval,
// predict and export of a fine-tuned model); progress bars and usage go to
// stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "sweep" {
		return runSweep(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "search" {
		return runSearch(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && (args[0] == "eval" || args[0] == "predict" || args[0] == "export") {
		c, err := parseUse(args[0], args[1:], stderr)
		if err != nil {
			return err
		}
		switch c.Mode {
		case "eval":
			_, err = runEval(c, stdout)
		case "predict":
			err = runPredict(c, os.Stdin, stdout)
		case "export":
			_, err = runExport(c, stdout)
		}
		return err
	}
	if len(args) > 0 && args[0] == "pretrain" {
		c, set, err := parsePretrain(args[1:], stderr)
		if err != nil {
			return err
		}
		_, err = pretrain(ctx, c, set, stdout, runHooks{progress: stderr, afterStep: afterStep})
		return err
	}
	c, set, err := parseFinetune(args, stderr)
	if err != nil {
		return err
	}
	if c.Task != "" {
		_, err = finetune(ctx, c, stdout, runHooks{progress: stderr, afterStep: afterStep})
		return err
	}
	var other []string
	for name := range set {
		if name != "out" && name != "seed" && name != "overwrite" {
			other = append(other, "-"+name)
		}
	}
	if len(other) > 0 {
		sort.Strings(other)
		return errors.Errorf("%s only apply to fine-tuning, which needs -task (without -task the synthetic demo runs; it takes only -out, -overwrite and -seed)", strings.Join(other, ", "))
	}
	_, err = demo(ctx, c.Out, c.Overwrite, defaultDemo(c.Seed), stdout, runHooks{progress: stderr})
	return err
}
