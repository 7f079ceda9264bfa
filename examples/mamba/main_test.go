package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lilygo/lily/adapterfile"
	"github.com/lilygo/lily/graphs/mamba"
	"github.com/lilygo/lily/internal/sweep"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/tokenizers/bytebpe"
	"gorgonia.org/tensor"
)

// tinyArgs is a run small enough for tests: a model of width 8 trained for a
// few steps on small synthetic corpora.
func tinyArgs(out string, extra ...string) []string {
	return append([]string{"-out", out, "-synth_docs", "60", "-merges", "20", "-hidden", "8", "-layers", "2", "-state_size", "4",
		"-seq_len", "16", "-batch", "2", "-pretrain_steps", "4", "-steps", "3", "-eval_every", "2", "-lily_r", "4", "-seeds", "1,2"}, extra...)
}

// readResults parses results.json of a run.
func readResults(t *testing.T, out string) results {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, resultsFile))
	if err != nil {
		t.Fatal(err)
	}
	var res results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// heldOutTokens rebuilds the held-out target stream of a run from its
// flags, with tok.
func heldOutTokens(t *testing.T, args []string, tok *bytebpe.Tokenizer, eos int) []int {
	t.Helper()
	return tokenStream(tok, corpusOf(t, args).TargetEval, eos)
}

// corpusOf reads the corpus the arguments of a run name.
func corpusOf(t *testing.T, args []string) corpus {
	t.Helper()
	c, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	corp, err := loadCorpus(c)
	if err != nil {
		t.Fatal(err)
	}
	return corp
}

// loadPretrained reads the saved pretrained model into a new store.
func loadPretrained(t *testing.T, dir string) (*layers.Store, mamba.Config) {
	t.Helper()
	s, err := layers.NewStore(tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := mamba.LoadHF(dir, s)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	return s, mc
}

// perplexityOf evaluates tokens on store s with adapter a as the run does.
func perplexityOf(t *testing.T, s *layers.Store, mc mamba.Config, a layers.Adapter, c config, tokens []int) float64 {
	t.Helper()
	ev, err := newEvaluator(s, mc, a, c.Batch, c.SeqLen)
	if err != nil {
		t.Fatal(err)
	}
	defer ev.close()
	ppl, err := ev.perplexity(tokens)
	if err != nil {
		t.Fatal(err)
	}
	return ppl
}

// The whole experiment end to end: every output is written, the pretrained
// directory reloads with LoadHF (and its tokenizer) to the identical
// held-out perplexity, and every saved adapter reloads with
// adapterfile.Load to the identical final perplexity of its run.
func TestEndToEnd(t *testing.T) {
	out := t.TempDir()
	args := tinyArgs(out, "-peft_layout")
	var report bytes.Buffer
	if err := run(context.Background(), args, &report, io.Discard); err != nil {
		t.Fatalf("%+v", err)
	}
	for _, want := range []string{"SYNTHETIC", "trainable parameters", "held-out perplexity on the target", "mean ± sample standard deviation over 2 seeds"} {
		if !strings.Contains(report.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, report.String())
		}
	}
	for _, f := range []string{resultsFile, plotFile, pretrainPlotFile, "pretrained/config.json", "pretrained/model.safetensors",
		"pretrained/vocab.json", "pretrained/merges.txt"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	res := readResults(t, out)
	if res.Interrupted || !res.Data.Synthetic || len(res.Runs) != 8 || len(res.Summary) != 4 {
		t.Fatalf("interrupted %t, synthetic %t, %d runs, %d summary rows", res.Interrupted, res.Data.Synthetic, len(res.Runs), len(res.Summary))
	}
	if res.Pretrain == nil || res.Pretrain.Steps != 4 || len(res.Pretrain.Loss) != 4 {
		t.Fatalf("pretraining record %+v", res.Pretrain)
	}

	base, mc := loadPretrained(t, filepath.Join(out, pretrainedDir))
	tok, err := bytebpe.Load(filepath.Join(out, pretrainedDir))
	if err != nil {
		t.Fatal(err)
	}
	c := res.Config
	held := heldOutTokens(t, args, tok, res.Model.EOS)
	if got := perplexityOf(t, base, mc, nil, c, held); got != res.TargetPPL {
		t.Errorf("reloaded pretrained model: perplexity %v, the run reported %v", got, res.TargetPPL)
	}
	for _, r := range res.Runs {
		if r.Steps != 3 || len(r.Evals) != 3 || r.Evals[0].Perplexity != res.TargetPPL || r.Evals[2].Step != 3 {
			t.Errorf("%s seed %d: %d steps, evaluations %+v", r.Method, r.Seed, r.Steps, r.Evals)
		}
		if r.Final == res.TargetPPL {
			t.Errorf("%s seed %d: adaptation left the perplexity at %v", r.Method, r.Seed, r.Final)
		}
		checkAnalysis(t, out, r, mc.NumHiddenLayers)
		// -peft_layout: saved as PEFT saves it, and it still loads back.
		if ac, err := adapterfile.ReadConfig(r.AdapterDir); err != nil || ac.Ext != nil {
			t.Errorf("%s: adapter config %+v, %v; want PEFT's layout without lily_go", r.AdapterDir, ac, err)
		}
		s, _ := loadPretrained(t, filepath.Join(out, pretrainedDir))
		s.Freeze()
		a, err := adapterfile.Load(r.AdapterDir, s, mc.Sites())
		if err != nil {
			t.Fatalf("%s: %+v", r.AdapterDir, err)
		}
		if got := perplexityOf(t, s, mc, a, c, held); got != r.Final {
			t.Errorf("%s seed %d: reloaded adapter gives perplexity %v, the run reported %v", r.Method, r.Seed, got, r.Final)
		}
	}
	for _, row := range res.Summary {
		mean, std := sweep.MeanStd(row.PerSeed)
		if row.Runs != 2 || row.Mean != mean || row.Std != std || row.Trainable == 0 {
			t.Errorf("summary row %+v", row)
		}
	}
	// The finished run is replaced only with -overwrite.
	if err := run(context.Background(), args, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "finished mamba run") {
		t.Errorf("a second run into the finished one: %v", err)
	}
}

// checkAnalysis checks a run's update analysis: one entry per adapted site
// (each target of the method in every layer), Lily's mixing averaged over
// the held-out windows, and the plot.
func checkAnalysis(t *testing.T, out string, r runResult, nLayers int) {
	t.Helper()
	var m method
	for _, x := range methods {
		if x.Name == r.Method {
			m = x
		}
	}
	an := r.Analysis
	if an == nil || an.Method != m.Kind || len(an.Sites) != nLayers*len(m.Targets) {
		t.Fatalf("%s seed %d: analysis %+v", r.Method, r.Seed, an)
	}
	for _, su := range an.Sites {
		if !slices.Contains(m.Targets, su.Target) || su.Rank < 1 {
			t.Errorf("%s seed %d: %s (%s) analysed with rank %d", r.Method, r.Seed, su.Path, su.Target, su.Rank)
		}
		if (su.Mixing != nil) != (m.Kind == "lily") || su.Mixing != nil && su.Mixing.Vectors < 1 {
			t.Errorf("%s seed %d: %s mixing %+v", r.Method, r.Seed, su.Path, su.Mixing)
		}
	}
	if _, err := os.Stat(filepath.Join(out, fmt.Sprintf("updates-%s-seed%d.png", r.Method, r.Seed))); err != nil {
		t.Error(err)
	}
}

// cancelOn is a report writer that cancels a context when the report
// reaches a given text, as Ctrl-C would at that moment.
type cancelOn struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	text   string
	cancel context.CancelFunc
}

func (w *cancelOn) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.text) {
		w.cancel()
	}
	return len(p), nil
}

// An interrupt stops the run cleanly and keeps its outputs: during
// pretraining, the model so far is saved and no adaptation runs; during
// adaptation, the interrupted adapter is evaluated and saved.
func TestInterrupt(t *testing.T) {
	for _, tc := range []struct {
		when string
		runs int
	}{{"source: ", 0}, {"trainable parameters", 1}} {
		out := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		w := &cancelOn{text: tc.when, cancel: cancel}
		if err := run(ctx, tinyArgs(out), w, io.Discard); err != nil {
			t.Fatalf("interrupt at %q: %+v", tc.when, err)
		}
		cancel()
		res := readResults(t, out)
		if !res.Interrupted || len(res.Runs) != tc.runs {
			t.Errorf("interrupt at %q: interrupted %t, %d runs, want %d", tc.when, res.Interrupted, len(res.Runs), tc.runs)
		}
		for _, f := range []string{plotFile, "pretrained/model.safetensors"} {
			if _, err := os.Stat(filepath.Join(out, f)); err != nil {
				t.Errorf("interrupt at %q: %v", tc.when, err)
			}
		}
		if tc.runs == 1 {
			r := res.Runs[0]
			if r.Steps != 0 || r.Final != res.TargetPPL {
				t.Errorf("run interrupted before its first step: %d steps, perplexity %v (pretrained %v)", r.Steps, r.Final, res.TargetPPL)
			}
			if _, err := os.Stat(filepath.Join(r.AdapterDir, adapterfile.WeightsName)); err != nil {
				t.Error(err)
			}
		}
	}
}

func TestFlags(t *testing.T) {
	var help bytes.Buffer
	if _, err := parseFlags([]string{"-h"}, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, want := range []string{"SYNTHETIC", "-lily_stride_A", "-lora_r", "(default 16)", "-glue_dir", "results.json"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("-h lacks %q", want)
		}
	}
	c, err := parseFlags(nil, io.Discard)
	if err != nil || !c.synthetic() {
		t.Fatalf("no flags: %v, synthetic %t", err, c.synthetic())
	}
	for _, bad := range [][]string{
		{"-target", "a", "-target_task", "sst2"},
		{"-source_tasks", "cola", "-target_task", "sst2"},
		{"-target", "b.txt"},
		{"-model", "m", "-source", "a.txt", "-target", "b.txt"},
		{"-tokenizer", "t"},
		{"-methods", "lily_in,dora"},
		{"-methods", "lora_in,lora_in"},
		{"-seeds", "1,x"},
		{"-seeds", ""},
		{"-lily_routing", "random"},
		{"-lily_num_B", "1"},
		{"-held_out", "1"},
		{"-steps", "0"},
		{"-seq_len", "1"},
		{"-pretrain_lr", "NaN"},
		{"stray"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
	if _, err := parseFlags([]string{"-model", "m", "-target", "b.txt"}, io.Discard); err != nil {
		t.Errorf("-model with -target: %v", err)
	}
	ms, err := parseMethods("lora_dt_in, lily_in")
	if err != nil || len(ms) != 2 || ms[0].Name != "lily_in" {
		t.Errorf("parseMethods: %v %v", ms, err)
	}
}

// LoRA's automatic rank gives the parameter count nearest to Lily's on the
// same sites.
func TestMatchedRank(t *testing.T) {
	c := defaults
	mc := mamba.TinyConfig()
	mc.NumHiddenLayers = 5
	for _, m := range methods[2:] {
		_, lily, err := newAdapter(c, methods[map[string]int{"lora_in": 0, "lora_dt_in": 1}[m.Name]], mc)
		if err != nil {
			t.Fatal(err)
		}
		a, n, err := newAdapter(c, m, mc)
		if err != nil {
			t.Fatal(err)
		}
		r := a.(*layers.LoRA).Config().R
		for _, other := range []int{r - 1, r + 1} {
			if other < 1 {
				continue
			}
			oc := c
			oc.LoraR = other
			_, on, err := newAdapter(oc, m, mc)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(float64(on-lily)) < math.Abs(float64(n-lily)) {
				t.Errorf("%s: rank %d gives %d parameters, nearer to Lily's %d than rank %d's %d", m.Name, other, on, lily, r, n)
			}
		}
	}
	if got := strideA(c, 5); got != 3 {
		t.Errorf("default stride_A for 5 layers = %d, want 3", got)
	}
}

func TestSplitAndSample(t *testing.T) {
	docs := make([]string, 50)
	for i := range docs {
		docs[i] = strings.Repeat("x", i+1)
	}
	held, rest, err := split(docs, 0.1)
	if err != nil || len(held) != 5 || len(rest) != 45 {
		t.Fatalf("split: %d + %d, %v", len(held), len(rest), err)
	}
	again, _, _ := split(docs, 0.1)
	for i := range held {
		if held[i] != again[i] {
			t.Fatal("split is not deterministic")
		}
	}
	if got := sample(docs, 20); len(got) != 20 {
		t.Errorf("sample kept %d documents, want 20", len(got))
	}
	if got := sample(docs, 0); len(got) != 50 {
		t.Errorf("sample 0 kept %d documents, want all", len(got))
	}
	if _, _, err := split(docs[:1], 0.5); err == nil {
		t.Error("splitting one document: no error")
	}
	if _, err := newWindows([]int{1, 2, 3}, 3, "x"); err == nil {
		t.Error("a stream shorter than a window: no error")
	}
}

func TestReadLines(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "docs.txt")
	if err := os.WriteFile(p, []byte("first doc\n\n  second doc  \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	docs, err := readLines(p)
	if err != nil || len(docs) != 2 || docs[1] != "second doc" {
		t.Fatalf("readLines: %q %v", docs, err)
	}
	empty := filepath.Join(dir, "empty.txt")
	if err := os.WriteFile(empty, []byte("\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readLines(empty); err == nil {
		t.Error("a file without documents: no error")
	}
	if _, err := readLines(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file: no error")
	}
}

// Text files as corpora, with -target_eval, end to end.
func TestFileCorpora(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, docs []string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Join(docs, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	src := write("src.txt", synthDocs(60, 1, enSentence))
	tgt := write("tgt.txt", synthDocs(40, 2, kaSentence))
	ev := write("eval.txt", synthDocs(5, 3, kaSentence))
	out := filepath.Join(dir, "out")
	args := tinyArgs(out, "-source", src, "-target", tgt, "-target_eval", ev, "-methods", "lily_dt_in", "-seeds", "3")
	if err := run(context.Background(), args, io.Discard, io.Discard); err != nil {
		t.Fatalf("%+v", err)
	}
	res := readResults(t, out)
	if res.Data.Synthetic || res.Data.TargetDocs != 40 || res.Data.TargetEvalDocs != 5 || res.Data.SourceDocs != 54 || len(res.Runs) != 1 {
		t.Errorf("data %+v, %d runs", res.Data, len(res.Runs))
	}
}

// The log axis gets labelled ticks inside a range without a power of ten,
// and none (rather than gonum's panic) for a range it cannot show.
func TestLogTicks(t *testing.T) {
	ticks := logTicks{}.Ticks(205, 354)
	if len(ticks) < 4 {
		t.Fatalf("ticks %+v", ticks)
	}
	for _, tk := range ticks {
		if tk.Value < 205 || tk.Value > 354 || tk.Label == "" {
			t.Errorf("tick %+v", tk)
		}
	}
	if got := (logTicks{}).Ticks(-1, 1); got != nil {
		t.Errorf("ticks for a range through 0: %+v", got)
	}
	if err := logPlot(filepath.Join(t.TempDir(), "p.png"), "t", "x", "y"); err == nil {
		t.Error("a plot without values: no error")
	}
}
