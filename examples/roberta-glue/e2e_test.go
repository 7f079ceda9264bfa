package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/lilygo/lily/adapterfile"
	"github.com/lilygo/lily/glue"
	"github.com/lilygo/lily/graphs/roberta"
	"github.com/lilygo/lily/tokenizers/bytebpe"
	"github.com/lilygo/lily/train"
)

// tinyPretrain is a pretraining configuration that runs in well under a
// second.
func tinyPretrain(glueDir, out string) ptConfig {
	return ptConfig{GlueDir: glueDir, Out: out, Merges: 60, MaxLen: 16, Hidden: 16, Layers: 2, Heads: 2, Intermediate: 32,
		Dropout: 0.1, BatchSize: 8, LR: 1e-3, WarmupRatio: 0.1, WeightDecay: 0.01, MaxSteps: 6, Seed: 1,
		Flags: train.Flags{SaveEvery: 3}}
}

// tinyFinetune is a fine-tuning configuration for the tiny model.
func tinyFinetune(task, glueDir, model, adapter, out string) ftConfig {
	c := ftConfig{Task: task, GlueDir: glueDir, Model: model, Adapter: adapter, LilyR: 4, LilyNumB: 2, LilyScaling: 0.1,
		LilyTargets: "query,value", LilyRouting: "batch", LoraR: 2, LoraAlpha: 2, LoraTargets: "query,value",
		MaxSteps: 6, BatchSize: 8, MaxLen: 16, HeadLR: 5e-3, AdapterLR: 5e-3, WarmupRatio: 0.06, Seed: 1, Out: out, EvalEvery: 3}
	c.Epochs = 1
	return c
}

var (
	fixtureOnce               sync.Once
	fixtureErr                error
	fixtureGlue, fixtureModel string
	fixtureRoot               string
	fixtureState              *ptState
)

// fixture writes a small synthetic task and pretrains the tiny model on it,
// once for all tests.
func fixture(t *testing.T) (glueDir, model string) {
	t.Helper()
	fixtureOnce.Do(func() {
		if fixtureRoot, fixtureErr = os.MkdirTemp("", "roberta-glue-test-"); fixtureErr != nil {
			return
		}
		fixtureGlue = filepath.Join(fixtureRoot, "glue")
		if fixtureErr = writeSynthGLUE(fixtureGlue, 200, 48, 1); fixtureErr != nil {
			return
		}
		fixtureModel = filepath.Join(fixtureRoot, "model")
		fixtureState, fixtureErr = pretrain(context.Background(), tinyPretrain(fixtureGlue, fixtureModel), map[string]bool{}, io.Discard, runHooks{progress: io.Discard})
	})
	if fixtureErr != nil {
		t.Fatalf("%+v", fixtureErr)
	}
	return fixtureGlue, fixtureModel
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureRoot != "" {
		os.RemoveAll(fixtureRoot)
	}
	os.Exit(code)
}

func TestPretrainWritesModelDirectory(t *testing.T) {
	_, model := fixture(t)
	for _, f := range []string{roberta.ConfigFile, roberta.WeightsFile, bytebpe.VocabFile, bytebpe.MergesFile,
		pretrainLogFile, pretrainPlotFile} {
		if _, err := os.Stat(filepath.Join(model, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	if _, err := os.Stat(train.CheckpointDir(model)); !os.IsNotExist(err) {
		t.Errorf("the finished run kept its checkpoint: %v", err)
	}
	ck, err := roberta.Load(model, roberta.LoadOptions{LMHead: true})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	tok, err := bytebpe.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	if ck.Config.VocabSize != tok.VocabSize() || ck.Config.MaxSeqLen() != 16 || ck.Config.NumHiddenLayers != 2 {
		t.Errorf("config %+v for vocabulary %d", ck.Config, tok.VocabSize())
	}
	st := fixtureState
	if st.Step != 6 || len(st.Losses) != 6 || len(st.Evals) != 2 || st.Evals[1].Step != 6 || st.Tokens <= 0 || st.TokensPerSec <= 0 {
		t.Errorf("state %+v", st)
	}
	png, _ := os.ReadFile(filepath.Join(model, pretrainPlotFile))
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Error("the loss plot is not a PNG")
	}
}

// An interrupted run saves a checkpoint and -resume, given only -out,
// continues from it with the run's settings: every loss is the
// uninterrupted run's. Resuming on other text is refused.
func TestPretrainInterruptAndResume(t *testing.T) {
	glueDir, _ := fixture(t)
	out := filepath.Join(t.TempDir(), "pt")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := tinyPretrain(glueDir, out)
	c.SaveEvery = 100
	st, err := pretrain(ctx, c, map[string]bool{}, io.Discard, runHooks{progress: io.Discard, afterStep: func(step int) {
		if step == 4 {
			cancel()
		}
	}})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if !st.Interrupted || st.Step != 4 {
		t.Fatalf("interrupted run: step %d, interrupted %v", st.Step, st.Interrupted)
	}
	if !train.HasCheckpoint(train.CheckpointDir(out)) {
		t.Fatal("no checkpoint after the interruption")
	}
	var log strings.Builder
	resumed, err := pretrain(context.Background(), ptConfig{Out: out, Flags: train.Flags{Resume: true}}, map[string]bool{"out": true, "resume": true}, &log, runHooks{progress: io.Discard})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if !strings.Contains(log.String(), "resuming the run in") || resumed.Step != 6 || resumed.ResumedFrom != 4 || resumed.Interrupted {
		t.Fatalf("resumed state: step %d from %d, interrupted %v\n%s", resumed.Step, resumed.ResumedFrom, resumed.Interrupted, log.String())
	}
	if !reflect.DeepEqual(resumed.Losses, fixtureState.Losses) {
		t.Errorf("losses %v after resuming, %v without interruption", resumed.Losses, fixtureState.Losses)
	}
	// Resuming on other text is refused.
	out2 := filepath.Join(t.TempDir(), "pt2")
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	if _, err := pretrain(ctx2, tinyPretrain(glueDir, out2), map[string]bool{}, io.Discard, runHooks{progress: io.Discard, afterStep: func(int) { cancel2() }}); err != nil {
		t.Fatalf("%+v", err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if err := writeSynthGLUE(other, 150, 10, 9); err != nil {
		t.Fatal(err)
	}
	_, err = pretrain(context.Background(), ptConfig{Out: out2, GlueDir: other, Flags: train.Flags{Resume: true}}, map[string]bool{"glue_dir": true}, io.Discard, runHooks{progress: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "same data") {
		t.Errorf("resume on other data: %v", err)
	}
}

// reloadAndEvaluate loads the saved adapter and head into a fresh copy of the
// model (whose head starts from other random values) and evaluates it.
func reloadAndEvaluate(t *testing.T, c ftConfig, res *ftResult) map[string]float64 {
	t.Helper()
	task, _ := glue.Lookup(c.Task)
	ck, tok, err := loadEncoder(c.Model, false)
	if err != nil {
		t.Fatal(err)
	}
	ck.Store.Freeze()
	if err := roberta.AddClassifier(ck.Store, ck.Config, task.NumLabels, 12345); err != nil {
		t.Fatal(err)
	}
	ad, err := adapterfile.Load(res.AdapterDir, ck.Store, ck.Config.Sites())
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if ad.Method() != c.Adapter {
		t.Errorf("reloaded a %s adapter, trained %s", ad.Method(), c.Adapter)
	}
	data, err := loadTaskData(c, task)
	if err != nil {
		t.Fatal(err)
	}
	evalEx, err := encodeExamples(tok, task, data.eval, c.MaxLen)
	if err != nil {
		t.Fatal(err)
	}
	sm := &seqModel{cfg: ck.Config, store: ck.Store, adapter: ad, regression: task.Regression(), pad: ck.Config.PadTokenID, graphs: newGraphCache(c.BatchSize * c.MaxLen)}
	defer sm.close()
	m, err := evaluate(sm, task, evalEx, c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFinetuneEndToEnd(t *testing.T) {
	glueDir, model := fixture(t)
	counts := map[string]int{}
	for _, adapter := range []string{"lily", "lora", "none"} {
		c := tinyFinetune("sst2", glueDir, model, adapter, filepath.Join(t.TempDir(), adapter))
		var out strings.Builder
		res, err := finetune(context.Background(), c, &out, runHooks{progress: io.Discard})
		if err != nil {
			t.Fatalf("%s: %+v", adapter, err)
		}
		if res.Steps != 6 || len(res.Evals) != 2 || res.Best == nil || len(res.Losses) != 6 || res.Interrupted {
			t.Fatalf("%s: %d steps, %d evaluations, best %v", adapter, res.Steps, len(res.Evals), res.Best)
		}
		counts[adapter] = res.AdapterParams
		if res.HeadParams != 16*16+16+16*2+2 || res.TrainableParams != res.HeadParams+res.AdapterParams {
			t.Errorf("%s: head %d, trainable %d", adapter, res.HeadParams, res.TrainableParams)
		}
		if !strings.Contains(out.String(), "trainable params: ") || !strings.Contains(out.String(), "best accuracy") {
			t.Errorf("%s: output lacks the summary or the best result:\n%s", adapter, out.String())
		}
		// results.json holds the configuration, the adapter's, the counts and
		// every evaluation.
		var back map[string]any
		b, err := os.ReadFile(filepath.Join(c.Out, resultsFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"config", "adapter_config", "trainable_params", "summary", "evals", "best", "wall_seconds", "train_tokens_per_second"} {
			if _, ok := back[k]; !ok {
				t.Errorf("%s: results.json lacks %q", adapter, k)
			}
		}
		png, _ := os.ReadFile(filepath.Join(c.Out, plotFile))
		if !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Errorf("%s: no PNG plot", adapter)
		}
		checkAnalysis(t, c, res, back)
		ac, err := adapterfile.ReadConfig(res.AdapterDir)
		if err != nil || ac.TaskType != "SEQ_CLS" || !reflect.DeepEqual(ac.ModulesToSave, []string{"classifier"}) {
			t.Errorf("%s: adapter config %+v, %v", adapter, ac, err)
		}
		// The saved adapter is the best evaluation's; reloaded into a fresh
		// model it gives exactly the reported metric.
		if got := reloadAndEvaluate(t, c, res); !reflect.DeepEqual(got, res.Best.Metrics) {
			t.Errorf("%s: reloaded adapter scores %v, training reported %v", adapter, got, res.Best.Metrics)
		}
	}
	// Lily on 2 layers with stride_A 1 (the recipe's 2 A's): per target
	// 2·16·4 (A) + 2·4·16 (B) + 2·4·2 (routers), two targets.
	if want := 2 * (2*16*4 + 2*4*16 + 2*4*2); counts["lily"] != want {
		t.Errorf("lily has %d parameters, want %d", counts["lily"], want)
	}
	if want := 2 * 2 * (16*2 + 2*16); counts["lora"] != want || counts["none"] != 0 {
		t.Errorf("lora has %d parameters (want %d), none %d", counts["lora"], want, counts["none"])
	}
}

// checkAnalysis checks the update analysis of a fine-tuning run: for Lily
// and LoRA one entry per adapted site (query and value of 2 layers) in
// results.json, Lily's mixing averaged over one vector per evaluation batch,
// and its plot; nothing for a head only.
func checkAnalysis(t *testing.T, c ftConfig, res *ftResult, json map[string]any) {
	t.Helper()
	_, inJSON := json["analysis"]
	_, plotErr := os.Stat(filepath.Join(c.Out, updatesPlotFile))
	an := res.Analysis
	if c.Adapter == "none" {
		if an != nil || inJSON || plotErr == nil {
			t.Errorf("head only: analysis %v, plot %v", an, plotErr)
		}
		return
	}
	if an == nil || !inJSON || plotErr != nil || an.Method != c.Adapter || len(an.Sites) != 4 {
		t.Fatalf("%s: analysis %+v (in results.json: %t), plot %v", c.Adapter, an, inJSON, plotErr)
	}
	for _, su := range an.Sites {
		if su.Rank < 1 || su.Target != "query" && su.Target != "value" {
			t.Errorf("%s: %s (%s) has numerical rank %d", c.Adapter, su.Path, su.Target, su.Rank)
		}
		batches := (res.EvalExamples + c.BatchSize - 1) / c.BatchSize
		if c.Adapter == "lily" && (su.Mixing == nil || su.Mixing.Vectors != batches) {
			t.Errorf("lily: %s mixing %+v, want the mean of %d batches' vectors", su.Path, su.Mixing, batches)
		}
	}
}

// Ctrl-C (a cancelled context) stops after the current step and still
// writes the results, the plot and the adapter.
func TestFinetuneInterrupt(t *testing.T) {
	glueDir, model := fixture(t)
	c := tinyFinetune("sst2", glueDir, model, "lily", t.TempDir())
	c.MaxSteps = 50
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out strings.Builder
	res, err := finetune(ctx, c, &out, runHooks{progress: io.Discard, afterStep: func(step int) {
		if step == 4 {
			cancel()
		}
	}})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if !res.Interrupted || res.Steps != 4 || len(res.Evals) != 1 || !strings.Contains(out.String(), "interrupted after step 4") {
		t.Fatalf("interrupted run: %d steps, %d evaluations, interrupted %v", res.Steps, len(res.Evals), res.Interrupted)
	}
	for _, f := range []string{resultsFile, plotFile, filepath.Join(adapterDir, adapterfile.WeightsName)} {
		if _, err := os.Stat(filepath.Join(c.Out, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
}

// writeTSV writes a file under dir, creating folders.
func writeTSV(t *testing.T, dir, rel string, lines []string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Task formats the shared data lacks, written in the standard GLUE layout:
// MRPC (BOM header, accuracy and F1), STS-B (regression, Pearson and
// Spearman) and MNLI (matched and mismatched dev sets).
func TestFinetuneStandardFormats(t *testing.T) {
	_, model := fixture(t)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 7))
	rows := func(n int, f func(i int, a, b string, same bool) string) []string {
		var out []string
		for i := 0; i < n; i++ {
			a, la := synthSentence(rng)
			b, lb := synthSentence(rng)
			out = append(out, f(i, a, b, la == lb))
		}
		return out
	}
	mrpc := func(i int, a, b string, same bool) string {
		return fmt.Sprintf("%d\t%d\t%d\t%s\t%s", map[bool]int{false: 0, true: 1}[same], 1000+i, 2000+i, a, b)
	}
	writeTSV(t, dir, "MRPC/train.tsv", append([]string{"\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"}, rows(40, mrpc)...))
	writeTSV(t, dir, "MRPC/dev.tsv", append([]string{"\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"}, rows(20, mrpc)...))
	sts := func(i int, a, b string, same bool) string {
		score := 1.0 + 3*rng.Float64()
		if same {
			score += 1
		}
		return fmt.Sprintf("%d\tmain-news\tfile\t2012\t%d\tnone\tnone\t%s\t%s\t%.3f", i, i, a, b, score)
	}
	stsHeader := "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
	writeTSV(t, dir, "STS-B/train.tsv", append([]string{stsHeader}, rows(40, sts)...))
	writeTSV(t, dir, "STS-B/dev.tsv", append([]string{stsHeader}, rows(20, sts)...))
	nli := func(i int, a, b string, same bool) string {
		return fmt.Sprintf("%d\t%s\t%s\t%s", i, a, b, []string{"entailment", "neutral", "contradiction"}[i%3])
	}
	writeTSV(t, dir, "MNLI/train.tsv", append([]string{"index\tsentence1\tsentence2\tgold_label"}, rows(40, nli)...))
	writeTSV(t, dir, "MNLI/dev_matched.tsv", append([]string{"index\tsentence1\tsentence2\tgold_label"}, rows(12, nli)...))
	writeTSV(t, dir, "MNLI/dev_mismatched.tsv", append([]string{"index\tsentence1\tsentence2\tgold_label"}, rows(10, nli)...))

	for _, tc := range []struct {
		task    string
		metrics []string
		head    int
	}{
		{"mrpc", []string{"accuracy", "f1", "acc_and_f1"}, 16*16 + 16 + 16*2 + 2},
		{"stsb", []string{"pearson", "spearman", "corr"}, 16*16 + 16 + 16*1 + 1},
		{"mnli", []string{"accuracy"}, 16*16 + 16 + 16*3 + 3},
	} {
		c := tinyFinetune(tc.task, dir, model, "lily", filepath.Join(t.TempDir(), tc.task))
		res, err := finetune(context.Background(), c, io.Discard, runHooks{progress: io.Discard})
		if err != nil {
			t.Fatalf("%s: %+v", tc.task, err)
		}
		for _, m := range tc.metrics {
			if _, ok := res.Best.Metrics[m]; !ok {
				t.Errorf("%s: no %s in %v", tc.task, m, res.Best.Metrics)
			}
		}
		if res.HeadParams != tc.head {
			t.Errorf("%s: head has %d parameters, want %d", tc.task, res.HeadParams, tc.head)
		}
		if tc.task == "mnli" && (res.EvalSplit != "dev_matched" || len(res.Best.Mismatched) == 0 || res.EvalExamples != 12) {
			t.Errorf("mnli: evaluated %s (%d examples), mismatched %v", res.EvalSplit, res.EvalExamples, res.Best.Mismatched)
		}
		if got := reloadAndEvaluate(t, c, res); !reflect.DeepEqual(got, res.Best.Metrics) {
			t.Errorf("%s: reloaded adapter scores %v, training reported %v", tc.task, got, res.Best.Metrics)
		}
	}
}

// A task without train.tsv (QNLI in ../shared/data) trains on a seeded part
// of dev.tsv and says so.
func TestSplitDevWithoutTrain(t *testing.T) {
	dir := t.TempDir()
	lines := []string{"index\tquestion\tsentence\tlabel"}
	for i := 0; i < 50; i++ {
		lines = append(lines, fmt.Sprintf("%d\tq%d?\ts%d.\t%s", i, i, i, []string{"entailment", "not_entailment"}[i%2]))
	}
	writeTSV(t, dir, "QNLI/dev.tsv", lines)
	c := ftConfig{Task: "qnli", GlueDir: dir, Seed: 3}
	task, _ := glue.Lookup("qnli")
	d, err := loadTaskData(c, task)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.train) != 40 || len(d.eval) != 10 || !strings.Contains(d.note, "no train.tsv") || !strings.Contains(d.evalSplit, "held-out") {
		t.Errorf("split %d/%d, note %q, split %q", len(d.train), len(d.eval), d.note, d.evalSplit)
	}
	seen := map[string]bool{}
	for _, e := range append(d.train, d.eval...) {
		if seen[e.ID] {
			t.Errorf("example %s is in both parts", e.ID)
		}
		seen[e.ID] = true
	}
}

// The synthetic demo, shrunk: pretraining, three fine-tuning runs, the
// table with matched parameter budgets and the synthetic-data warning.
func TestDemoSmall(t *testing.T) {
	s := defaultDemo(1)
	s.trainN, s.devN = 120, 32
	s.pretrain = tinyPretrain("", "")
	s.pretrain.MaxSteps = 3
	s.pretrain.Layers = 4
	s.finetune.MaxSteps, s.finetune.EvalEvery, s.finetune.MaxLen, s.finetune.BatchSize = 4, 2, 16, 8
	var out strings.Builder
	rows, err := demo(context.Background(), t.TempDir(), false, s, &out, runHooks{progress: io.Discard})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if len(rows) != 3 || rows[0].method != "lily" || rows[1].method != "lora" || rows[2].method != "none" {
		t.Fatalf("rows %+v", rows)
	}
	if d := abs(rows[0].adapterParams - rows[1].adapterParams); d*5 > rows[0].adapterParams {
		t.Errorf("Lily has %d parameters, LoRA %d", rows[0].adapterParams, rows[1].adapterParams)
	}
	for _, want := range []string{"SYNTHETIC", "-task sst2 -glue_dir", "-model", "pretrain -glue_dir", "best dev accuracy", "lily", "lora", "none"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}

// With -minutes instead of -max_steps, a few forward and backward passes
// are timed and the step budget is fitted to the time, once; the timing
// leaves the weights, the optimiser and the data order alone: the run is
// the fixed-budget run of the fitted number of steps.
func TestPretrainTimeBudget(t *testing.T) {
	glueDir, _ := fixture(t)
	c := tinyPretrain(glueDir, filepath.Join(t.TempDir(), "pt"))
	c.MaxSteps, c.Minutes, c.SaveEvery = 0, 0.02, 4
	var log strings.Builder
	st, err := pretrain(context.Background(), c, map[string]bool{}, &log, runHooks{progress: io.Discard})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if st.TotalSteps < 1 || st.Step != st.TotalSteps || st.Config.MaxSteps != st.TotalSteps || !strings.Contains(log.String(), "steps in all") {
		t.Fatalf("time budget: %d of %d steps\n%s", st.Step, st.TotalSteps, log.String())
	}
	if st.WallSeconds < 0.5*60*c.Minutes {
		t.Errorf("a %.1f s budget stopped after %.2f s\n%s", 60*c.Minutes, st.WallSeconds, log.String())
	}
	ref := tinyPretrain(glueDir, filepath.Join(t.TempDir(), "ref"))
	ref.MaxSteps, ref.SaveEvery = st.TotalSteps, 4
	fixed, err := pretrain(context.Background(), ref, map[string]bool{}, io.Discard, runHooks{progress: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st.Losses, fixed.Losses) {
		t.Errorf("losses %v with the time budget, %v with -max_steps %d", st.Losses, fixed.Losses, st.TotalSteps)
	}
}
