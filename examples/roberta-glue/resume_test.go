package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lilygo/lily/internal/resumetest"
)

// mainArgsEnv carries the arguments of the command that a test runs in a
// child process (the test binary itself: resumetest.RunKilled).
const mainArgsEnv = "ROBERTA_GLUE_TEST_MAIN_ARGS"

// runChild is the child process's side of killedThenResumed: it runs the
// command with the arguments resumetest.RunKilled passed, killing itself
// after the step that resumetest.KillEnv names. It reports whether this is
// the child.
func runChild() bool {
	args, ok := resumetest.ChildArgs(mainArgsEnv)
	if !ok {
		return false
	}
	afterStep = resumetest.KillHook()
	os.Args = append([]string{"roberta-glue"}, args...)
	main()
	return true
}

// killedThenResumed runs args (the command's arguments) in a child process
// of the test named test, killed with SIGKILL after step killAt, and then
// continues it in this process with resume (the arguments that resume it).
func killedThenResumed(t *testing.T, test string, args, resume []string, killAt int) {
	t.Helper()
	resumetest.RunKilled(t, test, mainArgsEnv, args, killAt)
	if err := run(context.Background(), resume, io.Discard, io.Discard); err != nil {
		t.Fatalf("resuming after a kill at step %d: %+v", killAt, err)
	}
}

// tinyFinetuneArgs are the command-line arguments of a fine-tuning run of
// the tiny model with dropout (the model's 0.1) and gradient accumulation.
func tinyFinetuneArgs(glueDir, model, out string) []string {
	return []string{"-task", "sst2", "-glue_dir", glueDir, "-model", model, "-adapter", "lily", "-lily_r", "4", "-lily_num_B", "2",
		"-lily_scaling", "0.1", "-max_len", "16", "-head_lr", "5e-3", "-adapter_lr", "5e-3", "-seed", "1", "-out", out}
}

// readFTResult reads a fine-tuning run's results.json.
func readFTResult(t *testing.T, dir string) ftResult {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, resultsFile))
	if err != nil {
		t.Fatal(err)
	}
	var res ftResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// A fine-tuning run killed with SIGKILL after a checkpoint and resumed
// writes exactly what the uninterrupted run writes: the same losses,
// evaluations, adapter and plots (only the timings differ). Dropout is on
// and gradient accumulation too, so the checkpoint must hold whole
// optimiser steps and every micro-batch must draw its own dropout masks.
func TestFinetuneKilledRunResumesExactly(t *testing.T) {
	if runChild() {
		return
	}
	glueDir, model := fixture(t)
	tmp := t.TempDir()
	args := func(out string) []string {
		return append(tinyFinetuneArgs(glueDir, model, out), "-max_steps", "7", "-eval_every", "3", "-save_every", "2", "-grad_accum", "2", "-batch_size", "4")
	}
	whole := filepath.Join(tmp, "whole")
	if err := run(context.Background(), args(whole), io.Discard, io.Discard); err != nil {
		t.Fatalf("%+v", err)
	}
	if res := readFTResult(t, whole); res.Steps != 7 || len(res.Evals) != 3 || res.Config.GradAccum != 2 {
		t.Fatalf("the uninterrupted run: %d steps, %d evaluations, -grad_accum %d", res.Steps, len(res.Evals), res.Config.GradAccum)
	}
	for _, killAt := range []int{3, 4} {
		out := filepath.Join(tmp, fmt.Sprintf("killed-%d", killAt))
		killedThenResumed(t, "TestFinetuneKilledRunResumesExactly", args(out), append(args(out), "-resume"), killAt)
		if res := readFTResult(t, out); res.ResumedFrom != killAt/2*2 {
			t.Errorf("kill after step %d: resumed from step %d", killAt, res.ResumedFrom)
		}
		resumetest.SameOutputs(t, whole, out, resumetest.Timings...)
	}
}

// Bad -grad_accum and -save_every are refused when the flags are parsed,
// -resume of a run that is not there or that finished says so before any
// work, and a run that fails before training claims no folder.
func TestFinetuneResumeAndTrainFlagsRefused(t *testing.T) {
	glueDir, model := fixture(t)
	tmp := t.TempDir()
	for _, bad := range [][]string{{"-grad_accum", "0"}, {"-save_every", "-1"}} {
		_, _, err := parseFinetune(append(tinyFinetuneArgs(glueDir, model, filepath.Join(tmp, "bad")), bad...), io.Discard)
		if err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%v: %v", bad, err)
		}
	}
	missing := filepath.Join(tmp, "missing")
	err := run(context.Background(), append(tinyFinetuneArgs(glueDir, model, missing), "-max_steps", "2", "-resume"), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "holds no run to continue") {
		t.Errorf("-resume of a missing run: %v", err)
	}
	done := filepath.Join(tmp, "done")
	args := append(tinyFinetuneArgs(glueDir, model, done), "-max_steps", "2")
	if err := run(context.Background(), args, io.Discard, io.Discard); err != nil {
		t.Fatalf("%+v", err)
	}
	err = run(context.Background(), append(args, "-resume"), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "holds a finished roberta-glue finetune run; there is nothing to continue") {
		t.Errorf("-resume of a finished run: %v", err)
	}
	// A run that fails to start (no model there) leaves no unfinished run
	// that only -overwrite would replace; nor does a pretraining without
	// its text.
	failed := filepath.Join(tmp, "failed")
	if err := run(context.Background(), append(tinyFinetuneArgs(glueDir, filepath.Join(tmp, "no-model"), failed), "-max_steps", "2"), io.Discard, io.Discard); err == nil {
		t.Fatal("fine-tuning a missing model succeeded")
	}
	if err := run(context.Background(), append(tinyPretrainArgs(filepath.Join(tmp, "no-glue"), failed), "-max_steps", "2"), io.Discard, io.Discard); err == nil {
		t.Fatal("pretraining on missing text succeeded")
	}
	if _, err := os.Stat(failed); !os.IsNotExist(err) {
		t.Errorf("runs that failed to start left %s: %v", failed, err)
	}
}

// tinyPretrainArgs are the command-line arguments of a pretraining run of
// a tiny model (with dropout) on the test task's text.
func tinyPretrainArgs(glueDir, out string) []string {
	return []string{"pretrain", "-glue_dir", glueDir, "-out", out, "-merges", "60", "-max_len", "16", "-hidden", "16", "-layers", "2",
		"-heads", "2", "-intermediate", "32", "-dropout", "0.1", "-lr", "1e-3", "-warmup_ratio", "0.1", "-seed", "1"}
}

// A pretraining run killed with SIGKILL after a checkpoint and resumed
// (-resume with only -out and -glue_dir: the settings come from -out)
// writes exactly what the uninterrupted run writes: the model, the
// tokenizer, the log and the plot. Gradient accumulation is on.
func TestPretrainKilledRunResumesExactly(t *testing.T) {
	if runChild() {
		return
	}
	glueDir, _ := fixture(t)
	tmp := t.TempDir()
	args := func(out string) []string {
		return append(tinyPretrainArgs(glueDir, out), "-max_steps", "7", "-save_every", "2", "-grad_accum", "2", "-batch_size", "4")
	}
	whole := filepath.Join(tmp, "whole")
	if err := run(context.Background(), args(whole), io.Discard, io.Discard); err != nil {
		t.Fatalf("%+v", err)
	}
	for _, killAt := range []int{3, 4} {
		out := filepath.Join(tmp, fmt.Sprintf("killed-%d", killAt))
		killedThenResumed(t, "TestPretrainKilledRunResumesExactly", args(out), []string{"pretrain", "-out", out, "-glue_dir", glueDir, "-resume"}, killAt)
		var st ptState
		b, err := os.ReadFile(filepath.Join(out, pretrainLogFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		if st.ResumedFrom != killAt/2*2 || st.Step != 7 {
			t.Errorf("kill after step %d: resumed from step %d to %d", killAt, st.ResumedFrom, st.Step)
		}
		resumetest.SameOutputs(t, whole, out, resumetest.Timings...)
	}
	// Bad training flags are refused before any work, and so is -resume of
	// a finished run.
	for _, bad := range [][]string{{"-grad_accum", "0"}, {"-save_every", "-1"}} {
		_, _, err := parsePretrain(append(tinyPretrainArgs(glueDir, filepath.Join(tmp, "bad"))[1:], bad...), io.Discard)
		if err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%v: %v", bad, err)
		}
	}
	err := run(context.Background(), []string{"pretrain", "-out", whole, "-resume"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "holds a finished roberta-glue pretrain run; there is nothing to continue") {
		t.Errorf("-resume of a finished run: %v", err)
	}
}
