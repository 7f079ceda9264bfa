package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lilygo/lily/graphs/llama"
	"github.com/lilygo/lily/tokenizers/llama2c"
	"gorgonia.org/tensor"
)

// finetuned runs a tiny finetune with the given adapter and returns its
// results.json and output folder.
func finetuned(t *testing.T, data, adapter string) (ftResult, string) {
	t.Helper()
	out := t.TempDir()
	args := append([]string{"finetune", "-adapter", adapter, "-out", out}, tinyArgs(data)...)
	if err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatalf("%+v", err)
	}
	return readResult(t, out), out
}

// readResult reads the results.json of a finetune folder.
func readResult(t *testing.T, dir string) ftResult {
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

// tinyUseArgs are the text flags of tinyArgs that eval and export take.
func tinyUseArgs(data string) []string {
	return []string{"-checkpoint", filepath.Join(data, defaultCheckpoint), "-tokenizer", filepath.Join(data, defaultTokenizer),
		"-glue_dir", filepath.Join(data, "glue"), "-eval_examples", "12", "-batch_size", "8", "-max_len", "32"}
}

func TestEvalReproducesRun(t *testing.T) {
	data := sharedData(t)
	res, out := finetuned(t, data, "lily")
	c, err := parseUse("eval", append(tinyUseArgs(data), "-adapter", filepath.Join(out, adapterDir)), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var w bytes.Buffer
	got, err := runUseEval(c, &w)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if got.Base != res.Base || got.Adapted == nil || *got.Adapted != res.Best.evalResult {
		t.Errorf("eval: base %+v, adapted %+v; the run had base %+v, best %+v", got.Base, got.Adapted, res.Base, res.Best.evalResult)
	}
	if !strings.Contains(w.String(), "with the lily adapter") {
		t.Errorf("output %q", w.String())
	}
	// An eval file: the same sentences as lines give the same perplexity.
	file := filepath.Join(t.TempDir(), "dev.txt")
	texts, err := glueTexts(filepath.Join(data, "glue"), "sst2", "dev")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(strings.Join(texts[:12], "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.EvalFile = file
	fromFile, err := runUseEval(c, &bytes.Buffer{})
	if err != nil || *fromFile.Adapted != *got.Adapted {
		t.Errorf("-eval_file: %+v, %v; want %+v", fromFile.Adapted, err, got.Adapted)
	}
}

// greedyOf decodes greedily with a model folder written by export: the
// llama2.c file through the command, the Hugging Face folder directly.
func greedyOf(t *testing.T, out string, steps int) (bin, hf string) {
	t.Helper()
	var text bytes.Buffer
	args := []string{"generate", "-checkpoint", filepath.Join(out, exportBin), "-tokenizer", filepath.Join(out, exportTokenizer),
		"-temperature", "0", "-steps", "64"}
	if err := run(context.Background(), args, &text, &bytes.Buffer{}); err != nil {
		t.Fatalf("%+v", err)
	}
	cfg, s, err := llama.LoadHF(filepath.Join(out, exportHF), tensor.Float32)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	b, err := loadBase(filepath.Join(out, exportBin), filepath.Join(out, exportTokenizer), "f32", nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := llama.Generate(cfg, s, nil, b.tok, "", llama.SampleOptions{Steps: steps})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(text.String(), "\n"), g.Text
}

// checkHFTokenizer checks that the Hugging Face folder holds the tokenizer
// converted from tok512 (package llama2c tests that it encodes as llama2.c
// does): its 512 tokens, BOS <s> added first, the model's context length.
func checkHFTokenizer(t *testing.T, dir string) {
	t.Helper()
	var tok struct {
		Model struct {
			Vocab  map[string]int
			Merges []string
		}
	}
	var cfg struct {
		AddBOS    bool   `json:"add_bos_token"`
		BOS       string `json:"bos_token"`
		MaxLength int    `json:"model_max_length"`
	}
	for name, v := range map[string]any{llama2c.HFTokenizerFile: &tok, llama2c.HFTokenizerConfigFile: &cfg} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if len(tok.Model.Vocab) != 512 || len(tok.Model.Merges) == 0 || tok.Model.Vocab[cfg.BOS] != llama2c.BOS || !cfg.AddBOS || cfg.MaxLength != 512 {
		t.Errorf("hf/ tokenizer: %d tokens, %d merges, config %+v", len(tok.Model.Vocab), len(tok.Model.Merges), cfg)
	}
}

func TestExportGreedyText(t *testing.T) {
	data := sharedData(t)
	for _, adapter := range []string{"lora", "lily"} {
		_, run := finetuned(t, data, adapter)
		out := t.TempDir()
		args := append(tinyUseArgs(data), "-adapter", filepath.Join(run, adapterDir), "-out", out, "-train_file", "", "-calibrate_examples", "40")
		c, err := parseUse("export", args, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		if adapter == "lily" {
			_, err := runExport(c, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), "-calibrate") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("a routed Lily exported without calibration: %v", err)
			}
			c.Calibrate = true
		}
		var w bytes.Buffer
		res, err := runExport(c, &w)
		if err != nil {
			t.Fatalf("%s: %+v", adapter, err)
		}
		if res.MergedText != res.AdapterText || !strings.Contains(w.String(), "equals the adapter's") {
			t.Errorf("%s: merged greedy text\n%q\nadapter's\n%q", adapter, res.MergedText, res.AdapterText)
		}
		if adapter == "lily" && (res.Calibrated != 40 || res.RoutedText == "") {
			t.Errorf("lily: calibrated on %d texts, routed text %q", res.Calibrated, res.RoutedText)
		}
		if _, err := runExport(c, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "-overwrite") {
			t.Errorf("%s: a second export into the same folder: %v", adapter, err)
		}
		checkHFTokenizer(t, filepath.Join(out, exportHF))
		bin, hf := greedyOf(t, out, c.Steps)
		if bin != res.AdapterText || hf != res.AdapterText {
			t.Errorf("%s: model.bin decodes\n%q\nhf/\n%q\nthe adapter\n%q", adapter, bin, hf, res.AdapterText)
		}
		orig, _ := os.ReadFile(c.Checkpoint)
		merged, _ := os.ReadFile(filepath.Join(out, exportBin))
		if len(orig) != len(merged) || bytes.Equal(orig, merged) {
			t.Errorf("%s: model.bin has %d bytes (the checkpoint %d) and the merge changed nothing: %t", adapter, len(merged), len(orig), bytes.Equal(orig, merged))
		}
	}
}

func TestUseFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"export", "-out", "x"},
		{"export", "-adapter", "x"},
		{"eval", "-batch_size", "0"},
		{"eval", "stray"},
	} {
		if err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want one line", args, err)
		}
	}
}
