package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lilygo/lily/adapterfile"
	"github.com/lilygo/lily/graphs/llama"
	"github.com/lilygo/lily/internal/memcheck"
	"github.com/lilygo/lily/internal/outdir"
	"github.com/lilygo/lily/lilyop"
)

// An unusable -out is refused before anything is loaded or trained; a
// finished run is replaced only with -overwrite.
func TestOutChecked(t *testing.T) {
	data := sharedData(t)
	root := t.TempDir()
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"finetune", "sweep"} {
		for out, want := range map[string]string{file: "is a file", filepath.Join(file, "x"): "is a file, not a folder"} {
			// A missing checkpoint would fail later: the -out check comes first.
			err := run(context.Background(), []string{cmd, "-out", out, "-checkpoint", filepath.Join(root, "missing.bin")}, &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s -out %s: %v, want %q", cmd, out, err, want)
			}
		}
	}
	out := filepath.Join(root, "run")
	args := append([]string{"finetune", "-adapter", "lora", "-out", out}, tinyArgs(data)...)
	if err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatalf("%+v", err)
	}
	err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "finished llama finetune run") {
		t.Fatalf("a second run into a finished one: %v", err)
	}
	err = run(context.Background(), append([]string{"sweep", "-out", out}, tinyArgs(data)...), &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "llama finetune run, not of llama sweep") {
		t.Fatalf("a sweep into a fine-tuning run: %v", err)
	}
	if err := run(context.Background(), append(args, "-overwrite"), &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatalf("-overwrite: %+v", err)
	}
	checkRun(t, out)
}

// Adapter sizes no machine has are refused with the memory they need.
func TestAbsurdAdapterRefused(t *testing.T) {
	data := sharedData(t)
	for _, extra := range [][]string{
		{"-adapter", "lily", "-lily_r", "1073741824"},
		{"-adapter", "lily", "-lily_num_B", "1099511627776"},
		{"-adapter", "lora", "-lora_r", "1099511627776"},
		{"-adapter", "lily", "-lily_r", "1099511627776", "-lily_num_B", "1099511627776"},
		{"-adapter", "full", "-batch_size", "1099511627776"},
	} {
		args := append(append([]string{"finetune", "-out", filepath.Join(t.TempDir(), "run")}, tinyArgs(data)...), extra...)
		err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "this machine has") && !strings.Contains(err.Error(), "more than") {
			t.Errorf("%v: %v", extra, err)
		}
	}
}

// The training-graph estimate for stories260K at length 128 stays below the
// 80 KB per token position maxTrainGraphs' comment reports, and for
// LLaMA3-8B with bfloat16 weights it accepts the Lily step of 1×128 tokens
// that ran on the 22.8 GiB development machine and refuses the 2×128 one
// that the kernel's OOM killer stopped there (docs/scale.md).
func TestLMActivations(t *testing.T) {
	c := llama.Config{Dim: 64, HiddenDim: 172, NLayers: 5, NHeads: 8, NKVHeads: 4, VocabSize: 512, MaxSeqLen: 512}
	perToken := 5*2*(12*64+7*32+4*172) + 3*512
	if got := trainActivations(c, 1, 128) / 128; got != float64(perToken) {
		t.Fatalf("%v values per token, want %d", got, perToken)
	}
	if kb := 4 * float64(perToken) / 1000; kb < 60 || kb > 80 {
		t.Fatalf("%v KB per token", kb)
	}
	l8b := llama.Config{Dim: 4096, HiddenDim: 14336, NLayers: 32, NHeads: 32, NKVHeads: 8, VocabSize: 128256, MaxSeqLen: 8192}
	const avail = 22.8 * memcheck.GiB
	for batch, fits := range map[int]bool{1: true, 2: false} {
		need := finetuneNeed(l8b, 1185792, false, batch, 128)
		need.Add("weights", weightBytes(l8b, lilyop.BFloat16), 1)
		if err := need.Fits(avail); (err == nil) != fits {
			t.Errorf("LLaMA3-8B bf16, batch %d×128: fits %v, want %v (%v)", batch, err == nil, fits, err)
		}
	}
}

// mainArgsEnv carries the arguments of the command that
// TestCtrlCSavesThenExits130 runs in a child process, separated by \x1f.
const mainArgsEnv = "LLAMA_TEST_MAIN_ARGS"

// Ctrl-C during training stops the run after the current step, saves what
// was done, and exits with status 130 (as the real program, in a child
// process that gets SIGINT).
func TestCtrlCSavesThenExits130(t *testing.T) {
	if args := os.Getenv(mainArgsEnv); args != "" {
		os.Args = append([]string{"llama"}, strings.Split(args, "\x1f")...)
		main()
		return
	}
	data := sharedData(t)
	out := filepath.Join(t.TempDir(), "run")
	args := append(append([]string{"finetune", "-adapter", "lora", "-out", out}, tinyArgs(data)...), "-max_steps", "1000000", "-eval_every", "0")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCtrlCSavesThenExits130$")
	cmd.Env = append(os.Environ(), mainArgsEnv+"="+strings.Join(args, "\x1f"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && !strings.Contains(sc.Text(), "held-out perplexity before training") {
	}
	time.Sleep(200 * time.Millisecond) // into the training loop
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 130 {
		t.Fatalf("exit %v, want status 130; stderr:\n%s", err, stderr.String())
	}
	res := readResult(t, out)
	if !res.Interrupted || res.Steps < 1 || res.Steps >= 1000000 {
		t.Fatalf("results: interrupted %v after %d steps", res.Interrupted, res.Steps)
	}
	checkRunFiles(t, out)
}

// checkRunFiles checks that a finetune folder holds every output.
func checkRunFiles(t *testing.T, out string) {
	t.Helper()
	for _, f := range []string{resultsFile, plotFile, filepath.Join(adapterDir, adapterfile.ConfigName), filepath.Join(adapterDir, adapterfile.WeightsName), outdir.RecordFile} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
}

// A run that fails to start (here: no checkpoint) leaves no unfinished run
// in -out that a new run would have to -overwrite.
func TestFailedStartLeavesNoRun(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	err := run(context.Background(), []string{"finetune", "-checkpoint", filepath.Join(t.TempDir(), "missing.bin"), "-out", out}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil {
		t.Fatal("a missing checkpoint was accepted")
	}
	if _, ok, _ := outdir.ReadRecord(out); ok {
		t.Errorf("the failed run left a run record in %s", out)
	}
}
