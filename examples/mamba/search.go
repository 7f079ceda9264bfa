package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/lilygo/lily/graphs/mamba"
	"github.com/lilygo/lily/internal/searchcmd"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/tokenizers/bytebpe"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
)

// kindSearch names the output folders of mamba search (internal/outdir).
const kindSearch = "mamba search"

// searchRunFile is each search run's record (its runResult, with the
// analysis of its update) in the run's folder.
const searchRunFile = "run.json"

// searchUsage explains the subcommand; -h prints it above the flags.
const searchUsage = `mamba search: find the Lily shape (r, stride_A, num_B) that adapts the model
best at a fixed number of trainable parameters, by successive halving.

  mamba search -lora_budget 2 -tolerance 0.05 -rungs 40,120 -seeds 1,2,3
  mamba search -model runs/mamba/pretrained -target_task sst2 -glue_dir ../shared/data/glue -lora_budget 2

It lists every Lily configuration on the sites of -methods (one Lily method:
lily_in or lily_dt_in) whose trainable-parameter count is within -tolerance
of the budget (the size of LoRA of rank -lora_budget on the same sites, or
-budget parameters), from the model's shapes. Without -model it first
pretrains the model as the comparison does, into <out>/pretrained. It runs
each shape for the first rung's adaptation steps (first seed), keeps the best
-keep fraction by best held-out perplexity on the target text, runs those for
the next rung's steps, and so on; the last rung runs every seed and ranks by
the mean. Every other flag applies to all runs as in the comparison, except
the ones search sets itself (-lily_r, -lily_stride_A, -lily_num_B, -steps);
-seed stays the pretraining seed. Each run writes run.json (with the
analysis of its update), updates-*.png and its adapter to
<out>/rung<i>-r<R>-s<S>-b<B>-seed<N>/; search.json, search.md (every round
ranked) and search.png go to <out> after every run. Ctrl-C stops the current
run cleanly and keeps the finished rounds.

Flags:
`

// searchCmd runs the search subcommand: package searchcmd drives it, and
// each run is one adaptation (adapt).
func searchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c config
	var sf searchcmd.Flags
	fs := newFlags(&c, stderr)
	fs.Init("mamba search", flag.ContinueOnError)
	sf.Register(fs, searchcmd.Refused("", "steps", [3]string{"lily_r", "lily_stride_A", "lily_num_B"}, nil)) // takes over -seeds: the last round's seeds
	for name, v := range map[string]string{"out": "runs/mamba-search", "methods": "lily_in"} {
		f := fs.Lookup(name)
		f.DefValue = v
		_ = f.Value.Set(v) // string flags
	}
	fs.Lookup("methods").Usage = "the Lily method whose sites are searched: lily_in (in_proj) or lily_dt_in (in_proj and dt_proj)"
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
	if err := c.validate(); err != nil {
		return errors.Wrap(err, "search")
	}
	world, err := train.World() // searchcmd.New refuses more than one process
	if err != nil {
		return err
	}
	ms, _ := parseMethods(c.Methods) // validated
	if len(ms) != 1 || ms[0].Kind != "lily" {
		return errors.Errorf("search: -methods %q; name one Lily method, lily_in or lily_dt_in", c.Methods)
	}
	m := ms[0]
	corp, err := loadCorpus(c)
	if err != nil {
		return err
	}
	res := &results{Config: c, BLAS: lilyop.BLAS}
	base, tok, err := baseModel(c, ms, corp, res, stdout)
	if err != nil {
		return err
	}
	mc := res.Model.Config
	routing, err := lilyop.ParseRouting(c.LilyRouting)
	if err != nil {
		return errors.Wrap(err, "-lily_routing")
	}
	s, err := searchcmd.New(searchcmd.Plan{Name: kindSearch, Out: c.Out, Overwrite: c.Overwrite, Flags: sf, Common: shared,
		Sites: mc.Sites(), Base: layers.LilyConfig{Scaling: c.LilyScaling, TargetModules: m.Targets, Routing: routing},
		Metric: "best held-out perplexity"})
	if err != nil {
		return err
	}
	if corp.Synthetic {
		fmt.Fprintf(stdout, "== SYNTHETIC data: source %s, target %s ==\n", corp.SourceName, corp.TargetName)
	}
	if res.Model.Pretrained {
		if err := pretrainAndSave(ctx, c, corp, tok, base, res, nil, world, stdout, stderr); err != nil {
			return err
		}
		if ctx.Err() != nil {
			fmt.Fprintf(stdout, "interrupted during pretraining: the model so far is in %s; no search run was made\n", res.Model.Dir)
			return nil
		}
	}
	tgt, heldOut, basePPL, err := searchTarget(c, corp, tok, base, mc, res.Model.EOS)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "target: %s; the model without an adapter has held-out perplexity %.3f\n", corp.TargetName, basePPL)
	_, err = s.Run(ctx, func(ctx context.Context, t searchcmd.Trial) (searchcmd.Outcome, error) {
		job := adaptJob{c: c, mc: mc, base: base, m: m, seed: t.Seed, train: tgt, heldOut: heldOut, basePPL: basePPL, baseDir: res.Model.Dir, comm: world}
		job.c.LilyR, job.c.LilyStrideA, job.c.LilyNumB = t.Candidate.R, t.Candidate.StrideA, t.Candidate.NumB
		job.c.Steps, job.c.Out = t.Steps, t.Dir
		return searchTrial(ctx, job, stderr)
	}, stdout)
	return err
}

// searchTarget returns the target's training windows and held-out tokens
// and the held-out perplexity of the model without an adapter.
func searchTarget(c config, corp corpus, tok *bytebpe.Tokenizer, base *layers.Store, mc mamba.Config, eos int) (windows, []int, float64, error) {
	tgt, err := newWindows(tokenStream(tok, corp.Target, eos), c.SeqLen, "target")
	if err != nil {
		return windows{}, nil, 0, err
	}
	heldOut := tokenStream(tok, corp.TargetEval, eos)
	if len(heldOut) < 2 {
		return windows{}, nil, 0, errors.New("the held-out target text has fewer than 2 tokens")
	}
	ev, err := newEvaluator(base, mc, nil, c.Batch, c.SeqLen)
	if err != nil {
		return windows{}, nil, 0, err
	}
	defer ev.close()
	ppl, err := ev.perplexity(heldOut)
	return tgt, heldOut, ppl, errors.Wrap(err, "the pretrained model")
}

// searchTrial is one run of a search: adapt with the job's shape, steps and
// seed; its record goes to the run's folder as run.json. The score is the
// best held-out perplexity of the run's evaluations after training started.
func searchTrial(ctx context.Context, job adaptJob, progressW io.Writer) (searchcmd.Outcome, error) {
	if err := os.MkdirAll(job.c.Out, 0o755); err != nil {
		return searchcmd.Outcome{}, errors.Wrap(err, "search")
	}
	r, err := adapt(ctx, job, progressW)
	if err != nil {
		return searchcmd.Outcome{}, err
	}
	if err := train.WriteJSON(filepath.Join(job.c.Out, searchRunFile), r); err != nil {
		return searchcmd.Outcome{}, err
	}
	o := searchcmd.Outcome{Score: math.NaN(), Final: r.Final, Base: job.basePPL, Interrupted: r.Interrupted}
	for _, e := range r.Evals {
		if e.Step > 0 && !(e.Perplexity >= o.Score) {
			o.Score = e.Perplexity
		}
	}
	return o, nil
}
