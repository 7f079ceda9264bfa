package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lilygo/lily/adapterfile"
	"github.com/lilygo/lily/glue"
	"github.com/lilygo/lily/graphs/roberta"
	"github.com/lilygo/lily/internal/outdir"
	"github.com/lilygo/lily/layers"
)

// useCfg is the configuration of eval, predict or export of an adapter.
func useCfg(mode, model, adapter, glueDir, out string) useConfig {
	return useConfig{Mode: mode, Model: model, Adapter: adapter, GlueDir: glueDir, Out: out, CalibrateExamples: 2000}
}

// finetuned trains the tiny model on the synthetic SST-2 for a few steps
// and returns the run's result.
func finetuned(t *testing.T, adapter string, peft bool) *ftResult {
	t.Helper()
	glueDir, model := fixture(t)
	c := tinyFinetune("sst2", glueDir, model, adapter, filepath.Join(t.TempDir(), adapter))
	c.PEFTLayout = peft
	res, err := finetune(context.Background(), c, io.Discard, runHooks{progress: io.Discard})
	if err != nil {
		t.Fatalf("%s: %+v", adapter, err)
	}
	return res
}

func TestEvalReproducesBestMetric(t *testing.T) {
	glueDir, model := fixture(t)
	for _, v := range []struct {
		adapter string
		peft    bool
	}{{"lily", false}, {"lily", true}, {"lora", false}, {"lora", true}, {"none", false}} {
		res := finetuned(t, v.adapter, v.peft)
		ac, err := adapterfile.ReadConfig(res.AdapterDir)
		if err != nil {
			t.Fatal(err)
		}
		if (ac.Ext == nil) != v.peft {
			t.Errorf("%s peft_layout %v: config has the lily_go section: %v", v.adapter, v.peft, ac.Ext != nil)
		}
		out := filepath.Join(t.TempDir(), "eval.json")
		var w strings.Builder
		got, err := runEval(useCfg("eval", model, res.AdapterDir, glueDir, out), &w)
		if err != nil {
			t.Fatalf("%s: %+v", v.adapter, err)
		}
		if !reflect.DeepEqual(got.Metrics, res.Best.Metrics) {
			t.Errorf("%s (peft %v): eval gives %v, the run's best was %v", v.adapter, v.peft, got.Metrics, res.Best.Metrics)
		}
		if got.Config.Task != "sst2" || got.Config.BatchSize != 8 || got.Config.MaxLen != 16 || !strings.Contains(w.String(), "sst2 dev (48 examples") {
			t.Errorf("%s: settings %+v, output %q", v.adapter, got.Config, w.String())
		}
		var back evalResult
		if b, err := os.ReadFile(out); err != nil || json.Unmarshal(b, &back) != nil || !reflect.DeepEqual(back.Metrics, got.Metrics) {
			t.Errorf("%s: -out holds %+v (%v)", v.adapter, back, err)
		}
	}
}

// testHeaders are the header rows of every task's test split, as in GLUE.
var testHeaders = map[string]string{
	"cola": "index\tsentence", "sst2": "index\tsentence", "mrpc": "index\t#1 ID\t#2 ID\t#1 String\t#2 String",
	"stsb": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2", "qqp": "id\tqid1\tqid2\tquestion1\tquestion2",
	"mnli": "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2", "qnli": "index\tquestion\tsentence",
	"rte": "index\tsentence1\tsentence2", "wnli": "index\tsentence1\tsentence2",
}

// writeTestSplits writes n test rows of every task (and the diagnostic set)
// into glueDir, with IDs 100, 101, …, and returns the IDs.
func writeTestSplits(t *testing.T, glueDir string, n int) []string {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 5))
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, fmt.Sprint(100+i))
	}
	for _, task := range glue.Tasks() {
		splits := []string{"test"}
		if task.Name == "mnli" {
			splits = []string{"test_matched", "test_mismatched"}
		}
		for _, split := range splits {
			lines := []string{testHeaders[task.Name]}
			cols := strings.Split(testHeaders[task.Name], "\t")
			for _, id := range ids {
				f := make([]string, len(cols))
				for j := range f {
					f[j] = "x"
				}
				f[0] = id
				for j := max(1, len(cols)-2); j < len(cols); j++ { // the texts are the last columns
					s, _ := synthSentence(rng)
					f[j] = s
				}
				lines = append(lines, strings.Join(f, "\t"))
			}
			name, _ := task.FileName(split)
			writeTSV(t, glueDir, task.Dir+"/"+name, lines)
		}
	}
	lines := []string{"index\tsentence1\tsentence2"}
	for _, id := range ids {
		a, _ := synthSentence(rng)
		b, _ := synthSentence(rng)
		lines = append(lines, id+"\t"+a+"\t"+b)
	}
	writeTSV(t, glueDir, glue.DiagnosticDir+"/"+glue.DiagnosticFileName, lines)
	return ids
}

// untrainedAdapter saves a LoRA adapter with a fresh head for task on the
// model, with its task record, and returns its folder.
func untrainedAdapter(t *testing.T, model string, task glue.Task) string {
	t.Helper()
	ck, _, err := loadEncoder(model, false)
	if err != nil {
		t.Fatal(err)
	}
	ck.Store.Freeze()
	lora, err := layers.NewLoRA(layers.LoRAConfig{R: 2, Alpha: 2, TargetModules: []string{"query", "value"}, NonZeroB: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := layers.Attach(ck.Store, lora, ck.Config.Sites(), rand.New(rand.NewPCG(1, 1))); err != nil {
		t.Fatal(err)
	}
	if err := roberta.AddClassifier(ck.Store, ck.Config, task.NumLabels, 7); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), task.Name)
	if err := adapterfile.Save(dir, ck.Store, lora, ck.Config.Sites(), adapterfile.Options{TaskType: "SEQ_CLS"}); err != nil {
		t.Fatal(err)
	}
	rec := taskRecord{Task: task.Name, Labels: task.Labels, NumLabels: task.NumLabels, MaxLen: 16, BatchSize: 4}
	if err := rec.write(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPredictSubmissionsEveryTask(t *testing.T) {
	_, model := fixture(t)
	glueDir := t.TempDir()
	ids := writeTestSplits(t, glueDir, 6)
	all := filepath.Join(t.TempDir(), "all")
	var allFiles []string
	for _, task := range glue.Tasks() {
		out := filepath.Join(t.TempDir(), "submit")
		var w strings.Builder
		if err := runPredict(useCfg("predict", model, untrainedAdapter(t, model, task), glueDir, out), nil, &w); err != nil {
			t.Fatalf("%s: %+v", task.Name, err)
		}
		want := map[string]bool{}
		if task.Name == "mnli" {
			want["MNLI-m.tsv"], want["MNLI-mm.tsv"], want["AX.tsv"] = true, true, true
		} else {
			name, _ := task.SubmissionFile("test")
			want[name] = true
		}
		entries, err := os.ReadDir(out)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != len(want)+1 { // and the run record
			t.Errorf("%s: wrote %v, want %v and %s", task.Name, entries, want, outdir.RecordFile)
		}
		for name := range want {
			f, err := os.Open(filepath.Join(out, name))
			if err != nil {
				t.Fatalf("%s: %v", task.Name, err)
			}
			gotIDs, preds, err := glue.ReadSubmission(f, task, name)
			f.Close()
			if err != nil {
				t.Fatalf("%s: %v", task.Name, err)
			}
			if !reflect.DeepEqual(gotIDs, ids) || len(preds) != len(ids) {
				t.Errorf("%s %s: IDs %v, want %v", task.Name, name, gotIDs, ids)
			}
			allFiles = append(allFiles, name)
		}
		// One folder collects every task's files, task after task.
		if err := runPredict(useCfg("predict", model, untrainedAdapter(t, model, task), glueDir, all), nil, io.Discard); err != nil {
			t.Fatalf("%s into the shared folder: %+v", task.Name, err)
		}
	}
	for _, name := range append(allFiles, outdir.RecordFile) {
		if _, err := os.Stat(filepath.Join(all, name)); err != nil {
			t.Errorf("the shared submission folder: %v", err)
		}
	}
	if entries, _ := os.ReadDir(all); len(entries) != 11+1 {
		t.Errorf("the shared submission folder holds %d entries, want the 11 files and the record", len(entries))
	}
	// It is not an export folder: export refuses it without -overwrite.
	if _, err := runExport(useCfg("export", model, untrainedAdapter(t, model, glue.Tasks()[1]), "", all), io.Discard); err == nil || !strings.Contains(err.Error(), "-overwrite") {
		t.Errorf("export into a submission folder: %v", err)
	}
}

func TestPredictInput(t *testing.T) {
	glueDir, model := fixture(t)
	res := finetuned(t, "lily", false)
	ev, err := runEval(useCfg("eval", model, res.AdapterDir, glueDir, ""), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// The dev file itself as -input (TSV with labels): the predicted labels
	// score exactly the evaluation's accuracy.
	devPath := filepath.Join(glueDir, "SST-2", "dev.tsv")
	out := filepath.Join(t.TempDir(), "dev.jsonl")
	c := useCfg("predict", model, res.AdapterDir, "", out)
	c.Input = devPath
	if err := runPredict(c, nil, io.Discard); err != nil {
		t.Fatalf("%+v", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := glue.Load(glueDir, "sst2", "dev")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != len(dev) {
		t.Fatalf("%d lines for %d examples", len(lines), len(dev))
	}
	right := 0
	for i, line := range lines {
		var p glue.Prediction
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatal(err)
		}
		sum := p.Probabilities["0"] + p.Probabilities["1"]
		if math.Abs(sum-1) > 1e-12 || len(p.Probabilities) != 2 || p.Text != dev[i].TextA {
			t.Fatalf("line %d: %+v", i+1, p)
		}
		if (p.Probabilities["1"] > p.Probabilities["0"]) != (p.Label == "1") {
			t.Errorf("line %d: label %q is not the more probable one %v", i+1, p.Label, p.Probabilities)
		}
		if p.Label == dev[i].TextB || p.Label == fmt.Sprint(dev[i].Label) {
			right++
		}
	}
	if acc := float64(right) / float64(len(dev)); acc != ev.Metrics["accuracy"] {
		t.Errorf("-input predictions score %v, eval %v", acc, ev.Metrics["accuracy"])
	}
	// JSONL and standard input give the same labels for the same texts
	// (fewer than a batch, so one batch each way).
	var jsonl, plain strings.Builder
	for _, e := range dev[:5] {
		j, _ := json.Marshal(map[string]string{"sentence": e.TextA})
		jsonl.WriteString(string(j) + "\n")
		plain.WriteString(e.TextA + "\n")
	}
	jpath := filepath.Join(t.TempDir(), "mine.jsonl")
	if err := os.WriteFile(jpath, []byte(jsonl.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	var fromJSONL, fromStdin bytes.Buffer
	c = useCfg("predict", model, res.AdapterDir, "", "")
	c.Input = jpath
	if err := runPredict(c, nil, &fromJSONL); err != nil {
		t.Fatal(err)
	}
	c.Input = stdio
	if err := runPredict(c, strings.NewReader(plain.String()), &fromStdin); err != nil {
		t.Fatal(err)
	}
	if fromJSONL.String() != fromStdin.String() || strings.Count(fromStdin.String(), "\n") != 5 {
		t.Errorf("JSONL input gave\n%s\nstandard input\n%s", fromJSONL.String(), fromStdin.String())
	}
}

func TestExportThenNoAdapter(t *testing.T) {
	glueDir, model := fixture(t)
	for _, adapter := range []string{"lora", "lily", "none"} {
		res := finetuned(t, adapter, false)
		out := filepath.Join(t.TempDir(), "merged")
		c := useCfg("export", model, res.AdapterDir, glueDir, out)
		if adapter == "lily" {
			_, err := runExport(c, io.Discard)
			if err == nil || !strings.Contains(err.Error(), "-calibrate") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("routed Lily exported without calibration: %v", err)
			}
			c.Calibrate = true
		}
		ex, err := runExport(c, io.Discard)
		if err != nil {
			t.Fatalf("%s: %+v", adapter, err)
		}
		if rec, ok, err := outdir.ReadRecord(out); err != nil || !ok || rec.Kind != kindExport || !rec.Finished {
			t.Errorf("%s: run record %+v, %t, %v", adapter, rec, ok, err)
		}
		// A finished export is replaced only with -overwrite.
		if _, err := runExport(c, io.Discard); err == nil || !strings.Contains(err.Error(), "-overwrite") {
			t.Errorf("%s: a second export into %s: %v", adapter, out, err)
		}
		c.Overwrite = true
		if ex, err = runExport(c, io.Discard); err != nil {
			t.Fatalf("%s: -overwrite: %+v", adapter, err)
		}
		if ex.DevChecked != 48 {
			t.Errorf("%s: %d dev examples compared", adapter, ex.DevChecked)
		}
		switch adapter {
		case "lora", "none":
			if ex.MaxDelta > 1e-5 {
				t.Errorf("%s: merging moved a logit by %g", adapter, ex.MaxDelta)
			}
		case "lily":
			if ex.Calibrated != 200 || ex.MaxDeltaFrozen > 1e-5 || ex.MaxDelta == 0 {
				t.Errorf("lily: %d calibration examples, |Δ| %g against the frozen mixing, %g against the routed adapter", ex.Calibrated, ex.MaxDeltaFrozen, ex.MaxDelta)
			}
		}
		for _, f := range []string{roberta.ConfigFile, roberta.WeightsFile, "vocab.json", "merges.txt", taskFile} {
			if _, err := os.Stat(filepath.Join(out, f)); err != nil {
				t.Errorf("%s: %v", adapter, err)
			}
		}
		cfg, err := roberta.ReadConfig(filepath.Join(out, roberta.ConfigFile))
		if err != nil || string(cfg.Extra["finetuning_task"]) != `"sst2"` || string(cfg.Extra["id2label"]) != `{"0":"0","1":"1"}` {
			t.Errorf("%s: exported config %v, %v", adapter, cfg.Extra, err)
		}
		// The merged model alone predicts what the export measured.
		got, err := runEval(useCfg("eval", out, noAdapter, glueDir, ""), io.Discard)
		if err != nil {
			t.Fatalf("%s: %+v", adapter, err)
		}
		if !reflect.DeepEqual(got.Metrics, ex.Merged) {
			t.Errorf("%s: the exported model scores %v, the merge %v", adapter, got.Metrics, ex.Merged)
		}
		if adapter != "lily" && !reflect.DeepEqual(got.Metrics, res.Best.Metrics) {
			t.Errorf("%s: the exported model scores %v, the adapter %v", adapter, got.Metrics, res.Best.Metrics)
		}
	}
}

func TestUseRejectsBadInput(t *testing.T) {
	glueDir, model := fixture(t)
	res := finetuned(t, "lora", false)
	// Models of the same shapes (other weights) and of another width.
	ck, tok, err := loadEncoder(model, false)
	if err != nil {
		t.Fatal(err)
	}
	other := func(name string, cfg roberta.Config) string {
		store, _ := layers.NewStore(ck.Store.Dtype())
		if err := roberta.InitStore(store, cfg, 99); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), name)
		if err := roberta.Save(dir, store, cfg); err != nil {
			t.Fatal(err)
		}
		if err := tok.Save(dir); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	wide := ck.Config
	wide.HiddenSize, wide.IntermediateSize = 24, 48
	same, wider := other("same", ck.Config), other("wide", wide)
	// The adapter as PEFT would hand it over: no glue_task.json.
	peftDir := t.TempDir()
	for _, f := range []string{adapterfile.ConfigName, adapterfile.WeightsName} {
		b, err := os.ReadFile(filepath.Join(res.AdapterDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(peftDir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	badGlue := t.TempDir()
	writeTSV(t, badGlue, "SST-2/test.tsv", []string{"index\tquestion", "0\twhat ?"})
	withTask := func(c useConfig, task string) useConfig { c.Task = task; return c }
	for _, c := range []struct {
		name string
		run  func() error
		msg  string
	}{
		{"other task", func() error {
			_, err := runEval(withTask(useCfg("eval", model, res.AdapterDir, glueDir, ""), "rte"), io.Discard)
			return err
		}, "fine-tuned on sst2, not rte"},
		{"other model", func() error {
			_, err := runEval(useCfg("eval", same, res.AdapterDir, glueDir, ""), io.Discard)
			return err
		}, "fine-tuned on another model"},
		{"other width", func() error {
			_, err := runEval(withTask(useCfg("eval", wider, peftDir, glueDir, ""), "sst2"), io.Discard)
			return err
		}, "does not fit"},
		{"no head", func() error {
			_, err := runEval(withTask(useCfg("eval", model, noAdapter, glueDir, ""), "sst2"), io.Discard)
			return err
		}, "has no classification head"},
		{"wrong test columns", func() error {
			return runPredict(useCfg("predict", model, res.AdapterDir, badGlue, t.TempDir()), nil, io.Discard)
		}, "not a sst2 header"},
		{"too large", func() error {
			c := useCfg("eval", model, res.AdapterDir, glueDir, "")
			c.BatchSize = 100_000_000
			_, err := runEval(c, io.Discard)
			return err
		}, "use smaller settings"},
		{"eval -out a folder", func() error {
			_, err := runEval(useCfg("eval", model, res.AdapterDir, glueDir, t.TempDir()), io.Discard)
			return err
		}, "is a folder"},
		{"no task record", func() error {
			_, err := runEval(useCfg("eval", model, t.TempDir(), glueDir, ""), io.Discard)
			return err
		}, "give -task"},
	} {
		err := c.run()
		if err == nil || !strings.Contains(err.Error(), c.msg) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line with %q", c.name, err, c.msg)
		}
	}
	for _, args := range [][]string{
		{"eval", "-adapter", "x", "-glue_dir", "g"},
		{"eval", "-model", "m", "-glue_dir", "g"},
		{"eval", "-model", "m", "-adapter", "x"},
		{"predict", "-model", "m", "-adapter", "x"},
		{"export", "-model", "m", "-adapter", "x"},
		{"export", "-model", "m", "-adapter", "x", "-out", "o", "-calibrate"},
		{"eval", "-model", "m", "-adapter", "x", "-glue_dir", "g", "-max_len", "4"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want one line", args, err)
		}
	}
}
