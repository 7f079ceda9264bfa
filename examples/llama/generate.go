package main

import (
	"flag"
	"fmt"
	"io"
	"math"

	"github.com/lilygo/lily/graphs/llama"
	"github.com/lilygo/lily/internal/memcheck"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
)

// genConfig holds the generate flags.
type genConfig struct {
	Checkpoint, Tokenizer, Adapter, Prompt, BaseDtype string
	Steps                                             int
	Temperature, TopP                                 float64
	Seed                                              uint64
}

// generateUsage explains the subcommand; -h prints it above the flags.
const generateUsage = `llama generate: continue a prompt with a LLaMA (a llama2.c file or a Hugging
Face directory; default: stories260K), as llama2.c's run does: -temperature 0 decodes greedily, otherwise
top-p sampling. Prints the text on stdout and the speed on stderr.

Flags:
`

// parseGenerate parses the generate flags; the defaults are llama2.c's
// (256 steps, temperature 1, top-p 0.9).
func parseGenerate(args []string, usageOut io.Writer) (genConfig, error) {
	c := genConfig{Steps: 256, Temperature: 1, TopP: 0.9, Seed: 42}
	fs := flag.NewFlagSet("llama generate", flag.ContinueOnError)
	fs.SetOutput(usageOut)
	fs.StringVar(&c.Checkpoint, "checkpoint", "", checkpointHelp)
	fs.StringVar(&c.Tokenizer, "tokenizer", "", tokenizerHelp)
	fs.StringVar(&c.Adapter, "adapter", "", "adapter directory written by finetune (its adapter/ folder); none by default")
	fs.StringVar(&c.Prompt, "prompt", "", "text to continue (BOS is prepended)")
	fs.IntVar(&c.Steps, "steps", c.Steps, "positions to run, prompt included, as llama2.c's -n (0: the model's maximum)")
	fs.Float64Var(&c.Temperature, "temperature", c.Temperature, "sampling temperature; 0 decodes greedily")
	fs.Float64Var(&c.TopP, "top_p", c.TopP, "nucleus sampling: draw from the most likely tokens holding this probability (1: all)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "sampling seed")
	fs.StringVar(&c.BaseDtype, "base_dtype", "f32", baseDtypeHelp)
	fs.Usage = func() {
		fmt.Fprint(usageOut, generateUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, errors.Errorf("unexpected argument %q (flags start with -; quote the prompt: -prompt \"...\")", fs.Arg(0))
	case !validBaseDtype(c.BaseDtype):
		return c, errors.Errorf("-base_dtype %q: use %s", c.BaseDtype, baseDtypes)
	case c.Steps < 0:
		return c, errors.Errorf("-steps %d must not be negative", c.Steps)
	case math.IsNaN(c.Temperature) || c.Temperature < 0:
		return c, errors.Errorf("-temperature %v must be a non-negative number", c.Temperature)
	case math.IsNaN(c.TopP) || c.TopP < 0 || c.TopP > 1:
		return c, errors.Errorf("-top_p %v must be in [0, 1]", c.TopP)
	}
	c.Checkpoint = orShared(c.Checkpoint, defaultCheckpoint)
	c.Tokenizer = tokenizerFor(c.Checkpoint, c.Tokenizer)
	return c, nil
}

// generateCmd runs the generate subcommand: the text goes to stdout, the
// speed to stderr.
func generateCmd(args []string, stdout, stderr io.Writer) error {
	c, err := parseGenerate(args, stderr)
	if err != nil {
		return err
	}
	b, err := loadBase(c.Checkpoint, c.Tokenizer, c.BaseDtype, func(cfg llama.Config) memcheck.Need {
		return generateNeed(cfg, c.Steps, len(c.Prompt)+2) // a prompt has at most one id per byte, and BOS
	})
	if err != nil {
		return err
	}
	var a layers.Adapter
	if c.Adapter != "" {
		if a, err = b.loadAdapter(c.Adapter); err != nil {
			return err
		}
	}
	res, err := llama.Generate(decodeConfig(b.cfg, c.Steps), b.store, a, b.tok, c.Prompt, llama.SampleOptions{Steps: c.Steps, Temperature: c.Temperature, TopP: c.TopP, Seed: c.Seed})
	if err != nil {
		return errors.Wrap(err, "generating")
	}
	fmt.Fprintln(stdout, res.Text)
	fmt.Fprintf(stderr, "%d tokens in %.3f s: %.1f tokens/s (BLAS %s)\n", len(res.Tokens)-res.Prompt, res.Elapsed.Seconds(), res.TokensPerSecond(), lilyop.BLAS)
	return nil
}
