package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lilygo/lily/glue"
)

// realGLUE returns ../shared/data/glue, skipping the test when it is absent
// (failing instead when CI=true).
func realGLUE(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../../shared/data/glue")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "RTE", "train.tsv")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but the shared GLUE data is missing: %v", err)
		}
		t.Skipf("shared GLUE data not found: %v", err)
	}
	return dir
}

// The pretraining text of the shared data is the train splits of CoLA,
// SST-2 and RTE (both sentences): the row counts of data/README.md. QNLI has
// no train split there and is not read.
func TestRealPretrainTexts(t *testing.T) {
	dir := realGLUE(t)
	docs, sources, err := pretrainTexts(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := 8551 + 67349 + 2*2490; len(docs) != want {
		t.Errorf("%d documents, want %d", len(docs), want)
	}
	if len(sources) != 3 {
		t.Errorf("sources %v", sources)
	}
	for _, s := range sources {
		if !strings.HasSuffix(s, "train.tsv") {
			t.Errorf("read %s", s)
		}
	}
}

// A few steps of Lily on the real RTE files (the tiny synthetic-trained
// model stands in for a real checkpoint), evaluated on the real dev set.
func TestRealRTE(t *testing.T) {
	dir := realGLUE(t)
	_, model := fixture(t)
	c := tinyFinetune("rte", dir, model, "lily", t.TempDir())
	c.MaxSteps, c.EvalEvery = 2, 2
	var out strings.Builder
	res, err := finetune(context.Background(), c, &out, runHooks{progress: io.Discard})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if res.TrainExamples != 2490 || res.EvalExamples != 277 || res.Best == nil || res.DataNote != "" {
		t.Errorf("RTE: %d train, %d dev, best %v, note %q", res.TrainExamples, res.EvalExamples, res.Best, res.DataNote)
	}
	if a := res.Best.Metrics["accuracy"]; a <= 0 || a >= 1 {
		t.Errorf("accuracy %v", a)
	}
}

// QNLI has only dev.tsv in the shared data: it is split 80/20 with a note.
func TestRealQNLISplit(t *testing.T) {
	dir := realGLUE(t)
	task, _ := glue.Lookup("qnli")
	d, err := loadTaskData(ftConfig{Task: "qnli", GlueDir: dir, Seed: 42}, task)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.train) != 4370 || len(d.eval) != 1093 || !strings.Contains(d.note, "no train.tsv") {
		t.Errorf("QNLI: %d/%d, note %q", len(d.train), len(d.eval), d.note)
	}
}
