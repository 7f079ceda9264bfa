package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	if args := os.Getenv(resumeArgsEnv); args != "" {
		afterStep = resumetest.KillHook()
		os.Args = append([]string{"mamba"}, strings.Split(args, "\x1f")...)
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
		cmd := exec.Command(os.Args[0], "-test.run=^TestKilledRunResumesExactly$")
		cmd.Env = append(os.Environ(), resumeArgsEnv+"="+strings.Join(args(out), "\x1f"), fmt.Sprintf("%s=%d", resumetest.KillEnv, killAt))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ws, ok := cmd.ProcessState.Sys().(interface{ Signaled() bool }); !ok || !ws.Signaled() {
			t.Fatalf("kill after step %d: the run was not killed (%v); stderr:\n%s", killAt, err, stderr.String())
		}
		if err := run(context.Background(), args(out, "-resume"), &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
			t.Fatalf("resuming after a kill at step %d: %v", killAt, err)
		}
		resumetest.SameOutputs(t, whole, out, resumetest.Timings...)
	}
}
