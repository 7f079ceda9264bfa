package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/lilygo/lily/graphs/mamba"
	"github.com/lilygo/lily/internal/sweep"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
)

// kindRun names this command's runs in their output folders' records
// (internal/outdir).
const kindRun = "mamba"

// kindExport names the output folders of 'mamba export'.
const kindExport = "mamba export"

// Files the run writes into -out.
const (
	resultsFile      = "results.json"
	plotFile         = "perplexity.png"
	pretrainPlotFile = "pretrain_loss.png"
	pretrainedDir    = "pretrained"
)

// dataStats describes the text of the run.
type dataStats struct {
	corpus
	SourceDocs        int `json:"source_docs"`
	SourceTokens      int `json:"source_tokens"`
	SourceEvalDocs    int `json:"source_held_out_docs"`
	SourceEvalTokens  int `json:"source_held_out_tokens"`
	TargetDocs        int `json:"target_docs"`
	TargetTokens      int `json:"target_tokens"`
	TargetEvalDocs    int `json:"target_held_out_docs"`
	TargetEvalTokens  int `json:"target_held_out_tokens"`
	TargetEvalTargets int `json:"target_held_out_predicted_tokens"`
}

// modelInfo describes the adapted model.
type modelInfo struct {
	Dir        string       `json:"dir"`
	Pretrained bool         `json:"pretrained_here"`
	Config     mamba.Config `json:"config"`
	Params     int          `json:"params"`
	VocabSize  int          `json:"tokenizer_vocab_size"`
	Merges     int          `json:"tokenizer_merges"`
	EOS        int          `json:"document_separator_id"`
}

// summaryRow is one method's perplexity over its seeds.
type summaryRow struct {
	Method    string    `json:"method"`
	Label     string    `json:"label"`
	Kind      string    `json:"kind"`
	Sites     string    `json:"sites"`
	Trainable int       `json:"trainable_params"`
	Runs      int       `json:"runs"`
	Mean      float64   `json:"mean_perplexity"`
	Std       float64   `json:"std_perplexity"`
	PerSeed   []float64 `json:"perplexity_per_seed"`
	Seconds   float64   `json:"mean_seconds_per_run"`
}

// results is results.json.
type results struct {
	Note        string          `json:"note"`
	Config      config          `json:"config"`
	Seeds       []uint64        `json:"seeds"`
	BLAS        string          `json:"blas"`
	Ranks       int             `json:"mpi_ranks"`
	Data        dataStats       `json:"data"`
	Model       modelInfo       `json:"model"`
	Pretrain    *pretrainResult `json:"pretrain,omitempty"`
	SourcePPL   float64         `json:"pretrained_source_held_out_perplexity,omitempty"`
	TargetPPL   float64         `json:"pretrained_target_held_out_perplexity"`
	Runs        []runResult     `json:"runs"`
	Summary     []summaryRow    `json:"summary"`
	Interrupted bool            `json:"interrupted"`
	Seconds     float64         `json:"total_seconds"`
}

// resultsNote explains the numbers in results.json.
const resultsNote = "Perplexities are exp of the mean next-token cross-entropy over every predicted token of the held-out target text " +
	"(token-weighted; documents joined by the separator id, cut into consecutive windows of seq_len). " +
	"std is the sample standard deviation over seeds. Step 0 of every run is the pretrained model."

// summarize groups the runs by method, in table order.
func summarize(runs []runResult) []summaryRow {
	var out []summaryRow
	for _, m := range methods {
		row := summaryRow{Method: m.Name, Label: m.Label, Kind: m.kindLabel(), Sites: m.sites()}
		for _, r := range runs {
			if r.Method != m.Name {
				continue
			}
			row.Trainable = r.Trainable
			row.PerSeed = append(row.PerSeed, r.Final)
			row.Seconds += r.Seconds
		}
		if row.Runs = len(row.PerSeed); row.Runs == 0 {
			continue
		}
		row.Mean, row.Std = sweep.MeanStd(row.PerSeed)
		row.Seconds /= float64(row.Runs)
		out = append(out, row)
	}
	return out
}

// writeOutputs replaces results.json, the plots and the run record in -out
// together, keeping the pretrained model and the adapters; finished says
// that the last run is done.
func writeOutputs(res *results, finished, rank0 bool) error {
	res.Summary = summarize(res.Runs)
	if !rank0 {
		return nil
	}
	return res.Config.folder().Update(finished, func(dir string) error {
		if err := train.WriteJSON(filepath.Join(dir, resultsFile), res); err != nil {
			return err
		}
		if err := plotPerplexity(filepath.Join(dir, plotFile), res); err != nil {
			return err
		}
		if res.Pretrain != nil && res.Pretrain.Steps > 0 {
			return plotPretrain(filepath.Join(dir, pretrainPlotFile), res.Pretrain)
		}
		return nil
	})
}

// plotPerplexity draws each method's held-out perplexity against the
// adaptation step, averaged over the seeds that reached that step, and the
// pretrained model's as a horizontal line.
func plotPerplexity(path string, res *results) error {
	series := []train.Series{{Name: "pretrained, not adapted", X: []float64{0, float64(res.Config.Steps)}, Y: []float64{res.TargetPPL, res.TargetPPL}}}
	for _, row := range res.Summary {
		at := map[int][]float64{}
		for _, r := range res.Runs {
			if r.Method == row.Method {
				for _, e := range r.Evals {
					at[e.Step] = append(at[e.Step], e.Perplexity)
				}
			}
		}
		var steps []int
		for s := range at {
			steps = append(steps, s)
		}
		sort.Ints(steps)
		// ASCII names: the plot font sets "Δ" without the space after it.
		s := train.Series{Name: fmt.Sprintf("%s on %s (%s params)", row.Kind, row.Sites, commas(row.Trainable))}
		for _, st := range steps {
			mean, _ := sweep.MeanStd(at[st])
			s.X, s.Y = append(s.X, float64(st)), append(s.Y, mean)
		}
		series = append(series, s)
	}
	title := fmt.Sprintf("held-out perplexity on the target (mean over %s)", plural(len(res.Seeds), "seed"))
	return logPlot(path, title, "adaptation step", "held-out perplexity (token-weighted, log scale)", series...)
}

// plotPretrain draws the pretraining loss, smoothed over 20 steps.
func plotPretrain(path string, p *pretrainResult) error {
	s := train.Series{Name: "training loss (mean of the last 20 steps)"}
	sum := 0.0
	for i, l := range p.Loss {
		sum += l
		if i >= 20 {
			sum -= p.Loss[i-20]
		}
		s.X, s.Y = append(s.X, float64(i+1)), append(s.Y, sum/float64(min(i+1, 20)))
	}
	return train.Plot(path, "Mamba pretraining on the source text", "step", "cross-entropy", s)
}

// printTable writes the comparison table.
func printTable(w io.Writer, res *results) {
	fmt.Fprintf(w, "\n== held-out perplexity on the target: %s, %s predicted tokens ==\n", res.Data.TargetName, commas(res.Data.TargetEvalTargets))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "method\tsites\ttrainable\tperplexity\tper seed\ts/run")
	fmt.Fprintf(tw, "pretrained, not adapted\t-\t0\t%.3f\t\t\n", res.TargetPPL)
	for _, row := range res.Summary {
		ppl := fmt.Sprintf("%.3f", row.Mean)
		if row.Runs > 1 {
			ppl = fmt.Sprintf("%.3f ± %.3f", row.Mean, row.Std)
		}
		per := make([]string, len(row.PerSeed))
		for i, v := range row.PerSeed {
			per[i] = fmt.Sprintf("%.3f", v)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f\n", row.Label, row.Sites, commas(row.Trainable), ppl, strings.Join(per, " "), row.Seconds)
	}
	tw.Flush()
	if len(res.Seeds) > 1 {
		fmt.Fprintf(w, "(lower is better; mean ± sample standard deviation over %d seeds)\n", len(res.Seeds))
	}
}

// plural formats a count with a noun.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// commas formats n with thousands separators.
func commas(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// loadResults reads the results.json of the run in out that -resume
// continues (nil when it wrote none yet).
func loadResults(out string) (*results, error) {
	b, err := os.ReadFile(filepath.Join(out, resultsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, errors.Wrap(err, "-resume")
	}
	var r results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, errors.Wrapf(err, "-resume: reading %s", filepath.Join(out, resultsFile))
	}
	return &r, nil
}

// finished returns the run of method and seed that r recorded as finished.
func (r *results) finished(method string, seed uint64) (runResult, bool) {
	if r == nil {
		return runResult{}, false
	}
	for _, run := range r.Runs {
		if run.Method == method && run.Seed == seed && !run.Interrupted {
			return run, true
		}
	}
	return runResult{}, false
}
