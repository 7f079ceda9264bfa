package main

import (
	"bytes"
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lilygo/lily/graphs/mamba"
)

// writeDocs writes documents one per line and returns the file.
func writeDocs(t *testing.T, docs []string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "docs.txt")
	if err := os.WriteFile(p, []byte(strings.Join(docs, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The saved adapters of a run: eval on the run's held-out text gives its
// final perplexity exactly; export merges LoRA (and a calibrated Lily) into
// a directory that -model loads with no adapter to the perplexity the
// export measured, and refuses a routed Lily without calibration.
func TestEvalAndExport(t *testing.T) {
	out := t.TempDir()
	args := tinyArgs(out, "-methods", "lily_in,lora_in", "-seeds", "1")
	if err := run(context.Background(), args, io.Discard, io.Discard); err != nil {
		t.Fatalf("%+v", err)
	}
	res := readResults(t, out)
	c, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	corp := corpusOf(t, args)
	held, train := writeDocs(t, corp.TargetEval), writeDocs(t, corp.Target)
	model := filepath.Join(out, pretrainedDir)
	for _, r := range res.Runs {
		u := useConfig{Model: model, Adapter: r.AdapterDir, EvalFile: held, Batch: c.Batch, SeqLen: c.SeqLen}
		got, err := runUseEval(u, io.Discard)
		if err != nil {
			t.Fatalf("%s: %+v", r.Method, err)
		}
		if got.Adapted != r.Final || got.Base != res.TargetPPL {
			t.Errorf("%s: eval gives %v (base %v), the run %v (base %v)", r.Method, got.Adapted, got.Base, r.Final, res.TargetPPL)
		}
		u.Out = filepath.Join(t.TempDir(), "merged")
		if r.Method == "lily_in" {
			_, err := runExport(u, io.Discard)
			if err == nil || !strings.Contains(err.Error(), "-calibrate") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("a routed Lily exported without calibration: %v", err)
			}
			u.Calibrate, u.CalibrateFile = true, train
		}
		ex, err := runExport(u, io.Discard)
		if err != nil {
			t.Fatalf("%s: %+v", r.Method, err)
		}
		if _, err := runExport(u, io.Discard); err == nil || !strings.Contains(err.Error(), "-overwrite") {
			t.Errorf("%s: a second export into the same folder: %v", r.Method, err)
		}
		if ex.Adapted != r.Final {
			t.Errorf("%s: export measured the adapter at %v, the run %v", r.Method, ex.Adapted, r.Final)
		}
		if r.Method == "lora_in" && math.Abs(ex.Merged-ex.Adapted) > 1e-5*ex.Adapted {
			t.Errorf("lora: merged perplexity %v, the adapter's %v", ex.Merged, ex.Adapted)
		}
		back, err := runUseEval(useConfig{Model: u.Out, EvalFile: held, Batch: c.Batch, SeqLen: c.SeqLen}, io.Discard)
		if err != nil {
			t.Fatalf("%s: %+v", r.Method, err)
		}
		if back.Base != ex.Merged {
			t.Errorf("%s: the exported model gives %v, the export measured %v", r.Method, back.Base, ex.Merged)
		}
	}
}

func TestUseFlags(t *testing.T) {
	for _, args := range [][]string{
		{"eval", "-eval_file", "x"},
		{"eval", "-model", "m"},
		{"export", "-model", "m", "-adapter", "a"},
		{"export", "-model", "m", "-adapter", "a", "-out", "o", "-calibrate"},
		{"eval", "-model", "m", "-eval_file", "x", "-seq_len", "1"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want one line", args, err)
		}
	}
}

// eval and export of a model too large for this machine are refused from
// its config.json alone, before any weight is read (there is none here).
func TestUseRefusesAbsurdModelUpFront(t *testing.T) {
	dir := t.TempDir()
	mc := mamba.TinyConfig()
	mc.HiddenSize, mc.IntermediateSize, mc.NumHiddenLayers = 1<<16, 1<<17, 64
	if err := mamba.WriteConfig(filepath.Join(dir, "config.json"), mc); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "eval.txt")
	if err := os.WriteFile(text, []byte("a few words\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"eval", "-model", dir, "-eval_file", text},
		{"export", "-model", dir, "-adapter", dir, "-out", filepath.Join(t.TempDir(), "merged")},
	} {
		err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "GiB") {
			t.Errorf("%s: %v", args[0], err)
		}
	}
}
