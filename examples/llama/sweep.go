package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/internal/outdir"
	"github.com/lilygo/lily/internal/sweep"
	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
)

// Output names of a sweep inside its -out.
const (
	sweepJSON     = "sweep.json"
	sweepMarkdown = "sweep.md"
	sweepPlot     = "sweep.png"
)

// defaultSweep is the experiment of docs/results.md: Lily and LoRA at two
// matched trainable-parameter budgets on every linear, full fine-tuning, and
// Lily's sequence routing against the reference batch routing.
var defaultSweep = []string{
	"lora r1: -adapter lora -lora_r 1 -lora_alpha 1",
	"lily r3: -adapter lily -lily_r 3 -lily_stride_A 5 -lily_num_B 2",
	"lora r4: -adapter lora -lora_r 4 -lora_alpha 4",
	"lily r13: -adapter lily -lily_r 13 -lily_stride_A 5 -lily_num_B 2",
	"lily r13 sequence: -adapter lily -lily_r 13 -lily_stride_A 5 -lily_num_B 2 -lily_routing sequence",
	"full: -adapter full",
}

// sweepRun is one finished (or interrupted) run of a sweep.
type sweepRun struct {
	Name            string  `json:"name"`
	Seed            uint64  `json:"seed"`
	Dir             string  `json:"dir"`
	Trainable       int     `json:"trainable_params"`
	Base            float64 `json:"base_perplexity"`
	Final           float64 `json:"final_perplexity"`
	Best            float64 `json:"best_perplexity"`
	BestStep        int     `json:"best_step"`
	Steps           int     `json:"steps_done"`
	Interrupted     bool    `json:"interrupted"`
	WallSeconds     float64 `json:"wall_seconds"`
	TokensPerSecond float64 `json:"train_tokens_per_second"`

	evals []evalRecord
}

// sweepVariant aggregates the runs of one configuration over seeds.
type sweepVariant struct {
	sweep.Spec
	Trainable int     `json:"trainable_params"`
	Runs      int     `json:"runs"`
	FinalMean float64 `json:"final_perplexity_mean"`
	FinalStd  float64 `json:"final_perplexity_std"` // sample standard deviation over seeds
	BestMean  float64 `json:"best_perplexity_mean"`
	BestStd   float64 `json:"best_perplexity_std"`
	Seconds   float64 `json:"mean_wall_seconds"`
	TokensPS  float64 `json:"mean_train_tokens_per_second"`
}

// sweepResult is sweep.json.
type sweepResult struct {
	Common      []string       `json:"common_args"`
	Seeds       []uint64       `json:"seeds"`
	BLAS        string         `json:"blas"`
	Base        float64        `json:"base_perplexity"`
	Variants    []sweepVariant `json:"variants"`
	Runs        []sweepRun     `json:"runs"`
	Interrupted bool           `json:"interrupted"`
	WallSeconds float64        `json:"wall_seconds"`
}

// sweepUsage explains the subcommand; -h prints it above the flags.
const sweepUsage = `llama sweep: run several finetune configurations over several seeds in one
process and compare them on one chart.

  llama sweep -seeds 1,2,3 -max_steps 200 \
      -run "lora r1: -adapter lora -lora_r 1 -lora_alpha 1" \
      -run "lily r3: -adapter lily -lily_r 3 -lily_num_B 2"

Every finetune flag given to sweep applies to all runs; a -run adds its own
(space-separated, no quoting) after them. Without -run the sweep of
docs/results.md runs:
  ` + "%s" + `
Each run writes its finetune outputs to <out>/<name>-seed<N>/; the sweep
writes sweep.json, sweep.md (a table of mean ± std held-out perplexity over
seeds) and sweep.png (mean held-out perplexity against steps after 0, one
line per configuration) to <out>, after every run. Ctrl-C stops the current run
cleanly (with a checkpoint) and skips the rest; -resume (with the same flags)
keeps the finished runs and continues the others exactly.

Flags:
`

// sweepJob is one configured run.
type sweepJob struct {
	spec int
	cfg  ftConfig
}

// sweepCmd runs the sweep subcommand.
func sweepCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var common ftConfig
	var specs sweep.Specs
	seedList, out := "1,2,3", "runs/llama-sweep"
	fs := flag.NewFlagSet("llama sweep", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addFinetuneFlags(fs, &common)
	fs.Var(&specs, "run", `a configuration "NAME: FLAGS" (repeatable; default: the docs/results.md sweep)`)
	fs.StringVar(&seedList, "seeds", seedList, "comma-separated seeds; every configuration runs once per seed")
	fs.Lookup("out").Usage = "sweep folder (default runs/llama-sweep)"
	fs.Lookup("seed").Usage = "not for sweep: use -seeds"
	fs.Usage = func() {
		fmt.Fprintf(stderr, sweepUsage, strings.Join(defaultSweep, "\n  "))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.Errorf("unexpected argument %q (flags start with -; quote each -run)", fs.Arg(0))
	}
	seeds, err := sweep.ParseSeeds(seedList)
	if err != nil {
		return err
	}
	shared, err := sweep.SharedArgs(fs, []string{"run", "seeds", "out", "overwrite", "resume"}, map[string]string{"seed": "sweep takes -seeds (a list), not -seed"})
	if err != nil {
		return err
	}
	if common.Out != "" {
		out = common.Out
	}
	if len(specs) == 0 {
		if specs, err = sweep.ParseSpecs(defaultSweep); err != nil {
			return err
		}
	}
	// Configure every run before starting any, so a bad flag fails at once.
	folders := map[string]string{}
	var jobs []sweepJob
	for i, sp := range specs {
		if prev, dup := folders[sweep.Slug(sp.Name)]; dup {
			return errors.Errorf("runs %q and %q would share a folder; give them distinct names", prev, sp.Name)
		}
		folders[sweep.Slug(sp.Name)] = sp.Name
		for _, seed := range seeds {
			a := append(append(append([]string{}, shared...), sp.Args...),
				"-seed", fmt.Sprint(seed), "-out", filepath.Join(out, fmt.Sprintf("%s-seed%d", sweep.Slug(sp.Name), seed)))
			c, err := parseFinetune(a, io.Discard)
			if err != nil {
				return errors.Wrapf(err, "run %q", sp.Name)
			}
			jobs = append(jobs, sweepJob{spec: i, cfg: c})
		}
	}
	folder := outdir.Folder{Flag: "-out", Path: out, Kind: kindSweep, Overwrite: common.Overwrite, Resumable: true}
	if err := folder.Begin(common.Resume); err != nil {
		return errors.Wrap(err, "sweep")
	}
	start := time.Now()
	res := &sweepResult{Common: shared, Seeds: seeds, BLAS: lilyop.BLAS}
	cache := corpusCache{}
	for k, job := range jobs {
		if ctx.Err() != nil {
			res.Interrupted = true
			break
		}
		name := specs[job.spec].Name
		fmt.Fprintf(stdout, "\n=== run %d/%d: %s, seed %d\n", k+1, len(jobs), name, job.cfg.Seed)
		r, done, err := resumeSweepRun(&job.cfg, common.Resume)
		if err != nil {
			return errors.Wrapf(err, "run %q seed %d", name, job.cfg.Seed)
		}
		if done {
			fmt.Fprintf(stdout, "finished before the resume: held-out perplexity %.3f (best %.3f)\n", r.Final.Perplexity, r.Best.Perplexity)
		} else if r, err = finetune(ctx, job.cfg, stdout, stderr, cache); err != nil {
			return errors.Wrapf(err, "run %q seed %d", name, job.cfg.Seed)
		}
		res.Runs = append(res.Runs, sweepRun{Name: name, Seed: job.cfg.Seed, Dir: job.cfg.Out, Trainable: r.TrainableParams,
			Base: r.Base.Perplexity, Final: r.Final.Perplexity, Best: r.Best.Perplexity, BestStep: r.Best.Step, Steps: r.Steps,
			Interrupted: r.Interrupted, WallSeconds: r.WallSeconds, TokensPerSecond: r.TokensPerSecond, evals: r.Evals})
		res.Interrupted = r.Interrupted
		res.WallSeconds = time.Since(start).Seconds()
		if err := writeSweep(folder, specs, res, !r.Interrupted && k == len(jobs)-1); err != nil {
			return err
		}
	}
	if len(res.Runs) == 0 {
		fmt.Fprintln(stdout, "interrupted before the first run; nothing written")
		return nil
	}
	fmt.Fprintf(stdout, "\n%s", sweepTable(res))
	fmt.Fprintf(stdout, "wrote %s, %s and %s to %s (%.0f s)\n", sweepJSON, sweepMarkdown, sweepPlot, out, res.WallSeconds)
	return nil
}

// resumeSweepRun prepares a run of a resumed sweep: a run that finished
// is not run again (its results are returned, done true), an unfinished one
// with a checkpoint continues from it, and one stopped before its first
// checkpoint starts again.
func resumeSweepRun(c *ftConfig, resume bool) (res *ftResult, done bool, err error) {
	if !resume {
		return nil, false, nil
	}
	rec, ok, err := outdir.ReadRecord(atomicfile.Resolve(c.Out))
	switch {
	case err != nil:
		return nil, false, err
	case !ok:
		return nil, false, nil
	case !rec.Finished:
		c.Resume = train.HasCheckpoint(train.CheckpointDir(c.Out))
		c.Overwrite = !c.Resume
		return nil, false, nil
	}
	b, err := os.ReadFile(filepath.Join(atomicfile.Resolve(c.Out), resultsFile))
	if err != nil {
		return nil, false, errors.Wrap(err, "reading a finished run")
	}
	res = &ftResult{}
	if err := json.Unmarshal(b, res); err != nil {
		return nil, false, errors.Wrapf(err, "reading %s", filepath.Join(c.Out, resultsFile))
	}
	return res, true, nil
}

// writeSweep aggregates the runs so far and replaces sweep.json, sweep.md,
// sweep.png and the run record in the sweep's folder together, keeping the
// runs' folders; finished says that the last run is done.
func writeSweep(folder outdir.Folder, specs []sweep.Spec, res *sweepResult, finished bool) error {
	res.Variants = nil
	var series []train.Series
	for _, sp := range specs {
		var runs []sweepRun
		for _, r := range res.Runs {
			if r.Name == sp.Name {
				runs = append(runs, r)
			}
		}
		if len(runs) == 0 {
			continue
		}
		v := sweepVariant{Spec: sp, Trainable: runs[0].Trainable, Runs: len(runs)}
		var finals, bests []float64
		for _, r := range runs {
			finals, bests = append(finals, r.Final), append(bests, r.Best)
			v.Seconds += r.WallSeconds / float64(len(runs))
			v.TokensPS += r.TokensPerSecond / float64(len(runs))
		}
		v.FinalMean, v.FinalStd = sweep.MeanStd(finals)
		v.BestMean, v.BestStd = sweep.MeanStd(bests)
		res.Variants = append(res.Variants, v)
		series = append(series, meanCurve(sp.Name, runs))
	}
	res.Base = res.Runs[0].Base
	return folder.Update(finished, func(dir string) error {
		if err := train.WriteJSON(filepath.Join(dir, sweepJSON), res); err != nil {
			return err
		}
		if err := atomicfile.WriteBytes(filepath.Join(dir, sweepMarkdown), []byte(sweepTable(res))); err != nil {
			return errors.Wrap(err, "writing the sweep table")
		}
		title := fmt.Sprintf("held-out perplexity, mean over seeds (base model: %.2f)", res.Base)
		return train.Plot(filepath.Join(dir, sweepPlot), title, "step", "perplexity", series...)
	})
}

// meanCurve averages the held-out perplexity of runs at the steps after 0
// that every run evaluated (step 0, the base model, is the same for all and
// would squeeze the differences on a linear axis).
func meanCurve(name string, runs []sweepRun) train.Series {
	sum, count := map[int]float64{}, map[int]int{}
	var steps []int
	for _, r := range runs {
		for _, e := range r.evals {
			if count[e.Step] == 0 {
				steps = append(steps, e.Step)
			}
			sum[e.Step] += e.Perplexity
			count[e.Step]++
		}
	}
	s := train.Series{Name: fmt.Sprintf("%s (%d runs)", name, len(runs))}
	for _, st := range steps {
		if st > 0 && count[st] == len(runs) {
			s.X, s.Y = append(s.X, float64(st)), append(s.Y, sum[st]/float64(len(runs)))
		}
	}
	return s
}

// sweepTable renders the variants as a Markdown table.
func sweepTable(res *sweepResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| configuration | trainable params | held-out ppl, final (mean ± std) | best | runs | s/run | train tokens/s |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| base model (no training) | 0 | %.3f | | | | |\n", res.Base)
	for _, v := range res.Variants {
		fmt.Fprintf(&b, "| %s | %s | %.3f ± %.3f | %.3f ± %.3f | %d | %.0f | %.0f |\n", v.Name, commas(v.Trainable),
			v.FinalMean, v.FinalStd, v.BestMean, v.BestStd, v.Runs, v.Seconds, v.TokensPS)
	}
	if res.Interrupted {
		b.WriteString("\n(interrupted: not every run finished)\n")
	}
	return b.String()
}

// commas formats n with thousands separators.
func commas(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
