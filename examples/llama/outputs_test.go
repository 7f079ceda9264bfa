package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lilygo/lily/graphs/llama"
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

// The activation estimate for stories260K at length 128: 68 KB per token
// position, below the 80 KB maxTrainGraphs' comment reports.
func TestLMActivations(t *testing.T) {
	c := llama.Config{Dim: 64, HiddenDim: 172, NLayers: 5, NHeads: 8, NKVHeads: 4, VocabSize: 512, MaxSeqLen: 512}
	perToken := 5*(10*64+3*172+2*8*128) + 2*512
	if got := lmActivations(c, 1, 128) / 128; got != float64(perToken) {
		t.Fatalf("%v values per token, want %d", got, perToken)
	}
	if kb := 4 * float64(perToken) / 1000; kb < 60 || kb > 80 {
		t.Fatalf("%v KB per token", kb)
	}
}
