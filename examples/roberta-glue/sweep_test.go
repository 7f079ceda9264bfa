package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lilygo/lily/internal/resumetest"
	"github.com/lilygo/lily/internal/sweep"
)

// A two-configuration, two-seed sweep on the synthetic task writes one row
// per configuration whose mean and std are those of its runs' best metrics,
// each run's own outputs, the table and the chart.
func TestSweepAggregatesRuns(t *testing.T) {
	glueDir, model := fixture(t)
	out := filepath.Join(t.TempDir(), "sweep")
	var stdout bytes.Buffer
	err := runSweep(context.Background(), []string{"-glue_dir", glueDir, "-model", model, "-tasks", "SST-2", "-seeds", "1,2",
		"-max_steps", "3", "-batch_size", "8", "-max_len", "16", "-eval_every", "3", "-out", out,
		"-run", "lora r2: -adapter lora -lora_r 2 -lora_alpha 2", "-run", "head: -adapter none"}, &stdout, io.Discard)
	if err != nil {
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
	if len(res.Runs) != 4 || len(res.Rows) != 2 {
		t.Fatalf("%d runs and %d rows, want 4 and 2", len(res.Runs), len(res.Rows))
	}
	for i, name := range []string{"lora r2", "head"} {
		row := res.Rows[i]
		var per []float64
		for _, r := range res.Runs {
			if r.Name == name {
				per = append(per, r.Best)
				if r.Task != "sst2" || r.Metric != "accuracy" || r.Steps != 3 {
					t.Errorf("run %+v", r)
				}
				if _, err := os.Stat(filepath.Join(r.Dir, "results.json")); err != nil {
					t.Errorf("run %s seed %d: %v", name, r.Seed, err)
				}
			}
		}
		mean, std := sweep.MeanStd(per)
		if row.Name != name || len(row.PerSeed) != 2 || row.Mean != mean || row.Std != std {
			t.Errorf("row %+v, want mean %v std %v of %v", row, mean, std, per)
		}
	}
	if res.Rows[1].AdapterParams != 0 || res.Rows[0].AdapterParams == 0 {
		t.Errorf("adapter parameters: %d (lora), %d (head only)", res.Rows[0].AdapterParams, res.Rows[1].AdapterParams)
	}
	if res.Runs[0].Dir != filepath.Join(out, "sst2", "lora-r2-seed1") {
		t.Errorf("run folder %s", res.Runs[0].Dir)
	}
	md, _ := os.ReadFile(filepath.Join(out, sweepMarkdown))
	if !strings.Contains(string(md), "| sst2 | accuracy | lora r2 |") || !strings.Contains(stdout.String(), "| sst2 | accuracy | head |") {
		t.Errorf("table:\n%s", md)
	}
	if png, _ := os.ReadFile(filepath.Join(out, sweepPlot)); !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Error("no chart")
	}
}

// Misused flags fail before any run starts.
func TestSweepRejectsBadFlags(t *testing.T) {
	out := filepath.Join(t.TempDir(), "sweep")
	base := []string{"-glue_dir", "g", "-model", "m", "-out", out}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-seed", "3"}, "-seeds (a list)"},
		{[]string{"-task", "rte"}, "-tasks (a list)"},
		{[]string{"-tasks", "sst2,nope"}, "nope"},
		{[]string{"-tasks", " , "}, "-tasks is empty"},
		{[]string{"-seeds", "1,1"}, "twice"},
		{[]string{"-run", "a b: -adapter none", "-run", "a-b: -adapter lora"}, "share a folder"},
		{[]string{"-run", "x: -adapter sideways"}, "sideways"},
		{[]string{"stray"}, "unexpected argument"},
		{[]string{"-task_steps", "sst2"}, "not TASK=STEPS"},
		{[]string{"-task_steps", "mrpc=5"}, "mrpc is not in -tasks"},
		{[]string{"-task_steps", "sst2=0"}, "positive integer"},
		{[]string{"-task_steps", "sst2=5,SST-2=6"}, "names sst2 twice"},
	} {
		err := runSweep(context.Background(), append(append([]string{}, base...), tc.args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Error("a rejected sweep created its folder")
	}
}

// -task_steps replaces -max_steps for its task and is recorded.
func TestSweepTaskSteps(t *testing.T) {
	glueDir, model := fixture(t)
	out := filepath.Join(t.TempDir(), "sweep")
	err := runSweep(context.Background(), []string{"-glue_dir", glueDir, "-model", model, "-tasks", "sst2", "-seeds", "1",
		"-max_steps", "3", "-task_steps", "sst2=2", "-batch_size", "8", "-max_len", "16", "-out", out,
		"-run", "head: -adapter none"}, io.Discard, io.Discard)
	if err != nil {
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
	if len(res.Runs) != 1 || res.Runs[0].Steps != 2 || res.TaskSteps["sst2"] != 2 {
		t.Errorf("runs %+v, task steps %v", res.Runs, res.TaskSteps)
	}
}

// A sweep stopped during its second run is continued by running it again:
// the first run is read back, the second resumes from its checkpoint and
// ends exactly as in a sweep that was never stopped.
func TestSweepContinuesUnfinished(t *testing.T) {
	glueDir, model := fixture(t)
	tmp := t.TempDir()
	args := func(out string) []string {
		return []string{"-glue_dir", glueDir, "-model", model, "-tasks", "sst2", "-seeds", "1,2", "-max_steps", "3", "-batch_size", "8",
			"-max_len", "16", "-eval_every", "2", "-save_every", "1", "-out", out, "-run", "lora: -adapter lora -lora_r 2 -lora_alpha 2"}
	}
	whole := filepath.Join(tmp, "whole")
	if err := runSweep(context.Background(), args(whole), io.Discard, io.Discard); err != nil {
		t.Fatalf("%+v", err)
	}
	out := filepath.Join(tmp, "stopped")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	steps := 0
	afterStep = func(int) {
		if steps++; steps == 5 { // step 2 of the second run
			cancel()
		}
	}
	defer func() { afterStep = nil }()
	if err := runSweep(ctx, args(out), io.Discard, io.Discard); err != nil {
		t.Fatalf("%+v", err)
	}
	afterStep = nil
	var log bytes.Buffer
	if err := runSweep(context.Background(), args(out), &log, io.Discard); err != nil {
		t.Fatalf("continuing: %+v", err)
	}
	if !strings.Contains(log.String(), "finished before") {
		t.Errorf("the first run was not read back:\n%s", log.String())
	}
	read := func(dir string) sweepResult {
		b, err := os.ReadFile(filepath.Join(dir, sweepJSON))
		if err != nil {
			t.Fatal(err)
		}
		var res sweepResult
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	a, b := read(whole), read(out)
	if b.Interrupted || len(b.Runs) != 2 || !reflect.DeepEqual(a.Rows[0].PerSeed, b.Rows[0].PerSeed) {
		t.Fatalf("continued sweep: %+v, uninterrupted %+v", b.Rows, a.Rows)
	}
	second := filepath.Join("sst2", "lora-seed2")
	if res := readFTResult(t, filepath.Join(out, second)); res.ResumedFrom != 2 {
		t.Errorf("the second run resumed from step %d, want 2", res.ResumedFrom)
	}
	resumetest.SameOutputs(t, filepath.Join(whole, second), filepath.Join(out, second), resumetest.Timings...)
	if err := runSweep(context.Background(), append(args(out), "-resume"), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "finished") {
		t.Errorf("-resume of a finished sweep: %v", err)
	}
}
