// Command llama runs a LLaMA (by default the pretrained stories260K model of
// ../shared/data/llama2c, trained on children's stories) in Gorgonia: it
// generates text, and it adapts the model to a new text domain with Lily
// (arXiv 2407.09946), LoRA or full fine-tuning.
//
// Every subcommand's -checkpoint is a llama2.c checkpoint file or a Hugging
// Face LLaMA directory: config.json, model.safetensors (or the shards
// model-0000k-of-0000n.safetensors listed by model.safetensors.index.json),
// tokenizer.json (byte-level BPE as LLaMA 3's and llama synth's, BOS and
// EOS from config.json; or SentencePiece-style BPE as LLaMA 2's and
// TinyLlama's) — the layout huggingface-cli download and save_pretrained
// give. -base_dtype bf16 keeps the frozen weight matrices in bfloat16, and
// -base_dtype f16 in IEEE float16 (half the memory; products computed in
// float32; not for -adapter full or export). Before any weight is read, the memory the run needs is estimated
// and a run that does not fit is refused with the numbers.
//
// Subcommands (run any with -h for its flags):
//
//	go run ./examples/llama generate [-prompt "Once upon"] [-temperature 0]
//	go run ./examples/llama finetune [-adapter lily|lora|full] [flags]
//	go run ./examples/llama sweep [-seeds 1,2,3] [-run "NAME: FLAGS"]... [flags]
//	go run ./examples/llama search [-lora_budget 4] [-rungs 50,150] [-seeds 1,2,3] [flags]
//	go run ./examples/llama eval|export -adapter DIR [flags]
//	go run ./examples/llama synth -config tiny|tinyllama-1.1b|llama3.2-1b|llama3-8b -out DIR
//
// Without a subcommand it runs finetune with its defaults: Lily on the
// SST-2 training sentences (movie reviews, a domain the model never saw),
// evaluated by held-out perplexity on the SST-2 dev sentences; about 45 s on
// the 2-core development machine in either build (2026-12-04).
//
// generate decodes with a key/value cache, greedily (-temperature 0) or by
// top-p sampling, optionally with an adapter written by finetune (-adapter),
// and reports the speed in tokens per second.
//
// finetune trains on batches of whole sentences (BOS + the sentence's tokens,
// no EOS, right-padded to a multiple of 8 tokens), with AdamW under a linear
// schedule with warm-up, and evaluates the token-weighted perplexity of the
// held-out sentences (padding excluded) before training and every -eval_every
// steps. It writes results.json, perplexity.png and the adapter (a PEFT-style
// directory; for full fine-tuning every weight) to -out; for Lily and LoRA,
// results.json also holds the analysis of the adapter's updates (package
// updatestats; Lily's mixing averaged over the held-out sentences), plotted
// in updates.png.
//
// sweep runs several finetune configurations over several seeds in one
// process and writes each run's outputs, a summary (sweep.json, sweep.md)
// and one chart of every configuration's mean held-out perplexity curve.
//
// synth writes a Hugging Face LLaMA directory of a real architecture with
// seeded random weights (streamed to disk tensor by tensor) and a small
// byte-level BPE tokenizer, to test the Hugging Face path where no real
// checkpoint can be downloaded.
//
// Ctrl-C stops training after the current step; what was done is written
// and the exit status is 130.
// Build with -tags openblas to run the products on OpenBLAS instead of
// package gemm (about as fast; docs/performance.md).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
)

func main() {
	train.Main("llama", run)
}

// usage lists the subcommands.
const usage = `llama: text generation and domain adaptation (Lily, LoRA, full fine-tuning)
of a llama2.c model (by default stories260K from ../shared/data/llama2c) or a
Hugging Face LLaMA directory (-checkpoint DIR).

  llama generate [flags]   decode text (greedy with -temperature 0)
  llama finetune [flags]   adapt the model to SST-2 sentences (the default)
  llama sweep [flags]      several finetune configurations and seeds, one chart
  llama search [flags]     the best Lily shape at a fixed parameter budget (successive halving)
  llama eval [flags]       held-out perplexity with and without an adapter
  llama export [flags]     the adapter merged: llama2.c model.bin and a Hugging Face folder
  llama synth [flags]      a Hugging Face LLaMA folder of a real architecture with random weights

Run 'llama <subcommand> -h' for the flags.
`

// run dispatches to a subcommand; results go to stdout, progress bars and
// usage to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "finetune"
	if len(args) > 0 && (args[0] == "" || args[0][0] != '-') {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "generate":
		return generateCmd(args, stdout, stderr)
	case "finetune":
		c, err := parseFinetune(args, stderr)
		if err != nil {
			return err
		}
		_, err = finetune(ctx, c, stdout, stderr, nil)
		return err
	case "sweep":
		return sweepCmd(ctx, args, stdout, stderr)
	case "search":
		return searchCmd(ctx, args, stdout, stderr)
	case "eval", "export":
		c, err := parseUse(cmd, args, stderr)
		if err != nil {
			return err
		}
		if cmd == "eval" {
			_, err = runUseEval(c, stdout)
		} else {
			_, err = runExport(c, stdout)
		}
		return err
	case "synth":
		return synthCmd(args, stdout, stderr)
	case "help":
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	fmt.Fprint(stderr, usage)
	return errors.Errorf("unknown subcommand %q (use generate, finetune, sweep, search, eval, export or synth)", cmd)
}
