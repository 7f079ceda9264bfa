package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/lilygo/lily/internal/searchcmd"
	"github.com/pkg/errors"
)

// kindSearch names the output folders of llama search (internal/outdir).
const kindSearch = "llama search"

// searchUsage explains the subcommand; -h prints it above the flags.
const searchUsage = `llama search: find the Lily shape (r, stride_A, num_B) that fine-tunes best at a
fixed number of trainable parameters, by successive halving.

  llama search -lora_budget 4 -tolerance 0.05 -rungs 50,150 -seeds 1,2,3

It lists every Lily configuration whose trainable-parameter count is within
-tolerance of the budget (the size of LoRA of rank -lora_budget on the same
target modules, or -budget parameters), counted from the model's shapes. It
runs each for the first rung's steps (first seed), keeps the best -keep
fraction by best held-out perplexity, runs those for the next rung's steps,
and so on; the last rung runs every seed and ranks by the mean. Every
finetune flag given to search applies to all runs, except the ones search
sets itself (-adapter, -lily_r, -lily_stride_A, -lily_num_B, -max_steps,
-seed). Each run writes its finetune outputs to
<out>/rung<i>-r<R>-s<S>-b<B>-seed<N>/; search.json, search.md (every round
ranked) and search.png (perplexity against steps of the last round's
candidates) go to <out> after every run. Ctrl-C stops the current run
cleanly and keeps the finished rounds.

Flags:
`

// searchCmd runs the search subcommand: package searchcmd drives it, and
// each run is one finetune.
func searchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var common ftConfig
	var sf searchcmd.Flags
	fs := flag.NewFlagSet("llama search", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addFinetuneFlags(fs, &common)
	sf.Register(fs, searchcmd.Refused("seed", "max_steps", [3]string{"lily_r", "lily_stride_A", "lily_num_B"},
		map[string]string{"adapter": "search only runs Lily: -adapter is not a search flag"}))
	fs.Lookup("out").Usage = "search folder (default runs/llama-search)"
	fs.Usage = func() {
		fmt.Fprint(stderr, searchUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	shared, err := sf.Parse(fs)
	if err != nil {
		return err
	}
	out := "runs/llama-search"
	if common.Out != "" {
		out = common.Out
	}
	probe, err := parseFinetune(append(append([]string{}, shared...), "-adapter", "lily"), io.Discard)
	if err != nil {
		return err
	}
	b, err := loadBase(probe.Checkpoint, probe.Tokenizer, probe.BaseDtype, nil)
	if err != nil {
		return err
	}
	base, err := lilyConfig(probe)
	if err != nil {
		return err
	}
	s, err := searchcmd.New(searchcmd.Plan{Name: kindSearch, Out: out, Overwrite: common.Overwrite, Flags: sf, Common: shared,
		Sites: b.cfg.Sites(), Base: base, Metric: "best held-out perplexity"})
	if err != nil {
		return err
	}
	cache := corpusCache{}
	_, err = s.Run(ctx, func(ctx context.Context, t searchcmd.Trial) (searchcmd.Outcome, error) {
		return searchTrial(ctx, shared, t, stdout, stderr, cache)
	}, stdout)
	return err
}

// searchTrial is one run of a search: finetune with the trial's shape,
// steps and seed, scored by its best held-out perplexity.
func searchTrial(ctx context.Context, shared []string, t searchcmd.Trial, stdout, stderr io.Writer, cache corpusCache) (searchcmd.Outcome, error) {
	c := t.Candidate
	a := append(append([]string{}, shared...), "-adapter", "lily", "-lily_r", strconv.Itoa(c.R), "-lily_stride_A", strconv.Itoa(c.StrideA),
		"-lily_num_B", strconv.Itoa(c.NumB), "-max_steps", strconv.Itoa(t.Steps), "-seed", fmt.Sprint(t.Seed), "-out", t.Dir)
	cfg, err := parseFinetune(a, io.Discard)
	if err != nil {
		return searchcmd.Outcome{}, err
	}
	r, err := finetune(ctx, cfg, stdout, stderr, cache)
	if err != nil {
		return searchcmd.Outcome{}, errors.Wrap(err, "llama search")
	}
	return searchcmd.Outcome{Score: r.Best.Perplexity, Final: r.Final.Perplexity, Base: r.Base.Perplexity, Interrupted: r.Interrupted}, nil
}
