// Package searchcmd is the `search` subcommand that the examples share
// (llama, roberta-glue, mamba): the search flags, the budget and the list
// of candidate Lily shapes (package configsearch), the successive-halving
// driver with a short budget first and several seeds in the last round, and
// the outputs — search.json, search.md and search.png, rewritten after
// every run — with the summary it prints.
//
// A command supplies only what is its own: its fine-tuning flags, the
// sites and base Lily configuration of its model, and a Train function that
// trains and evaluates one configuration for a number of steps and one seed
// and returns the score (and says whether higher is better).
package searchcmd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lilygo/lily/configsearch"
	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/internal/outdir"
	"github.com/lilygo/lily/internal/sweep"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/lilyop"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
)

// Output names of a search inside its folder.
const (
	JSONFile     = "search.json"
	MarkdownFile = "search.md"
	PlotFile     = "search.png"
)

// FlagNames are the flags Register adds (or takes over), which are not
// passed on to the runs.
var FlagNames = []string{"budget", "lora_budget", "tolerance", "max_r", "max_num_B", "rungs", "keep", "seeds"}

// Flags are the search's own settings, filled by the flags Register adds.
type Flags struct {
	// Budget is the number of trainable parameters to match; 0: LoRA of
	// rank LoRABudget on the same target modules.
	Budget     int
	LoRABudget int
	// Tolerance is the fraction of the budget a candidate may differ by.
	Tolerance float64
	Space     configsearch.Space
	// Keep is the fraction of the candidates that goes on to the next
	// round.
	Keep float64
	// Rungs are the steps of each round and Seeds the seeds of the last
	// round (earlier rounds use the first); Parse fills them.
	Rungs []int
	Seeds []uint64

	rungList, seedList string
	refused            map[string]string
}

// Register adds the search flags to fs with their defaults. A flag of the
// same name that fs already has (such as a command's own -seeds list) is
// taken over: its default and usage become the search's, and Parse reads
// it. refused names the run flags of fs that search sets itself, each with
// the message Parse gives when one is set (Refused builds the usual ones);
// their usage says so.
func (f *Flags) Register(fs *flag.FlagSet, refused map[string]string) {
	*f = Flags{LoRABudget: 4, Tolerance: 0.05, Space: configsearch.Space{MaxR: 64, MaxNumB: 4}, Keep: 0.5, rungList: "50,150", seedList: "1,2,3",
		refused: refused}
	for name, msg := range refused {
		if fl := fs.Lookup(name); fl != nil {
			fl.Usage = "not for search: " + msg
		}
	}
	fs.IntVar(&f.Budget, "budget", f.Budget, "trainable parameters to match (instead of -lora_budget)")
	fs.IntVar(&f.LoRABudget, "lora_budget", f.LoRABudget, "match the size of LoRA of this rank on the same target modules")
	fs.Float64Var(&f.Tolerance, "tolerance", f.Tolerance, "keep shapes within this fraction of the budget")
	fs.IntVar(&f.Space.MaxR, "max_r", f.Space.MaxR, "largest rank r considered")
	fs.IntVar(&f.Space.MaxNumB, "max_num_B", f.Space.MaxNumB, "most B experts considered (at least 2)")
	fs.Float64Var(&f.Keep, "keep", f.Keep, "fraction of the candidates that goes on to the next round")
	f.stringFlag(fs, "rungs", f.rungList, "comma-separated steps of each round, increasing")
	f.stringFlag(fs, "seeds", f.seedList, "comma-separated seeds of the last round (earlier rounds use the first)")
}

// stringFlag defines a string flag, or takes over fs's flag of that name.
func (f *Flags) stringFlag(fs *flag.FlagSet, name, value, usage string) {
	if old := fs.Lookup(name); old != nil {
		old.DefValue, old.Usage = value, usage
		_ = old.Value.Set(value) // a string flag takes any value
		return
	}
	fs.String(name, value, usage)
}

// Parse reads -rungs and -seeds after fs.Parse, checks the other search
// flags, and returns every other flag set on fs as "-name=value", in fs's
// order, to pass to every run (-out and -overwrite excluded). A set flag
// that Register was told search refuses is an error with its message.
func (f *Flags) Parse(fs *flag.FlagSet) ([]string, error) {
	if fs.NArg() > 0 {
		return nil, errors.Errorf("search: unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	var err error
	if f.Rungs, err = ParseRungs(fs.Lookup("rungs").Value.String()); err != nil {
		return nil, err
	}
	if f.Seeds, err = sweep.ParseSeeds(fs.Lookup("seeds").Value.String()); err != nil {
		return nil, errors.Wrap(err, "search")
	}
	switch {
	case f.Budget < 0:
		return nil, errors.Errorf("search: -budget %d must not be negative (0: use -lora_budget)", f.Budget)
	case f.Budget == 0 && f.LoRABudget < 1:
		return nil, errors.Errorf("search: -lora_budget %d must be a positive LoRA rank (or give -budget)", f.LoRABudget)
	case !(f.Keep > 0 && f.Keep < 1):
		return nil, errors.Errorf("search: -keep %v must be in (0, 1) (0.5 halves)", f.Keep)
	}
	own := append(append([]string{}, FlagNames...), "out", "overwrite")
	shared, err := sweep.SharedArgs(fs, own, f.refused)
	return shared, errors.Wrap(err, "search")
}

// Refused returns the messages for the run flags that search sets itself:
// seed (the run's seed flag, "" if the command has none to refuse), steps
// (its step-budget flag) and lily (its rank, stride_A and num_B flags, in
// that order), -resume (a search starts every run afresh), plus extra.
func Refused(seed, steps string, lily [3]string, extra map[string]string) map[string]string {
	setBySearch := "search sets it for every run; give the budget with -lora_budget or -budget"
	out := map[string]string{steps: fmt.Sprintf("search takes -rungs (steps of each round), not -%s", steps),
		"resume": "search starts every run afresh (a search folder is replaced as a whole): -resume is not a search flag"}
	if seed != "" {
		out[seed] = fmt.Sprintf("search takes -seeds (a list), not -%s", seed)
	}
	for _, name := range lily {
		out[name] = "-" + name + ": " + setBySearch
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// ParseRungs parses -rungs: positive, strictly increasing step counts.
func ParseRungs(s string) ([]int, error) {
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

// Plan is one search: what to search over and where to write.
type Plan struct {
	// Name is the subcommand, such as "llama search": the output folder's
	// kind and the search.json's command.
	Name      string
	Out       string
	Overwrite bool
	Flags     Flags
	// Common are the run flags every run gets (from Flags.Parse).
	Common []string
	// Sites and Base (target modules, scaling, routing) are the model's
	// adapted layers and the Lily settings the search does not vary.
	Sites []layers.Site
	Base  layers.LilyConfig
	// Metric names the score, such as "best held-out perplexity" or "best
	// dev accuracy"; HigherIsBetter says which way it ranks.
	Metric         string
	HigherIsBetter bool
}

// Trial is one training run the search asks for.
type Trial struct {
	Round     int                    `json:"round"` // 1-based
	Steps     int                    `json:"steps"`
	Candidate configsearch.Candidate `json:"candidate"`
	Seed      uint64                 `json:"seed"`
	// Dir is the run's own folder, inside the search's.
	Dir string `json:"dir"`
}

// Outcome is what one run reports.
type Outcome struct {
	// Score is the metric the search ranks by (the run's best evaluation).
	Score float64
	// Final is the metric at the run's last evaluation.
	Final float64
	// Base is the metric of the model without an adapter, if the run
	// measured it (NaN or 0: not known).
	Base        float64
	Interrupted bool
}

// TrainFunc trains and evaluates one configuration as t says. A cancelled
// ctx should stop it after the current step with Outcome.Interrupted set.
type TrainFunc func(ctx context.Context, t Trial) (Outcome, error)

// Run is one finished (or interrupted) run of a search, in search.json.
type Run struct {
	Trial
	Score       float64 `json:"best"`
	Final       float64 `json:"final"`
	Interrupted bool    `json:"interrupted"`
	WallSeconds float64 `json:"wall_seconds"`
}

// Result is search.json.
type Result struct {
	Command        string                                       `json:"command"`
	Common         []string                                     `json:"common_args"`
	Metric         string                                       `json:"metric"`
	HigherIsBetter bool                                         `json:"higher_is_better"`
	Budget         int                                          `json:"budget_params"`
	BudgetFrom     string                                       `json:"budget_from"`
	Tolerance      float64                                      `json:"tolerance"`
	Space          configsearch.Space                           `json:"space"`
	Candidates     []configsearch.Candidate                     `json:"candidates"`
	Rungs          []int                                        `json:"rungs_steps"`
	Keep           float64                                      `json:"keep"`
	Seeds          []uint64                                     `json:"seeds"`
	BLAS           string                                       `json:"blas"`
	Base           float64                                      `json:"base_score,omitempty"` // the model without an adapter
	Rounds         []configsearch.Round[configsearch.Candidate] `json:"rounds"`
	Best           *configsearch.Candidate                      `json:"best,omitempty"`
	Runs           []Run                                        `json:"runs"`
	Interrupted    bool                                         `json:"interrupted"`
	WallSeconds    float64                                      `json:"wall_seconds"`
}

// Search is a prepared search: its candidates listed and its folder
// claimed.
type Search struct {
	plan   Plan
	folder outdir.Folder
	res    *Result
}

// New resolves the budget, lists the candidates and checks and claims the
// output folder (a search runs in one process, not as ranks of an MPI
// job); after it the command may write into the folder (a
// pretrained model, say) before Run.
func New(p Plan) (*Search, error) {
	f := p.Flags
	res := &Result{Command: p.Name, Common: p.Common, Metric: p.Metric, HigherIsBetter: p.HigherIsBetter, Tolerance: f.Tolerance,
		Space: f.Space, Rungs: f.Rungs, Keep: f.Keep, Seeds: f.Seeds, BLAS: lilyop.BLAS}
	if len(f.Rungs) == 0 || len(f.Seeds) == 0 {
		return nil, errors.New("searchcmd.New: no rungs or seeds; call Flags.Parse first")
	}
	var err error
	if f.Budget > 0 {
		res.Budget, res.BudgetFrom = f.Budget, "-budget"
	} else if res.Budget, err = configsearch.LoRABudget(p.Sites, p.Base.TargetModules, f.LoRABudget); err != nil {
		return nil, err
	} else {
		res.BudgetFrom = fmt.Sprintf("LoRA r %d on %s", f.LoRABudget, strings.Join(p.Base.TargetModules, ","))
	}
	if res.Candidates, err = configsearch.Candidates(p.Sites, p.Base, res.Budget, f.Tolerance, f.Space); err != nil {
		return nil, err
	}
	if len(res.Candidates) == 0 {
		return nil, errors.Errorf("no Lily shape with r ≤ %d and num_B ≤ %d is within %g of %d parameters; raise -tolerance or -max_r",
			f.Space.MaxR, f.Space.MaxNumB, f.Tolerance, res.Budget)
	}
	world, err := train.World()
	if err != nil {
		return nil, err
	}
	if world.Size() > 1 {
		return nil, errors.Errorf("search runs in one process; this is rank %d of %d (run it without mpirun)", world.Rank(), world.Size())
	}
	folder := outdir.Folder{Flag: "-out", Path: p.Out, Kind: p.Name, Overwrite: p.Overwrite}
	if err := folder.Check(); err != nil {
		return nil, errors.Wrap(err, "search")
	}
	if err := folder.Claim(); err != nil {
		return nil, errors.Wrap(err, "search")
	}
	return &Search{plan: p, folder: folder, res: res}, nil
}

// Candidates are the shapes the search will run, nearest to the budget
// first.
func (s *Search) Candidates() []configsearch.Candidate { return s.res.Candidates }

// Budget is the number of trainable parameters matched.
func (s *Search) Budget() int { return s.res.Budget }

// errInterrupted stops the halving when Ctrl-C interrupted a run.
var errInterrupted = errors.New("interrupted")

// totalRuns is the number of runs a search makes when it finishes.
func totalRuns(n int, rungs int, keep float64, seeds int) int {
	total := 0
	for i := 0; i < rungs; i++ {
		if i > 0 {
			n = max(1, int(math.Ceil(keep*float64(n))))
		}
		if i == rungs-1 {
			total += n * seeds
		} else {
			total += n
		}
	}
	return total
}

// Run runs successive halving over the candidates with trainFn: every
// candidate for the first rung's steps with the first seed, the best -keep
// of them for the next rung's, and so on; the last rung runs every seed and
// ranks by the mean. Each run's folder is <out>/rung<i>-r<R>-s<S>-b<B>-seed<N>.
// search.json, search.md and search.png are replaced after every run. A
// cancelled ctx ends the search after the current run, keeping the finished
// rounds and the unfinished one ranked as far as it got; the result then
// says Interrupted and Run returns no error.
func (s *Search) Run(ctx context.Context, trainFn TrainFunc, stdout io.Writer) (*Result, error) {
	p, res := s.plan, s.res
	f := p.Flags
	total := totalRuns(len(res.Candidates), len(f.Rungs), f.Keep, len(f.Seeds))
	fmt.Fprintf(stdout, "%d Lily shapes within %g of %d trainable parameters (%s); rounds of %v steps, keeping %g; %d runs\n",
		len(res.Candidates), f.Tolerance, res.Budget, res.BudgetFrom, f.Rungs, f.Keep, total)
	start := time.Now()
	sign := 1.0
	if p.HigherIsBetter {
		sign = -1 // configsearch.Halving ranks lower first
	}
	var live []configsearch.Round[configsearch.Candidate]
	runOne := func(c configsearch.Candidate, steps int) (float64, error) {
		rung := 0
		for rung < len(f.Rungs)-1 && f.Rungs[rung] != steps {
			rung++
		}
		seeds := f.Seeds[:1]
		if rung == len(f.Rungs)-1 {
			seeds = f.Seeds
		}
		var sum float64
		for _, seed := range seeds {
			if ctx.Err() != nil {
				return 0, errInterrupted
			}
			t := Trial{Round: rung + 1, Steps: steps, Candidate: c, Seed: seed,
				Dir: filepath.Join(p.Out, fmt.Sprintf("rung%d-r%d-s%d-b%d-seed%d", rung+1, c.R, c.StrideA, c.NumB, seed))}
			fmt.Fprintf(stdout, "\n=== run %d/%d, round %d/%d (%d steps): r %d, stride_A %d, num_B %d (%d params), seed %d\n",
				len(res.Runs)+1, total, rung+1, len(f.Rungs), steps, c.R, c.StrideA, c.NumB, c.Params, seed)
			t0 := time.Now()
			o, err := trainFn(ctx, t)
			if err != nil {
				return 0, errors.Wrapf(err, "r %d, stride_A %d, num_B %d, seed %d", c.R, c.StrideA, c.NumB, seed)
			}
			if o.Base != 0 && !math.IsNaN(o.Base) {
				res.Base = o.Base
			}
			res.Runs = append(res.Runs, Run{Trial: t, Score: o.Score, Final: o.Final, Interrupted: o.Interrupted, WallSeconds: time.Since(t0).Seconds()})
			res.WallSeconds = time.Since(start).Seconds()
			fmt.Fprintf(stdout, "%s %.4f (final %.4f), %.0f s\n", p.Metric, o.Score, o.Final, time.Since(t0).Seconds())
			if err := s.write(false); err != nil {
				return 0, err
			}
			if o.Interrupted {
				return 0, errInterrupted
			}
			sum += o.Score
		}
		mean := sum / float64(len(seeds))
		// The rounds so far, the current one ranked as far as it got, for
		// the outputs written while the search runs.
		if n := len(live); n == 0 || live[n-1].Budget != steps {
			live = append(live, configsearch.Round[configsearch.Candidate]{Budget: steps})
		}
		cur := &live[len(live)-1]
		cur.Scores = append(cur.Scores, configsearch.Scored[configsearch.Candidate]{Candidate: c, Score: mean})
		rank(cur.Scores, p.HigherIsBetter)
		res.Rounds = live
		if err := s.write(false); err != nil {
			return 0, err
		}
		return sign * mean, nil
	}
	rounds, err := configsearch.Halving(res.Candidates, f.Rungs, f.Keep, runOne)
	for i := range rounds {
		for k := range rounds[i].Scores {
			rounds[i].Scores[k].Score *= sign
		}
	}
	res.Rounds = rounds
	res.WallSeconds = time.Since(start).Seconds()
	switch {
	case errors.Is(err, errInterrupted):
		res.Interrupted = true
		res.Rounds = live // the unfinished round too, ranked as far as it got
	case err != nil:
		return res, err
	default:
		best := rounds[len(rounds)-1].Scores[0].Candidate
		res.Best = &best
	}
	if len(res.Runs) == 0 {
		fmt.Fprintln(stdout, "interrupted before the first run; nothing written")
		return res, nil
	}
	if err := s.write(!res.Interrupted); err != nil {
		return res, err
	}
	fmt.Fprintf(stdout, "\n%s", Table(res))
	fmt.Fprintf(stdout, "wrote %s, %s and %s to %s (%.0f s)\n", JSONFile, MarkdownFile, PlotFile, p.Out, res.WallSeconds)
	return res, nil
}

// rank sorts scores best first (NaN last), keeping the order of ties, as
// configsearch.Halving does.
func rank(scores []configsearch.Scored[configsearch.Candidate], higherIsBetter bool) {
	sort.SliceStable(scores, func(a, b int) bool {
		sa, sb := scores[a].Score, scores[b].Score
		if math.IsNaN(sb) {
			return !math.IsNaN(sa)
		}
		if higherIsBetter {
			return sa > sb
		}
		return sa < sb
	})
}

// write replaces search.json, search.md, search.png and the run record in
// the search's folder together, keeping everything else in it (the runs'
// folders); finished says that the search is done.
func (s *Search) write(finished bool) error {
	res := s.res
	var series []train.Series
	if n := len(res.Rounds); n > 0 {
		for _, sc := range res.Rounds[n-1].Scores {
			ser := train.Series{Name: ShapeName(sc.Candidate)}
			for _, round := range res.Rounds {
				for _, rs := range round.Scores {
					if rs.Candidate == sc.Candidate {
						ser.X, ser.Y = append(ser.X, float64(round.Budget)), append(ser.Y, rs.Score)
					}
				}
			}
			series = append(series, ser)
		}
	}
	return s.folder.Update(finished, func(dir string) error {
		if err := train.WriteJSON(filepath.Join(dir, JSONFile), res); err != nil {
			return err
		}
		if err := atomicfile.WriteBytes(filepath.Join(dir, MarkdownFile), []byte(Table(res))); err != nil {
			return errors.Wrap(err, "writing the search table")
		}
		if len(series) == 0 {
			return nil
		}
		title := fmt.Sprintf("%s by round (budget %d parameters)", res.Metric, res.Budget)
		return train.Plot(filepath.Join(dir, PlotFile), title, "steps", res.Metric, series...)
	})
}

// ShapeName is a candidate as the table and the plot show it.
func ShapeName(c configsearch.Candidate) string {
	return fmt.Sprintf("r %d, stride_A %d, num_B %d", c.R, c.StrideA, c.NumB)
}

// Table renders every finished round, best first, as Markdown.
func Table(res *Result) string {
	var b strings.Builder
	order := "lower is better"
	if res.HigherIsBetter {
		order = "higher is better"
	}
	fmt.Fprintf(&b, "budget: %s parameters (%s), tolerance %g; %s (%s)", commas(res.Budget), res.BudgetFrom, res.Tolerance, res.Metric, order)
	if res.Base != 0 {
		fmt.Fprintf(&b, "; without an adapter %.4f", res.Base)
	}
	b.WriteString("\n\n")
	for i, round := range res.Rounds {
		runs := "seed " + fmt.Sprint(res.Seeds[0])
		if i == len(res.Rungs)-1 {
			runs = fmt.Sprintf("mean over seeds %v", res.Seeds)
		}
		fmt.Fprintf(&b, "round %d: %d steps, %s\n\n| rank | Lily shape | trainable params | %s |\n|---:|---|---:|---:|\n", i+1, round.Budget, runs, res.Metric)
		for k, s := range round.Scores {
			fmt.Fprintf(&b, "| %d | %s | %s | %.4f |\n", k+1, ShapeName(s.Candidate), commas(s.Candidate.Params), s.Score)
		}
		b.WriteString("\n")
	}
	if res.Best != nil {
		fmt.Fprintf(&b, "best: %s (%s parameters)\n", ShapeName(*res.Best), commas(res.Best.Params))
	}
	if res.Interrupted {
		b.WriteString("(interrupted: the last round did not finish)\n")
	}
	return b.String()
}

// commas writes n with thousands separators.
func commas(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
