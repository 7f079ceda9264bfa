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

// searchArgs are tinyArgs without the flags search sets itself.
func searchArgs(out string, extra ...string) []string {
	var args []string
	tiny := tinyArgs(out)
	for i := 0; i < len(tiny); i += 2 {
		if tiny[i] != "-steps" && tiny[i] != "-lily_r" && tiny[i] != "-seeds" {
			args = append(args, tiny[i], tiny[i+1])
		}
	}
	return append(append([]string{"search"}, args...), extra...)
}

// A budget-matched search on the tiny synthetic setup pretrains the model
// once, runs every candidate, then the best (lowest perplexity) part of them
// with both seeds, and writes every output, each run's analysis included.
func TestSearch(t *testing.T) {
	out := filepath.Join(t.TempDir(), "search")
	args := searchArgs(out, "-lora_budget", "2", "-tolerance", "0.3", "-max_r", "6", "-max_num_B", "3", "-rungs", "2,3", "-keep", "0.5", "-seeds", "1,2")
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
	// LoRA r 2 on in_proj (8 → 32) of 2 layers.
	if res.HigherIsBetter || res.Budget != 2*2*(8+32) || res.Base <= 1 {
		t.Errorf("higher is better %v, budget %d, base perplexity %v", res.HigherIsBetter, res.Budget, res.Base)
	}
	first := res.Rounds[0].Scores
	for i := 1; i < len(first); i++ {
		if first[i].Score < first[i-1].Score {
			t.Errorf("round 1 ranks %v above %v", first[i-1], first[i])
		}
	}
	for _, r := range res.Runs {
		var rr runResult
		b, err := os.ReadFile(filepath.Join(r.Dir, searchRunFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &rr); err != nil || rr.Analysis == nil || rr.Steps != r.Steps || rr.Seed != r.Seed {
			t.Errorf("%s: %v, steps %d, seed %d, analysis %v", r.Dir, err, rr.Steps, rr.Seed, rr.Analysis != nil)
		}
	}
	for _, name := range []string{searchcmd.MarkdownFile, searchcmd.PlotFile, pretrainedDir} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Error(err)
		}
	}
	for _, bad := range [][]string{{"-lily_r", "3"}, {"-steps", "3"}, {"-methods", "lora_in"}, {"-methods", "lily_in,lily_dt_in"}, {"-rungs", "3,2"}, {"-resume"}} {
		if err := run(context.Background(), searchArgs(t.TempDir(), bad...), io.Discard, io.Discard); err == nil {
			t.Errorf("search %v: no error", bad)
		}
	}
}
