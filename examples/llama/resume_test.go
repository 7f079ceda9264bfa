package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lilygo/lily/internal/resumetest"
)

// A fine-tuning run killed with SIGKILL after a checkpoint and resumed
// writes exactly what the uninterrupted run writes: the same losses,
// evaluations, adapter and plots (only the timings differ). Gradient
// accumulation is on, so the checkpoint must also be between whole
// optimiser steps.
func TestKilledRunResumesExactly(t *testing.T) {
	if args, ok := resumetest.ChildArgs(mainArgsEnv); ok {
		afterStep = resumetest.KillHook()
		os.Args = append([]string{"llama"}, args...)
		main()
		return
	}
	data := sharedData(t)
	tmp := t.TempDir()
	runArgs := func(out string, extra ...string) []string {
		args := append([]string{"finetune", "-adapter", "lily", "-out", out}, tinyArgs(data)...)
		return append(append(args, "-max_steps", "7", "-eval_every", "3", "-save_every", "2", "-grad_accum", "2", "-batch_size", "4"), extra...)
	}
	whole := filepath.Join(tmp, "whole")
	if err := run(context.Background(), runArgs(whole), &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	for _, killAt := range []int{3, 4} {
		out := filepath.Join(tmp, fmt.Sprintf("killed-%d", killAt))
		resumetest.RunKilled(t, "TestKilledRunResumesExactly", mainArgsEnv, runArgs(out), killAt)
		if err := run(context.Background(), runArgs(out, "-resume"), &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
			t.Fatalf("resuming after a kill at step %d: %v", killAt, err)
		}
		res := readResult(t, out)
		if res.ResumedFrom != killAt/2*2 {
			t.Errorf("kill after step %d: resumed from step %d", killAt, res.ResumedFrom)
		}
		resumetest.SameOutputs(t, whole, out, resumetest.Timings...)
	}
}

// A sweep killed inside its second run and resumed keeps the finished run,
// continues the other from its checkpoint and ends as the uninterrupted
// sweep (sweep.md, whose columns include timings, aside).
func TestKilledSweepResumes(t *testing.T) {
	if args, ok := resumetest.ChildArgs(mainArgsEnv); ok {
		afterStep = resumetest.KillHook()
		os.Args = append([]string{"llama"}, args...)
		main()
		return
	}
	data := sharedData(t)
	tmp := t.TempDir()
	sweepArgs := func(out string, extra ...string) []string {
		args := append([]string{"sweep", "-seeds", "1", "-out", out, "-run", "lora: -adapter lora", "-run", "lily: -adapter lily"}, tinyArgs(data)...)
		return append(append(args, "-save_every", "1"), extra...)
	}
	whole := filepath.Join(tmp, "whole")
	if err := run(context.Background(), sweepArgs(whole), &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "killed")
	resumetest.RunKilled(t, "TestKilledSweepResumes", mainArgsEnv, sweepArgs(out), 6)
	var log bytes.Buffer
	if err := run(context.Background(), sweepArgs(out, "-resume"), &log, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "finished before the resume") {
		t.Errorf("the finished run was not kept:\n%s", log.String())
	}
	for _, dir := range []string{whole, out} {
		if err := os.Remove(filepath.Join(dir, sweepMarkdown)); err != nil {
			t.Fatal(err)
		}
	}
	resumetest.SameOutputs(t, whole, out, resumetest.Timings...)
}
