package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lilygo/lily/adapterfile"
	"github.com/lilygo/lily/internal/searchcmd"
	"github.com/lilygo/lily/internal/sweep"
	"github.com/lilygo/lily/layers"
)

// sharedData returns the shared data folder beside the repository checkout,
// skipping the test when it is missing (and failing it under CI=true).
func sharedData(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs("../../../shared/data")
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{defaultCheckpoint, defaultTokenizer, "glue/SST-2/train.tsv", "glue/SST-2/dev.tsv"} {
		if _, err := os.Stat(filepath.Join(dir, rel)); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("test data missing under CI: %v", err)
			}
			t.Skipf("test data missing: %v", err)
		}
	}
	return dir
}

// TestGenerateGreedy runs the generate subcommand with its default paths
// (found from the package folder) and checks llama2.c's greedy text.
func TestGenerateGreedy(t *testing.T) {
	sharedData(t)
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"generate", "-temperature", "0", "-steps", "40"}, &out, &errOut); err != nil {
		t.Fatalf("%+v", err)
	}
	const want = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
	if !strings.HasPrefix(out.String(), want) {
		t.Fatalf("greedy text:\n%s\nwant it to begin with:\n%s", out.String(), want)
	}
	if !strings.Contains(errOut.String(), "tokens/s") {
		t.Errorf("no speed reported: %q", errOut.String())
	}
}

// TestGenerateSampling checks that sampling is seeded and continues the
// prompt.
func TestGenerateSampling(t *testing.T) {
	data := sharedData(t)
	args := []string{"generate", "-checkpoint", filepath.Join(data, defaultCheckpoint), "-tokenizer", filepath.Join(data, defaultTokenizer),
		"-prompt", "The dog", "-steps", "24", "-temperature", "0.8", "-top_p", "0.9", "-seed", "7"}
	var a, b bytes.Buffer
	for _, buf := range []*bytes.Buffer{&a, &b} {
		if err := run(context.Background(), args, buf, &bytes.Buffer{}); err != nil {
			t.Fatalf("%+v", err)
		}
	}
	if a.String() != b.String() || !strings.HasPrefix(a.String(), "The dog") {
		t.Errorf("sampled texts %q and %q", a.String(), b.String())
	}
}

// tinyArgs is a finetune budget small enough for a test.
func tinyArgs(data string) []string {
	return []string{"-checkpoint", filepath.Join(data, defaultCheckpoint), "-tokenizer", filepath.Join(data, defaultTokenizer),
		"-glue_dir", filepath.Join(data, "glue"), "-train_examples", "200", "-eval_examples", "12",
		"-max_steps", "4", "-eval_every", "2", "-batch_size", "8", "-max_len", "32", "-lily_r", "4", "-lora_r", "2"}
}

// checkRun checks a finetune output folder: results.json, the plot and an
// adapter that, loaded into a fresh model, gives the saved step's held-out
// perplexity again.
func checkRun(t *testing.T, dir string) {
	t.Helper()
	res := readResult(t, dir)
	c := res.Config
	if len(res.Evals) != 3 || res.Evals[0].Step != 0 || res.Final.Step != 4 || res.Steps != 4 {
		t.Errorf("%s: evaluations %+v, final %+v, %d steps", c.Adapter, res.Evals, res.Final, res.Steps)
	}
	if !(res.Base.Perplexity > 1) || !(res.Best.Perplexity < res.Base.Perplexity) || res.SavedStep != res.Best.Step {
		t.Errorf("%s: base %v, best %v at step %d, saved %d", c.Adapter, res.Base.Perplexity, res.Best.Perplexity, res.Best.Step, res.SavedStep)
	}
	if !strings.HasPrefix(res.Summary, "trainable params: ") || res.TrainableParams <= 0 || res.TokensPerSecond <= 0 {
		t.Errorf("%s: summary %q, %d trainable, %v tokens/s", c.Adapter, res.Summary, res.TrainableParams, res.TokensPerSecond)
	}
	if png, err := os.ReadFile(filepath.Join(dir, plotFile)); err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("%s: plot: %v", c.Adapter, err)
	}
	checkAnalysis(t, dir, &res)

	fresh, err := loadBase(c.Checkpoint, c.Tokenizer, "f32", nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := loadCorpus(c, fresh.tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	batches := evalBatches(lengths(data.eval), c.BatchSize)
	// The base perplexity, measured with the fresh adapter attached (or
	// cached by a sweep), is exactly the plain model's.
	plain := newLM(fresh.cfg, fresh.store, layers.None{})
	baseRes, err := plain.evaluate(data.eval, batches, c.MaxLen)
	plain.close()
	if err != nil {
		t.Fatal(err)
	}
	if baseRes != res.Base {
		t.Errorf("%s: base %+v, the plain model gives %+v", c.Adapter, res.Base, baseRes)
	}
	a, err := fresh.loadAdapter(filepath.Join(dir, adapterDir))
	if err != nil {
		t.Fatalf("%+v", err)
	}
	trainable, _ := fresh.store.Count()
	if c.Adapter != "full" && trainable != res.TrainableParams {
		t.Errorf("%s: reloaded %d adapter parameters, trained %d", c.Adapter, trainable, res.TrainableParams)
	}
	l := newLM(fresh.cfg, fresh.store, a)
	defer l.close()
	got, err := l.evaluate(data.eval, batches, c.MaxLen)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got.Perplexity-res.Best.Perplexity) > 1e-6*res.Best.Perplexity || got.Tokens != res.Best.Tokens {
		t.Errorf("%s: reloaded adapter: perplexity %v over %d tokens, saved step had %v over %d", c.Adapter, got.Perplexity, got.Tokens, res.Best.Perplexity, res.Best.Tokens)
	}
}

// TestFinetuneEndToEnd fine-tunes Lily on a tiny budget through the command
// and reloads the adapter, saved in PEFT's layout (-peft_layout).
func TestFinetuneEndToEnd(t *testing.T) {
	data := sharedData(t)
	out := t.TempDir()
	var stdout bytes.Buffer
	args := append([]string{"finetune", "-adapter", "lily", "-peft_layout", "-out", out}, tinyArgs(data)...)
	if err := run(context.Background(), args, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatalf("%+v", err)
	}
	if !strings.Contains(stdout.String(), "trainable params: ") {
		t.Errorf("no parameter summary in:\n%s", stdout.String())
	}
	checkRun(t, out)
	cfg, err := adapterfile.ReadConfig(filepath.Join(out, adapterDir))
	if err != nil || cfg.PEFTType != "LILY" || cfg.R != 4 || cfg.TaskType != "CAUSAL_LM" || cfg.Ext != nil {
		t.Errorf("adapter config %+v, %v", cfg, err)
	}
}

// TestSweep runs LoRA and full fine-tuning through sweep and checks the
// summary and every run's outputs.
func TestSweep(t *testing.T) {
	data := sharedData(t)
	out := t.TempDir()
	args := append([]string{"sweep", "-seeds", "3", "-out", out}, tinyArgs(data)...)
	args = append(args, "-run", "lora small: -adapter lora", "-run", "full: -adapter full -lr 1e-3")
	if err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatalf("%+v", err)
	}
	b, err := os.ReadFile(filepath.Join(out, sweepJSON))
	if err != nil {
		t.Fatal(err)
	}
	var res sweepResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 2 || len(res.Variants) != 2 || res.Runs[0].Base != res.Runs[1].Base {
		t.Fatalf("sweep result %+v", res)
	}
	if res.Runs[1].Trainable != 260032 {
		t.Errorf("full fine-tuning trains %d parameters, want all 260,032", res.Runs[1].Trainable)
	}
	md, err := os.ReadFile(filepath.Join(out, sweepMarkdown))
	if err != nil || !strings.Contains(string(md), "| lora small | ") {
		t.Errorf("sweep table %q, %v", md, err)
	}
	if png, err := os.ReadFile(filepath.Join(out, sweepPlot)); err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("sweep plot: %v", err)
	}
	for _, r := range res.Runs {
		if r.Dir != filepath.Join(out, sweep.Slug(r.Name)+"-seed3") {
			t.Errorf("run %s in %s", r.Name, r.Dir)
		}
		checkRun(t, r.Dir)
	}
}

// TestInterruptKeepsOutputs starts a run with Ctrl-C already pressed: it
// evaluates the base model, trains nothing, and still writes everything.
func TestInterruptKeepsOutputs(t *testing.T) {
	data := sharedData(t)
	out := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c, err := parseFinetune(append([]string{"-adapter", "lora", "-out", out}, tinyArgs(data)...), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := finetune(ctx, c, &bytes.Buffer{}, &bytes.Buffer{}, nil)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if !res.Interrupted || res.Steps != 0 || len(res.Evals) != 1 {
		t.Errorf("interrupted %v after %d steps, %d evaluations", res.Interrupted, res.Steps, len(res.Evals))
	}
	for _, f := range []string{resultsFile, plotFile, filepath.Join(adapterDir, adapterfile.ConfigName)} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
}

// TestPerplexityIsTokenWeighted evaluates the same sentences in one padded
// batch and one by one: a token-weighted perplexity that ignores padding
// must not change.
func TestPerplexityIsTokenWeighted(t *testing.T) {
	data := sharedData(t)
	b, err := loadBase(filepath.Join(data, defaultCheckpoint), filepath.Join(data, defaultTokenizer), "f32", nil)
	if err != nil {
		t.Fatal(err)
	}
	seqs, err := encodeTexts(b.tok, []string{"a gorgeous , witty , seductive movie .", "bad", "the story is told in a series of flashbacks ."}, 64)
	if err != nil {
		t.Fatal(err)
	}
	l := newLM(b.cfg, b.store, layers.None{})
	defer l.close()
	together, err := l.evaluate(seqs, [][]int{{0, 1, 2}}, 64)
	if err != nil {
		t.Fatal(err)
	}
	apart, err := l.evaluate(seqs, [][]int{{0}, {1}, {2}}, 64)
	if err != nil {
		t.Fatal(err)
	}
	if want := predicted(seqs); together.Tokens != want || apart.Tokens != want {
		t.Errorf("%d and %d tokens, want %d", together.Tokens, apart.Tokens, want)
	}
	if math.Abs(together.NLL-apart.NLL) > 1e-5 {
		t.Errorf("mean NLL %v in one batch, %v one by one", together.NLL, apart.NLL)
	}
}

// checkAnalysis checks the update analysis of a finetune run: one entry per
// adapted site with Lily's mixing averaged over every held-out batch, and
// its plot; nothing for full fine-tuning.
func checkAnalysis(t *testing.T, dir string, res *ftResult) {
	t.Helper()
	c, an := res.Config, res.Analysis
	_, plotErr := os.Stat(filepath.Join(dir, updatesPlotFile))
	if c.Adapter == "full" {
		if an != nil || plotErr == nil {
			t.Errorf("full fine-tuning has an update analysis %v or plot", an)
		}
		return
	}
	if an == nil || an.Method != c.Adapter || plotErr != nil {
		t.Fatalf("%s: analysis %+v, plot %v", c.Adapter, an, plotErr)
	}
	// Lily and LoRA adapt the same seven linears of each of the 5 layers.
	if len(an.Sites) != 35 || an.Summary.MeanRank <= 0 {
		t.Errorf("%s: %d sites analysed, mean rank %g", c.Adapter, len(an.Sites), an.Summary.MeanRank)
	}
	for _, su := range an.Sites {
		if (su.Mixing != nil) != (c.Adapter == "lily") {
			t.Fatalf("%s: %s has mixing %+v", c.Adapter, su.Path, su.Mixing)
		}
		if su.Mixing == nil {
			continue
		}
		s := 0.0
		for _, x := range su.Mixing.Mean {
			s += x
		}
		// Batch routing: one vector per held-out batch (12 texts in 2 batches).
		if len(su.Mixing.Mean) != c.LilyNumB || math.Abs(s-1) > 1e-5 || su.Mixing.Vectors != 2 {
			t.Errorf("%s mixing weights %v over %d vectors", su.Path, su.Mixing.Mean, su.Mixing.Vectors)
		}
	}
}

// TestSearch runs a small budget-matched search end to end: every listed
// shape is within the tolerance of LoRA r 1's size, each round keeps the
// best part of the previous one, the last round runs both seeds, and the
// outputs are written.
func TestSearch(t *testing.T) {
	data := sharedData(t)
	out := t.TempDir()
	var args []string
	tiny := tinyArgs(data)
	for i := 0; i < len(tiny); i += 2 {
		if tiny[i] != "-max_steps" && tiny[i] != "-lily_r" {
			args = append(args, tiny[i], tiny[i+1])
		}
	}
	args = append([]string{"search", "-out", out, "-lora_budget", "1", "-tolerance", "0.1", "-max_r", "6", "-max_num_B", "3",
		"-rungs", "2,4", "-keep", "0.34", "-seeds", "5,6"}, args...)
	if err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatalf("%+v", err)
	}
	b, err := os.ReadFile(filepath.Join(out, searchcmd.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	var res searchcmd.Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	n := len(res.Candidates)
	if n < 2 || len(res.Rounds) != 2 || len(res.Rounds[0].Scores) != n || len(res.Rounds[1].Scores) != (n*34+99)/100 || res.Best == nil {
		t.Fatalf("%d candidates, rounds %+v, best %v", n, res.Rounds, res.Best)
	}
	for _, c := range res.Candidates {
		if d := float64(c.Params - res.Budget); d > 0.1*float64(res.Budget) || -d > 0.1*float64(res.Budget) {
			t.Errorf("candidate %+v is not within 10%% of %d", c, res.Budget)
		}
	}
	if len(res.Runs) != n+2*len(res.Rounds[1].Scores) || *res.Best != res.Rounds[1].Scores[0].Candidate {
		t.Errorf("%d runs for %d candidates, best %v", len(res.Runs), n, res.Best)
	}
	// The second round's candidates are the first round's best.
	for i, s := range res.Rounds[1].Scores {
		found := false
		for _, p := range res.Rounds[0].Scores[:len(res.Rounds[1].Scores)] {
			found = found || p.Candidate == s.Candidate
		}
		if !found {
			t.Errorf("round 2 candidate %d (%v) was not among round 1's best", i, s.Candidate)
		}
	}
	for _, name := range []string{searchcmd.MarkdownFile, searchcmd.PlotFile} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Error(err)
		}
	}
	for _, bad := range [][]string{{"-lily_r", "3"}, {"-max_steps", "3"}, {"-rungs", "4,2"}, {"-adapter", "lora"}, {"-resume"}} {
		if err := run(context.Background(), append([]string{"search", "-out", t.TempDir()}, bad...), io.Discard, io.Discard); err == nil {
			t.Errorf("search %v: no error", bad)
		}
	}
}
