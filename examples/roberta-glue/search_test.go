package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/lilygo/lily/internal/searchcmd"
)

// A budget-matched search on the synthetic task with the tiny encoder: the
// candidates fit the budget, the second round runs the first round's best
// (highest accuracy) with both seeds, and every output is written.
func TestSearch(t *testing.T) {
	glueDir, model := fixture(t)
	out := filepath.Join(t.TempDir(), "search")
	args := []string{"search", "-task", "sst2", "-glue_dir", glueDir, "-model", model, "-batch_size", "8", "-max_len", "16",
		"-lora_budget", "1", "-tolerance", "0.25", "-max_r", "6", "-max_num_B", "3", "-rungs", "2,4", "-keep", "0.5", "-seeds", "1,2", "-out", out}
	if err := run(context.Background(), args, &bytes.Buffer{}, io.Discard); err != nil {
		t.Fatalf("%+v", err)
	}
	b, err := os.ReadFile(filepath.Join(out, searchcmd.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	var res searchcmd.Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	n := len(res.Candidates)
	kept := (n + 1) / 2
	if n < 2 || len(res.Rounds) != 2 || len(res.Rounds[1].Scores) != kept || len(res.Runs) != n+2*kept || res.Best == nil {
		t.Fatalf("%d candidates, rounds %+v, %d runs, best %v", n, res.Rounds, len(res.Runs), res.Best)
	}
	if !res.HigherIsBetter || res.Metric != "best dev accuracy" || res.Budget != 2*2*(16+16) {
		t.Errorf("metric %q (higher is better: %v), budget %d", res.Metric, res.HigherIsBetter, res.Budget)
	}
	first := res.Rounds[0].Scores
	for i := 1; i < len(first); i++ {
		if first[i].Score > first[i-1].Score {
			t.Errorf("round 1 ranks %v above %v", first[i-1], first[i])
		}
	}
	for _, s := range res.Rounds[1].Scores {
		found := false
		for _, p := range first[:kept] {
			found = found || p.Candidate == s.Candidate
		}
		if !found {
			t.Errorf("round 2 ran %v, not among round 1's best", s.Candidate)
		}
	}
	for _, r := range res.Runs {
		if _, err := os.Stat(filepath.Join(r.Dir, "results.json")); err != nil {
			t.Error(err)
		}
	}
	for _, name := range []string{searchcmd.MarkdownFile, searchcmd.PlotFile} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Error(err)
		}
	}
	for _, bad := range [][]string{{"-lily_r", "3"}, {"-max_steps", "3"}, {"-adapter", "lora"}, {"-rungs", "4,2"}, {"-epochs", "2"}, {"-resume"}} {
		a := append([]string{"search", "-task", "sst2", "-glue_dir", glueDir, "-model", model, "-out", t.TempDir()}, bad...)
		if err := run(context.Background(), a, io.Discard, io.Discard); err == nil {
			t.Errorf("search %v: no error", bad)
		}
	}
	if err := run(context.Background(), []string{"search", "-glue_dir", glueDir, "-model", model}, io.Discard, io.Discard); err == nil {
		t.Error("search without -task: no error")
	}
}
