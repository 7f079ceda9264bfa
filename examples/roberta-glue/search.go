package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/lilygo/lily/glue"
	"github.com/lilygo/lily/internal/searchcmd"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
)

// kindSearch names the output folders of roberta-glue search
// (internal/outdir).
const kindSearch = "roberta-glue search"

// searchUsage explains the search mode; -h prints it above the flags.
const searchUsage = `roberta-glue search: find the Lily shape (r, stride_A, num_B) that fine-tunes
best on one GLUE task at a fixed number of trainable parameters, by successive
halving.

  roberta-glue search -task rte -glue_dir ../shared/data/glue -model runs/encoder \
      -lora_budget 8 -tolerance 0.05 -rungs 200,600 -seeds 1,2,3

It lists every Lily configuration whose adapter has within -tolerance of the
budget's trainable parameters (the size of LoRA of rank -lora_budget on
-lily_target_modules, or -budget parameters; the classifier head, the same
for all, is not counted), from the model's shapes. It runs each for the first
rung's steps (first seed), keeps the best -keep fraction by the best dev
value of the task's main metric (accuracy, Matthews correlation for CoLA,
Pearson for STS-B; higher is better), runs those for the next rung's steps,
and so on; the last rung runs every seed and ranks by the mean. Every
fine-tuning flag given to search applies to all runs (the task's recipe fills
what no flag sets), except the ones search sets itself (-adapter, -lily_r,
-lily_stride_A, -lily_num_B, -max_steps, -seed). Each run writes its
fine-tuning outputs to <out>/rung<i>-r<R>-s<S>-b<B>-seed<N>/; search.json,
search.md (every round ranked) and search.png go to <out> after every run.
Ctrl-C stops the current run cleanly and keeps the finished rounds.

Flags:
`

// runSearch runs the search mode: package searchcmd drives it, and each
// run is one fine-tuning.
func runSearch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var common ftConfig
	var sf searchcmd.Flags
	fs := newFinetuneFlags(&common, stderr)
	sf.Register(fs, searchcmd.Refused("seed", "max_steps", [3]string{"lily_r", "lily_stride_A", "lily_num_B"},
		map[string]string{"adapter": "search only runs Lily: -adapter is not a search flag", "epochs": "search takes -rungs (steps of each round), not -epochs"}))
	fs.Lookup("out").Usage = "search folder (default runs/<task>-search)"
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
	if common.Task == "" {
		return errors.New("search needs -task (one GLUE task), -glue_dir and -model")
	}
	probe, _, err := parseFinetune(append(append([]string{}, shared...), "-adapter", "lily", "-max_steps", "1"), io.Discard)
	if err != nil {
		return errors.Wrap(err, "search")
	}
	task, err := glue.Lookup(probe.Task)
	if err != nil {
		return err
	}
	out := common.Out
	if out == "" {
		out = fmt.Sprintf("runs/%s-search", task.Name)
	}
	ck, _, err := loadEncoder(probe.Model, false)
	if err != nil {
		return err
	}
	routing, err := lilyop.ParseRouting(probe.LilyRouting)
	if err != nil {
		return errors.Wrap(err, "-lily_routing")
	}
	base := layers.LilyConfig{Scaling: probe.LilyScaling, TargetModules: splitList(probe.LilyTargets), Routing: routing}
	s, err := searchcmd.New(searchcmd.Plan{Name: kindSearch, Out: out, Overwrite: common.Overwrite, Flags: sf, Common: shared,
		Sites: ck.Config.Sites(), Base: base, Metric: "best dev " + task.Primary, HigherIsBetter: true})
	if err != nil {
		return err
	}
	_, err = s.Run(ctx, func(ctx context.Context, t searchcmd.Trial) (searchcmd.Outcome, error) {
		return searchTrial(ctx, shared, t, stdout, stderr)
	}, stdout)
	return err
}

// searchTrial is one run of a search: fine-tuning with the trial's shape,
// steps and seed, scored by the best dev value of the task's main metric
// (NaN when interrupted before the first evaluation).
func searchTrial(ctx context.Context, shared []string, t searchcmd.Trial, stdout, stderr io.Writer) (searchcmd.Outcome, error) {
	c := t.Candidate
	a := append(append([]string{}, shared...), "-adapter", "lily", "-lily_r", strconv.Itoa(c.R), "-lily_stride_A", strconv.Itoa(c.StrideA),
		"-lily_num_B", strconv.Itoa(c.NumB), "-max_steps", strconv.Itoa(t.Steps), "-seed", fmt.Sprint(t.Seed), "-out", t.Dir)
	cfg, _, err := parseFinetune(a, io.Discard)
	if err != nil {
		return searchcmd.Outcome{}, err
	}
	r, err := finetune(ctx, cfg, stdout, runHooks{progress: stderr})
	if err != nil {
		return searchcmd.Outcome{}, errors.Wrap(err, "roberta-glue search")
	}
	o := searchcmd.Outcome{Score: math.NaN(), Final: math.NaN(), Interrupted: r.Interrupted}
	if r.Best != nil {
		o.Score = r.Best.Value
	}
	if n := len(r.Evals); n > 0 && r.Best != nil {
		o.Final = r.Evals[n-1].Metrics[r.Best.Metric]
	}
	return o, nil
}
