package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lilygo/lily/configsearch"
	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/internal/outdir"
	"github.com/lilygo/lily/internal/sweep"
	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
)

// Output names of a search inside its -out.
const (
	kindSearch     = "llama search"
	searchJSON     = "search.json"
	searchMarkdown = "search.md"
	searchPlot     = "search.png"
)

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

// searchRun is one finished (or interrupted) fine-tuning run of a search.
type searchRun struct {
	Rung        int                    `json:"rung"`
	Steps       int                    `json:"steps"`
	Candidate   configsearch.Candidate `json:"candidate"`
	Seed        uint64                 `json:"seed"`
	Dir         string                 `json:"dir"`
	Best        float64                `json:"best_perplexity"`
	Final       float64                `json:"final_perplexity"`
	Interrupted bool                   `json:"interrupted"`
	WallSeconds float64                `json:"wall_seconds"`
}

// searchResult is search.json.
type searchResult struct {
	Common      []string                                     `json:"common_args"`
	Budget      int                                          `json:"budget_params"`
	BudgetFrom  string                                       `json:"budget_from"`
	Tolerance   float64                                      `json:"tolerance"`
	Space       configsearch.Space                           `json:"space"`
	Candidates  []configsearch.Candidate                     `json:"candidates"`
	Rungs       []int                                        `json:"rungs_steps"`
	Keep        float64                                      `json:"keep"`
	Seeds       []uint64                                     `json:"seeds"`
	BLAS        string                                       `json:"blas"`
	Base        float64                                      `json:"base_perplexity"`
	Rounds      []configsearch.Round[configsearch.Candidate] `json:"rounds"`
	Best        *configsearch.Candidate                      `json:"best,omitempty"`
	Runs        []searchRun                                  `json:"runs"`
	Interrupted bool                                         `json:"interrupted"`
	WallSeconds float64                                      `json:"wall_seconds"`
}

// errSearchInterrupted stops the halving when Ctrl-C interrupted a run.
var errSearchInterrupted = errors.New("interrupted")

// searchCmd runs the search subcommand.
func searchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var common ftConfig
	budget, loraBudget, tolerance := 0, 4, 0.05
	space := configsearch.Space{MaxR: 64, MaxNumB: 4}
	rungList, seedList, keep, out := "50,150", "1,2,3", 0.5, "runs/llama-search"
	fs := flag.NewFlagSet("llama search", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addFinetuneFlags(fs, &common)
	fs.IntVar(&budget, "budget", budget, "trainable parameters to match (instead of -lora_budget)")
	fs.IntVar(&loraBudget, "lora_budget", loraBudget, "match the size of LoRA of this rank on the same target modules")
	fs.Float64Var(&tolerance, "tolerance", tolerance, "keep shapes within this fraction of the budget")
	fs.IntVar(&space.MaxR, "max_r", space.MaxR, "largest rank r considered")
	fs.IntVar(&space.MaxNumB, "max_num_B", space.MaxNumB, "most B experts considered (at least 2)")
	fs.StringVar(&rungList, "rungs", rungList, "comma-separated steps of each round, increasing")
	fs.Float64Var(&keep, "keep", keep, "fraction of the candidates that goes on to the next round")
	fs.StringVar(&seedList, "seeds", seedList, "comma-separated seeds of the last round (earlier rounds use the first)")
	fs.Lookup("out").Usage = "search folder (default runs/llama-search)"
	fs.Usage = func() {
		fmt.Fprint(stderr, searchUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	seeds, err := sweep.ParseSeeds(seedList)
	if err != nil {
		return err
	}
	rungs, err := parseRungs(rungList)
	if err != nil {
		return err
	}
	setBySearch := "search sets it for every run; give the budget with -lora_budget or -budget"
	shared, err := sweep.SharedArgs(fs, []string{"budget", "lora_budget", "tolerance", "max_r", "max_num_B", "rungs", "keep", "seeds", "out", "overwrite"},
		map[string]string{"seed": "search takes -seeds (a list), not -seed", "adapter": "search only runs Lily: -adapter is not a search flag",
			"lily_r": "-lily_r: " + setBySearch, "lily_stride_A": "-lily_stride_A: " + setBySearch, "lily_num_B": "-lily_num_B: " + setBySearch,
			"max_steps": "search takes -rungs (steps of each round), not -max_steps"})
	if err != nil {
		return err
	}
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
	sites := b.cfg.Sites()
	res := &searchResult{Common: shared, Tolerance: tolerance, Space: space, Rungs: rungs, Keep: keep, Seeds: seeds, BLAS: lilyop.BLAS}
	if budget > 0 {
		res.Budget, res.BudgetFrom = budget, "-budget"
	} else if res.Budget, err = configsearch.LoRABudget(sites, base.TargetModules, loraBudget); err != nil {
		return err
	} else {
		res.BudgetFrom = fmt.Sprintf("LoRA r %d on %s", loraBudget, strings.Join(base.TargetModules, ","))
	}
	if res.Candidates, err = configsearch.Candidates(sites, base, res.Budget, tolerance, space); err != nil {
		return err
	}
	if len(res.Candidates) == 0 {
		return errors.Errorf("no Lily shape with r ≤ %d and num_B ≤ %d is within %g of %d parameters; raise -tolerance or -max_r", space.MaxR, space.MaxNumB, tolerance, res.Budget)
	}
	folder := outdir.Folder{Flag: "-out", Path: out, Kind: kindSearch, Overwrite: common.Overwrite}
	if err := folder.Check(); err != nil {
		return errors.Wrap(err, "search")
	}
	if err := folder.Claim(); err != nil {
		return errors.Wrap(err, "search")
	}
	fmt.Fprintf(stdout, "%d Lily shapes within %g of %d trainable parameters (%s); rounds of %v steps, keeping %g\n",
		len(res.Candidates), tolerance, res.Budget, res.BudgetFrom, rungs, keep)
	start := time.Now()
	cache := corpusCache{}
	rung := 0
	runOne := func(c configsearch.Candidate, steps int) (float64, error) {
		for rung < len(rungs)-1 && rungs[rung] != steps {
			rung++
		}
		runSeeds := seeds[:1]
		if rung == len(rungs)-1 {
			runSeeds = seeds
		}
		var sum float64
		for _, seed := range runSeeds {
			if ctx.Err() != nil {
				return 0, errSearchInterrupted
			}
			dir := filepath.Join(out, fmt.Sprintf("rung%d-r%d-s%d-b%d-seed%d", rung+1, c.R, c.StrideA, c.NumB, seed))
			a := append(append([]string{}, shared...), "-adapter", "lily", "-lily_r", strconv.Itoa(c.R), "-lily_stride_A", strconv.Itoa(c.StrideA),
				"-lily_num_B", strconv.Itoa(c.NumB), "-max_steps", strconv.Itoa(steps), "-seed", fmt.Sprint(seed), "-out", dir)
			cfg, err := parseFinetune(a, io.Discard)
			if err != nil {
				return 0, err
			}
			fmt.Fprintf(stdout, "\n=== round %d/%d (%d steps): r %d, stride_A %d, num_B %d (%d params), seed %d\n",
				rung+1, len(rungs), steps, c.R, c.StrideA, c.NumB, c.Params, seed)
			r, err := finetune(ctx, cfg, stdout, stderr, cache)
			if err != nil {
				return 0, err
			}
			res.Base = r.Base.Perplexity
			res.Runs = append(res.Runs, searchRun{Rung: rung + 1, Steps: steps, Candidate: c, Seed: seed, Dir: dir,
				Best: r.Best.Perplexity, Final: r.Final.Perplexity, Interrupted: r.Interrupted, WallSeconds: r.WallSeconds})
			res.WallSeconds = time.Since(start).Seconds()
			if err := writeSearch(folder, res, false); err != nil {
				return 0, err
			}
			if r.Interrupted {
				return 0, errSearchInterrupted
			}
			sum += r.Best.Perplexity
		}
		return sum / float64(len(runSeeds)), nil
	}
	rounds, err := configsearch.Halving(res.Candidates, rungs, keep, runOne)
	res.Rounds = rounds
	res.WallSeconds = time.Since(start).Seconds()
	switch {
	case errors.Is(err, errSearchInterrupted):
		res.Interrupted = true
	case err != nil:
		return err
	default:
		best := rounds[len(rounds)-1].Scores[0].Candidate
		res.Best = &best
	}
	if len(res.Runs) == 0 {
		fmt.Fprintln(stdout, "interrupted before the first run; nothing written")
		return nil
	}
	if err := writeSearch(folder, res, !res.Interrupted); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%s", searchTable(res))
	fmt.Fprintf(stdout, "wrote %s, %s and %s to %s (%.0f s)\n", searchJSON, searchMarkdown, searchPlot, out, res.WallSeconds)
	return nil
}

// parseRungs parses -rungs: positive, strictly increasing step counts.
func parseRungs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || len(out) > 0 && n <= out[len(out)-1] {
			return nil, errors.Errorf("-rungs %q: give increasing positive step counts, such as 50,150", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// writeSearch replaces search.json, search.md, search.png and the run
// record in the search's folder together, keeping the runs' folders;
// finished says that the search is done.
func writeSearch(folder outdir.Folder, res *searchResult, finished bool) error {
	var series []train.Series
	if n := len(res.Rounds); n > 0 {
		for _, s := range res.Rounds[n-1].Scores {
			ser := train.Series{Name: shapeName(s.Candidate)}
			for _, round := range res.Rounds {
				for _, rs := range round.Scores {
					if rs.Candidate == s.Candidate {
						ser.X, ser.Y = append(ser.X, float64(round.Budget)), append(ser.Y, rs.Score)
					}
				}
			}
			series = append(series, ser)
		}
	}
	return folder.Update(finished, func(dir string) error {
		if err := train.WriteJSON(filepath.Join(dir, searchJSON), res); err != nil {
			return err
		}
		if err := atomicfile.WriteBytes(filepath.Join(dir, searchMarkdown), []byte(searchTable(res))); err != nil {
			return errors.Wrap(err, "writing the search table")
		}
		if len(series) == 0 {
			return nil
		}
		title := fmt.Sprintf("best held-out perplexity by round (budget %d parameters)", res.Budget)
		return train.Plot(filepath.Join(dir, searchPlot), title, "steps", "perplexity", series...)
	})
}

// shapeName is a candidate as the table and the plot show it.
func shapeName(c configsearch.Candidate) string {
	return fmt.Sprintf("r %d, stride_A %d, num_B %d", c.R, c.StrideA, c.NumB)
}

// searchTable renders every finished round, best first, as Markdown.
func searchTable(res *searchResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "budget: %s parameters (%s), tolerance %g; base model perplexity %.3f\n\n", commas(res.Budget), res.BudgetFrom, res.Tolerance, res.Base)
	for i, round := range res.Rounds {
		runs := "seed " + fmt.Sprint(res.Seeds[0])
		if i == len(res.Rungs)-1 {
			runs = fmt.Sprintf("mean over seeds %v", res.Seeds)
		}
		fmt.Fprintf(&b, "round %d: %d steps, %s\n\n| rank | Lily shape | trainable params | best held-out perplexity |\n|---:|---|---:|---:|\n", i+1, round.Budget, runs)
		for k, s := range round.Scores {
			fmt.Fprintf(&b, "| %d | %s | %s | %.3f |\n", k+1, shapeName(s.Candidate), commas(s.Candidate.Params), s.Score)
		}
		b.WriteString("\n")
	}
	if res.Best != nil {
		fmt.Fprintf(&b, "best: %s (%s parameters)\n", shapeName(*res.Best), commas(res.Best.Params))
	}
	if res.Interrupted {
		b.WriteString("(interrupted: the last round did not finish)\n")
	}
	return b.String()
}
