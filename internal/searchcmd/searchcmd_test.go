package searchcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lilygo/lily/layers"
)

// sites are 4 layers of one 16→16 target.
func sites() []layers.Site {
	var out []layers.Site
	for l := 0; l < 4; l++ {
		p := fmt.Sprintf("layers.%d.proj", l)
		out = append(out, layers.Site{Layer: l, Target: "proj", Path: p, DIn: 16, DOut: 16, Weight: p + ".weight"})
	}
	return out
}

// parse registers the search flags beside a command's own -seed, -steps,
// -lr and -seeds (taken over) and parses args.
func parse(t *testing.T, args ...string) (Flags, []string, error) {
	t.Helper()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Int("seed", 1, "")
	fs.Int("steps", 1, "")
	fs.Float64("lr", 1, "")
	fs.String("seeds", "9", "the command's own list")
	fs.String("out", "", "")
	var f Flags
	f.Register(fs, Refused("seed", "steps", [3]string{"r", "s", "b"}, nil))
	if err := fs.Parse(args); err != nil {
		return f, nil, err
	}
	common, err := f.Parse(fs)
	return f, common, err
}

func TestFlags(t *testing.T) {
	f, common, err := parse(t, "-lr", "0.5", "-rungs", "2,5", "-out", "o")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.Rungs, f.Seeds, common) != "[2 5] [1 2 3] [-lr=0.5]" {
		t.Errorf("rungs %v, seeds %v (the taken-over flag's new default), common %v", f.Rungs, f.Seeds, common)
	}
	if f, _, err = parse(t, "-seeds", "4,5"); err != nil || fmt.Sprint(f.Seeds) != "[4 5]" {
		t.Errorf("-seeds 4,5: %v, %v", f.Seeds, err)
	}
	for _, bad := range [][]string{{"-seed", "2"}, {"-steps", "3"}, {"-rungs", "5,2"}, {"-keep", "1"}, {"-seeds", ""}, {"extra"}} {
		if _, _, err := parse(t, bad...); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

// A higher-is-better search keeps the highest scores, runs every seed in
// the last round, writes its outputs, and an interruption keeps the
// finished rounds.
func TestRun(t *testing.T) {
	f, common, err := parse(t, "-lora_budget", "2", "-tolerance", "0.2", "-max_r", "8", "-max_num_B", "3", "-rungs", "1,2", "-seeds", "1,2")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "search")
	plan := Plan{Name: "test search", Out: out, Flags: f, Common: common, Sites: sites(), Base: layers.DefaultLilyConfig("proj"),
		Metric: "accuracy", HigherIsBetter: true}
	s, err := New(plan)
	if err != nil {
		t.Fatal(err)
	}
	n := len(s.Candidates())
	if n < 3 {
		t.Fatalf("%d candidates", n)
	}
	score := func(_ context.Context, tr Trial) (Outcome, error) {
		v := float64(tr.Candidate.R) + float64(tr.Seed)/10
		return Outcome{Score: v, Final: v, Base: 0.5}, nil
	}
	var stdout bytes.Buffer
	res, err := s.Run(context.Background(), score, &stdout)
	if err != nil {
		t.Fatal(err)
	}
	kept := (n + 1) / 2
	if len(res.Rounds) != 2 || len(res.Rounds[1].Scores) != kept || len(res.Runs) != n+2*kept || res.Best == nil {
		t.Fatalf("rounds %+v, %d runs, best %v", res.Rounds, len(res.Runs), res.Best)
	}
	top := res.Rounds[1].Scores[0]
	if *res.Best != top.Candidate || top.Score != float64(top.Candidate.R)+0.15 {
		t.Errorf("best %v, top %+v: want the highest rank with the mean of seeds 1 and 2", res.Best, top)
	}
	for _, c := range s.Candidates() {
		if c.R > top.Candidate.R {
			t.Errorf("%v has a higher rank than the winner", c)
		}
	}
	var disk Result
	b, err := os.ReadFile(filepath.Join(out, JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &disk); err != nil || disk.Best == nil || len(disk.Runs) != len(res.Runs) || !disk.HigherIsBetter || disk.Base != 0.5 {
		t.Errorf("search.json: %v, %+v", err, disk)
	}
	md, _ := os.ReadFile(filepath.Join(out, MarkdownFile))
	if !strings.Contains(string(md), "higher is better") || !strings.Contains(stdout.String(), "best: "+ShapeName(*res.Best)) {
		t.Errorf("table:\n%s", md)
	}
	if png, _ := os.ReadFile(filepath.Join(out, PlotFile)); !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Error("no chart")
	}

	if _, err := New(plan); err == nil {
		t.Error("a finished search was replaced without -overwrite")
	}

	// Interrupted in round 2's second candidate: round 1 is kept, and
	// round 2 with its first candidate; no best, no error.
	plan.Overwrite = true
	if s, err = New(plan); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	res, err = s.Run(ctx, func(ctx context.Context, tr Trial) (Outcome, error) {
		if tr.Round == 2 {
			if calls++; calls == 3 { // the first candidate ran both seeds
				cancel()
				return Outcome{Score: 1, Interrupted: true}, nil
			}
		}
		return score(ctx, tr)
	}, io.Discard)
	if err != nil || !res.Interrupted || len(res.Rounds) != 2 || len(res.Rounds[1].Scores) != 1 || res.Best != nil || len(res.Runs) != n+3 {
		t.Fatalf("interrupted: %v, %+v", err, res)
	}
	b, err = os.ReadFile(filepath.Join(out, JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &disk); err != nil || len(disk.Rounds) != 2 || len(disk.Runs) != n+3 || !disk.Interrupted {
		t.Errorf("search.json after the interruption: %v, %d rounds, %d runs", err, len(disk.Rounds), len(disk.Runs))
	}
}

func TestTotalRuns(t *testing.T) {
	if n := totalRuns(8, 3, 0.5, 3); n != 8+4+2*3 {
		t.Errorf("8 candidates, 3 rounds, 3 seeds: %d runs", n)
	}
}
