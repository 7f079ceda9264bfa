package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// glueDir locates ../shared/data/glue relative to this package; it fails
// under CI=true when the data is missing and skips otherwise.
func glueDir(t *testing.T) string {
	t.Helper()
	data, err := filepath.Abs("../../../shared/data")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(data, "glue")
	if _, err := os.Stat(filepath.Join(dir, "SST-2", "dev.tsv")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("shared data missing under CI: %v", err)
		}
		t.Skipf("shared data not found: %v", err)
	}
	return dir
}

// GLUE sentences as corpora: CoLA and QNLI (dev only: no train split here)
// for pretraining, SST-2 train for adaptation and all of SST-2 dev held out.
func TestGLUECorpora(t *testing.T) {
	dir := glueDir(t)
	c, err := parseFlags([]string{"-glue_dir", dir, "-source_tasks", "cola,qnli", "-target_task", "sst2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	corp, err := loadCorpus(c)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	// CoLA train 8,551 sentences + QNLI dev 5,463 pairs = 19,477 texts, a
	// tenth held out.
	if n := len(corp.Source) + len(corp.SourceEval); n != 8551+2*5463 || len(corp.SourceEval) != 1948 {
		t.Errorf("source: %d + %d documents", len(corp.Source), len(corp.SourceEval))
	}
	if len(corp.Target) != 67349 || len(corp.TargetEval) != 872 {
		t.Errorf("target: %d training and %d held-out documents, want SST-2's 67,349 and 872", len(corp.Target), len(corp.TargetEval))
	}
	c.SourceTasks = "cola,sst2"
	if _, err := loadCorpus(c); err == nil {
		t.Error("the target task among the source tasks: no error")
	}
}

// A tiny run on real text end to end, with document caps.
func TestGLUERun(t *testing.T) {
	dir := glueDir(t)
	out := t.TempDir()
	args := tinyArgs(out, "-glue_dir", dir, "-source_tasks", "rte", "-target_task", "cola", "-max_source_docs", "300",
		"-max_target_docs", "200", "-methods", "lily_in,lora_in", "-seeds", "1")
	if err := run(context.Background(), args, io.Discard, io.Discard); err != nil {
		t.Fatalf("%+v", err)
	}
	res := readResults(t, out)
	if res.Data.TargetDocs != 200 || res.Data.TargetEvalDocs != 1043 || res.Data.SourceDocs != 270 || len(res.Runs) != 2 {
		t.Errorf("data %+v, %d runs", res.Data, len(res.Runs))
	}
}
