package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lilygo/lily/dataparallel"
	"github.com/lilygo/lily/glue"
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

// defaultSweepTasks are the tasks of docs/results.md.
const defaultSweepTasks = "sst2,rte,cola,qnli"

// defaultSweepRuns compare Lily and LoRA at nearly equal trainable
// parameters on query and value (for the 2-layer, hidden-128 encoder of the
// pretrain defaults: Lily r 8 with one A per layer and 2 B's, 8,256 adapter
// parameters; LoRA r 8, 8,192) and the classifier head alone. num_B is fixed
// at 2: the recipes' 3 or 4 B's (RTE, CoLA) would give Lily more parameters
// than LoRA on a 2-layer model.
var defaultSweepRuns = []string{
	"lily r8: -adapter lily -lily_r 8 -lily_num_B 2",
	"lora r8: -adapter lora -lora_r 8 -lora_alpha 8",
	"head only: -adapter none",
}

// sweepRun is one finished (or interrupted) fine-tuning run of a sweep.
type sweepRun struct {
	Task            string  `json:"task"`
	Name            string  `json:"name"`
	Seed            uint64  `json:"seed"`
	Dir             string  `json:"dir"`
	Metric          string  `json:"metric"`
	Best            float64 `json:"best"`
	BestStep        int     `json:"best_step"`
	Trainable       int     `json:"trainable_params"`
	AdapterParams   int     `json:"adapter_params"`
	Steps           int     `json:"steps_done"`
	Interrupted     bool    `json:"interrupted"`
	WallSeconds     float64 `json:"wall_seconds"`
	TokensPerSecond float64 `json:"train_tokens_per_second"`
}

// sweepRow aggregates one configuration on one task over seeds.
type sweepRow struct {
	Task          string    `json:"task"`
	Name          string    `json:"name"`
	Metric        string    `json:"metric"`
	Trainable     int       `json:"trainable_params"`
	AdapterParams int       `json:"adapter_params"`
	PerSeed       []float64 `json:"best_per_seed"`
	Mean          float64   `json:"best_mean"`
	Std           float64   `json:"best_std"` // sample standard deviation over seeds
	Seconds       float64   `json:"mean_wall_seconds"`
}

// sweepResult is sweep.json.
type sweepResult struct {
	Common      []string       `json:"common_args"`
	Tasks       []string       `json:"tasks"`
	TaskSteps   map[string]int `json:"task_steps,omitempty"`
	Specs       []sweep.Spec   `json:"runs_per_task"`
	Seeds       []uint64       `json:"seeds"`
	BLAS        string         `json:"blas"`
	Rows        []sweepRow     `json:"rows"`
	Runs        []sweepRun     `json:"runs"`
	Interrupted bool           `json:"interrupted"`
	WallSeconds float64        `json:"wall_seconds"`
}

// sweepUsage explains the sweep mode; -h prints it above the flags.
const sweepUsage = `roberta-glue sweep: fine-tune several configurations on several GLUE tasks
over several seeds in one process, and tabulate the best dev metric of each as
mean ± sample standard deviation.

  roberta-glue sweep -glue_dir ../shared/data/glue -model runs/encoder \
      -tasks sst2,rte -seeds 1,2,3 -task_steps sst2=2000,rte=500 \
      -run "lily r8: -adapter lily -lily_r 8" -run "lora r8: -adapter lora -lora_r 8"

Every fine-tuning flag given to sweep applies to all runs (the task recipes
fill what no flag sets, as for a single run); a -run adds its own flags
(space-separated, no quoting) after them. Without -run:
  ` + "%s" + `
Each run writes its fine-tuning outputs to <out>/<task>/<name>-seed<N>/; the
sweep writes sweep.json, sweep.md (the table) and sweep.png (mean best metric
per task and configuration) to <out> after every run. Ctrl-C stops the current
run cleanly (with a checkpoint) and skips the rest. A sweep folder that holds
an unfinished sweep (or -resume) is continued: the runs that finished are
read back, the interrupted one resumes from its checkpoint (exactly, as
finetune -resume) and the rest run; give the same flags. -overwrite starts
the sweep afresh.

Flags:
`

// sweepJob is one configured run.
type sweepJob struct {
	task string
	spec int
	cfg  ftConfig
}

// runSweep runs the sweep mode.
func runSweep(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var common ftConfig
	var specs sweep.Specs
	tasks, seedList, taskSteps, out := defaultSweepTasks, "1,2,3", "", "runs/glue-sweep"
	fs := newFinetuneFlags(&common, stderr)
	fs.Var(&specs, "run", `a configuration "NAME: FLAGS" (repeatable; default: Lily, LoRA and head only as in docs/results.md)`)
	fs.StringVar(&tasks, "tasks", tasks, "comma-separated GLUE tasks")
	fs.StringVar(&taskSteps, "task_steps", "", "per-task step budgets, e.g. sst2=2000,rte=500 (each replaces -max_steps for its task)")
	fs.StringVar(&seedList, "seeds", seedList, "comma-separated seeds; every configuration runs once per task and seed")
	fs.Lookup("out").Usage = "sweep folder (default runs/glue-sweep)"
	fs.Lookup("seed").Usage = "not for sweep: use -seeds"
	fs.Lookup("task").Usage = "not for sweep: use -tasks"
	fs.Usage = func() {
		fmt.Fprintf(stderr, sweepUsage, strings.Join(defaultSweepRuns, "\n  "))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.Errorf("sweep: unexpected argument %q (flags start with -; quote each -run)", fs.Arg(0))
	}
	seeds, err := sweep.ParseSeeds(seedList)
	if err != nil {
		return errors.Wrap(err, "sweep")
	}
	shared, err := sweep.SharedArgs(fs, []string{"run", "seeds", "tasks", "task_steps", "out", "overwrite", "resume"}, map[string]string{
		"seed": "sweep takes -seeds (a list), not -seed", "task": "sweep takes -tasks (a list), not -task"})
	if err != nil {
		return err
	}
	if common.Out != "" {
		out = common.Out
	}
	var taskNames []string
	for _, name := range splitList(tasks) {
		t, err := glue.Lookup(name)
		if err != nil {
			return errors.Wrap(err, "sweep -tasks")
		}
		taskNames = append(taskNames, t.Name)
	}
	if len(taskNames) == 0 {
		return errors.New("sweep: -tasks is empty; give at least one GLUE task, e.g. sst2,rte")
	}
	steps, err := parseTaskSteps(taskSteps, taskNames)
	if err != nil {
		return err
	}
	if len(specs) == 0 {
		if specs, err = sweep.ParseSpecs(defaultSweepRuns); err != nil {
			return err
		}
	}
	// Configure every run before starting any, so a bad flag fails at once.
	folders := map[string]string{}
	var jobs []sweepJob
	for _, task := range taskNames {
		for i, sp := range specs {
			if prev, dup := folders[task+"/"+sweep.Slug(sp.Name)]; dup {
				return errors.Errorf("sweep: runs %q and %q would share a folder; give them distinct names", prev, sp.Name)
			}
			folders[task+"/"+sweep.Slug(sp.Name)] = sp.Name
			for _, seed := range seeds {
				a := append(append([]string{}, shared...), "-task", task)
				if n, ok := steps[task]; ok {
					a = append(a, "-max_steps", strconv.Itoa(n))
				}
				a = append(a, sp.Args...)
				a = append(a, "-seed", fmt.Sprint(seed), "-out", filepath.Join(out, task, fmt.Sprintf("%s-seed%d", sweep.Slug(sp.Name), seed)))
				c, _, err := parseFinetune(a, io.Discard)
				if err != nil {
					return errors.Wrapf(err, "sweep: run %q on %s", sp.Name, task)
				}
				jobs = append(jobs, sweepJob{task: task, spec: i, cfg: c})
			}
		}
	}
	folder := outdir.Folder{Flag: "-out", Path: out, Kind: kindSweep, Overwrite: common.Overwrite}
	res := &sweepResult{Common: shared, Tasks: taskNames, TaskSteps: steps, Specs: specs, Seeds: seeds, BLAS: lilyop.BLAS}
	world, err := train.World()
	if err != nil {
		return err
	}
	rank0 := world.Rank() == 0 // rank 0 decides, prints and writes
	continuing := false
	if !rank0 {
		stdout = io.Discard
	} else if continuing, err = beginSweep(folder, common.Resume, res); err != nil {
		return errors.Wrap(err, "sweep")
	}
	start := time.Now()
	pending := false // runs read back since the summary was last written
	for k, job := range jobs {
		name := specs[job.spec].Name
		action, done, err := nextJob(ctx, world, continuing, &job)
		if err != nil {
			return errors.Wrapf(err, "sweep: run %q on %s, seed %d", name, job.task, job.cfg.Seed)
		}
		if action == jobStop {
			res.Interrupted = true
			break
		}
		if action == jobDone {
			if rank0 {
				fmt.Fprintf(stdout, "\n=== run %d/%d: %s, %s, seed %d: finished before, read from %s\n", k+1, len(jobs), job.task, name, job.cfg.Seed, job.cfg.Out)
				res.Runs = append(res.Runs, newSweepRun(job, name, done))
				pending = true
			}
			continue
		}
		fmt.Fprintf(stdout, "\n=== run %d/%d: %s, %s, seed %d\n", k+1, len(jobs), job.task, name, job.cfg.Seed)
		r, err := finetune(ctx, job.cfg, stdout, runHooks{progress: stderr, afterStep: afterStep})
		if err != nil {
			return errors.Wrapf(err, "sweep: run %q on %s, seed %d", name, job.task, job.cfg.Seed)
		}
		res.Runs = append(res.Runs, newSweepRun(job, name, r))
		res.Interrupted = r.Interrupted
		res.WallSeconds = time.Since(start).Seconds()
		if !rank0 {
			continue
		}
		if err := writeSweep(folder, res, !r.Interrupted && k == len(jobs)-1); err != nil {
			return err
		}
		pending = false
	}
	if !rank0 {
		return nil
	}
	if pending {
		if err := writeSweep(folder, res, !res.Interrupted && len(res.Runs) == len(jobs)); err != nil {
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

// beginSweep checks the sweep folder before any run: -resume needs an
// unfinished sweep there (outdir.Folder.Begin); without it an unfinished
// sweep of the same kind is continued too, unless -overwrite, and anything
// else is claimed for a new sweep as outdir.Folder.Check allows. A
// continued sweep must have res's settings (its sweep.json's, if it wrote
// one). continuing reports whether the sweep continues.
func beginSweep(folder outdir.Folder, resume bool, res *sweepResult) (continuing bool, err error) {
	if resume {
		f := folder
		f.Resumable = true
		if err := f.Begin(true); err != nil {
			return false, err
		}
	} else {
		if err := folder.Check(); err != nil {
			return false, err
		}
		rec, ok, err := outdir.ReadRecord(folder.Path)
		if err != nil {
			return false, err
		}
		if !ok || folder.Overwrite || rec.Finished || rec.Kind != kindSweep {
			return false, folder.Claim()
		}
	}
	b, err := os.ReadFile(filepath.Join(folder.Path, sweepJSON))
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, errors.Wrap(err, "reading the unfinished sweep's summary")
	}
	var prev sweepResult
	if err := json.Unmarshal(b, &prev); err != nil {
		return false, errors.Wrapf(err, "reading %s", filepath.Join(folder.Path, sweepJSON))
	}
	if !slices.Equal(prev.Common, res.Common) || !slices.Equal(prev.Tasks, res.Tasks) || !maps.Equal(prev.TaskSteps, res.TaskSteps) ||
		!slices.Equal(prev.Seeds, res.Seeds) || !slices.EqualFunc(prev.Specs, res.Specs, sameSpec) {
		return false, errors.Errorf("%s holds an unfinished sweep with other settings (%s); continue it with the same flags, or add -overwrite to start afresh", folder.Path, sweepJSON)
	}
	return true, nil
}

// sameSpec reports whether two run configurations are the same.
func sameSpec(a, b sweep.Spec) bool { return a.Name == b.Name && slices.Equal(a.Args, b.Args) }

// What rank 0 decides to do with each run of a sweep (nextJob).
const (
	jobRun    = iota // start it (afresh)
	jobResume        // resume it from its checkpoint
	jobDone          // it finished before: read it back
	jobStop          // the sweep was stopped: skip the rest
)

// nextJob decides on rank 0 what to do with the next run, job, and tells
// the other ranks, so that every rank takes part in the same runs; done is
// the run read back (rank 0 only).
func nextJob(ctx context.Context, world dataparallel.Comm, continuing bool, job *sweepJob) (action int, done *ftResult, err error) {
	decision := []float64{jobRun}
	if world.Rank() == 0 {
		switch {
		case ctx.Err() != nil:
			decision[0] = jobStop
		case continuing:
			if done, err = continueJob(job); err != nil {
				return 0, nil, err
			}
			if done != nil {
				decision[0] = jobDone
			} else if job.cfg.Resume {
				decision[0] = jobResume
			}
		}
	}
	if err := world.BroadcastFloat64(decision, 0); err != nil {
		return 0, nil, errors.Wrap(err, "sharing rank 0's plan")
	}
	action = int(decision[0])
	if action == jobResume {
		job.cfg.Resume = true
	}
	return action, done, nil
}

// continueJob prepares a run of a continued sweep: a run that finished is
// read back (done); one that wrote a checkpoint resumes from it; any other
// starts afresh, replacing what its folder holds.
func continueJob(job *sweepJob) (done *ftResult, err error) {
	out := job.cfg.Out
	rec, ok, err := outdir.ReadRecord(out)
	switch {
	case err != nil:
		return nil, err
	case ok && rec.Kind == kindFinetune && rec.Finished:
		b, err := os.ReadFile(filepath.Join(out, resultsFile))
		if err != nil {
			return nil, errors.Wrap(err, "reading the finished run's results")
		}
		var r ftResult
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, errors.Wrapf(err, "reading %s", filepath.Join(out, resultsFile))
		}
		return &r, nil
	case ok && rec.Kind == kindFinetune && train.HasCheckpoint(train.CheckpointDir(out)):
		job.cfg.Resume = true
	default:
		job.cfg.Overwrite = true
	}
	return nil, nil
}

// newSweepRun is the sweep's record of a fine-tuning run.
func newSweepRun(job sweepJob, name string, r *ftResult) sweepRun {
	run := sweepRun{Task: job.task, Name: name, Seed: job.cfg.Seed, Dir: job.cfg.Out, Trainable: r.TrainableParams,
		AdapterParams: r.AdapterParams, Steps: r.Steps, Interrupted: r.Interrupted, WallSeconds: r.WallSeconds,
		TokensPerSecond: r.TokensPerSecond}
	if r.Best != nil {
		run.Metric, run.Best, run.BestStep = r.Best.Metric, r.Best.Value, r.Best.Step
	}
	return run
}

// parseTaskSteps reads -task_steps ("sst2=2000,rte=500"): a positive step
// budget per task, each task one of tasks.
func parseTaskSteps(v string, tasks []string) (map[string]int, error) {
	out := map[string]int{}
	for _, item := range splitList(v) {
		name, n, ok := strings.Cut(item, "=")
		if !ok {
			return nil, errors.Errorf("sweep -task_steps: %q is not TASK=STEPS", item)
		}
		t, err := glue.Lookup(strings.TrimSpace(name))
		if err != nil {
			return nil, errors.Wrap(err, "sweep -task_steps")
		}
		if !slices.Contains(tasks, t.Name) {
			return nil, errors.Errorf("sweep -task_steps: %s is not in -tasks (%s)", t.Name, strings.Join(tasks, ","))
		}
		steps, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil || steps < 1 {
			return nil, errors.Errorf("sweep -task_steps: %q: the steps must be a positive integer", item)
		}
		if _, dup := out[t.Name]; dup {
			return nil, errors.Errorf("sweep -task_steps names %s twice", t.Name)
		}
		out[t.Name] = steps
	}
	return out, nil
}

// sweepRows aggregates the runs by task and configuration, in the order of
// the tasks and the specs; runs that found no best evaluation (interrupted
// before one) are left out.
func sweepRows(res *sweepResult) []sweepRow {
	var rows []sweepRow
	for _, task := range res.Tasks {
		for _, sp := range res.Specs {
			row := sweepRow{Task: task, Name: sp.Name}
			for _, r := range res.Runs {
				if r.Task != task || r.Name != sp.Name || r.Metric == "" {
					continue
				}
				row.Metric, row.Trainable, row.AdapterParams = r.Metric, r.Trainable, r.AdapterParams
				row.PerSeed = append(row.PerSeed, r.Best)
				row.Seconds += r.WallSeconds
			}
			if len(row.PerSeed) == 0 {
				continue
			}
			row.Mean, row.Std = sweep.MeanStd(row.PerSeed)
			row.Seconds /= float64(len(row.PerSeed))
			rows = append(rows, row)
		}
	}
	return rows
}

// writeSweep aggregates the runs so far and replaces sweep.json, sweep.md,
// sweep.png and the run record in the sweep's folder together, keeping the
// runs' folders; finished says that the last run is done.
func writeSweep(folder outdir.Folder, res *sweepResult, finished bool) error {
	res.Rows = sweepRows(res)
	return folder.Update(finished, func(dir string) error {
		if err := train.WriteJSON(filepath.Join(dir, sweepJSON), res); err != nil {
			return err
		}
		if err := atomicfile.WriteBytes(filepath.Join(dir, sweepMarkdown), []byte(sweepTable(res))); err != nil {
			return errors.Wrap(err, "writing the sweep table")
		}
		return sweepBars(filepath.Join(dir, sweepPlot), res)
	})
}

// sweepTable renders the rows as a Markdown table.
func sweepTable(res *sweepResult) string {
	var b strings.Builder
	b.WriteString("| task | metric | configuration | trainable params (adapter) | best dev metric, mean ± std | per seed | s/run |\n")
	b.WriteString("|---|---|---|---:|---:|---|---:|\n")
	for _, r := range res.Rows {
		per := make([]string, len(r.PerSeed))
		for i, v := range r.PerSeed {
			per[i] = fmt.Sprintf("%.4f", v)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s (%s) | %.4f ± %.4f | %s | %.0f |\n", r.Task, r.Metric, r.Name,
			commas(r.Trainable), commas(r.AdapterParams), r.Mean, r.Std, strings.Join(per, ", "), r.Seconds)
	}
	if res.Interrupted {
		b.WriteString("\n(interrupted: not every run finished)\n")
	}
	return b.String()
}

// sweepBars draws the mean best metric of each configuration, grouped by
// task.
func sweepBars(path string, res *sweepResult) error {
	var series []train.Bars
	for _, sp := range res.Specs {
		b := train.Bars{Name: sp.Name, Values: make([]float64, len(res.Tasks))}
		for i, task := range res.Tasks {
			for _, r := range res.Rows {
				if r.Task == task && r.Name == sp.Name {
					b.Values[i] = r.Mean
				}
			}
		}
		series = append(series, b)
	}
	return train.BarChart(path, "best dev metric, mean over seeds (0: not run)", "accuracy, F1, Matthews or Pearson", res.Tasks, series...)
}
