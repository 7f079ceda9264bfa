package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/lilygo/lily/internal/resumetest"
)

// resumeArgsEnv carries the arguments of the run that
// TestKilledRunResumesExactly starts in a child process.
const resumeArgsEnv = "MAMBA_TEST_RESUME_ARGS"

// A run killed with SIGKILL — during pretraining, at its end before the
// model is saved, and inside the second adaptation run — and resumed writes
// exactly what the uninterrupted run writes: the pretrained model, every
// adapter, results.json but its timings, the plots.
func TestKilledRunResumesExactly(t *testing.T) {
	if args, ok := resumetest.ChildArgs(resumeArgsEnv); ok {
		afterStep = resumetest.KillHook()
		os.Args = append([]string{"mamba"}, args...)
		main()
		return
	}
	tmp := t.TempDir()
	args := func(out string, extra ...string) []string {
		return tinyArgs(out, append([]string{"-seeds", "1", "-methods", "lily_in,lora_in", "-save_every", "1", "-grad_accum", "2"}, extra...)...)
	}
	whole := filepath.Join(tmp, "whole")
	if err := run(context.Background(), args(whole), &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	for _, killAt := range []int{3, 4, 9} {
		out := filepath.Join(tmp, fmt.Sprintf("killed-%d", killAt))
		resumetest.RunKilled(t, "TestKilledRunResumesExactly", resumeArgsEnv, args(out), killAt)
		if err := run(context.Background(), args(out, "-resume"), &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
			t.Fatalf("resuming after a kill at step %d: %v", killAt, err)
		}
		resumetest.SameOutputs(t, whole, out, resumetest.Timings...)
	}
}
