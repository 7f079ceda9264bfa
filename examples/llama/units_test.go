package main

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lilygo/lily/graphs/llama"
	"github.com/lilygo/lily/internal/sweep"
	"github.com/lilygo/lily/layers"
)

func TestBatcherGivesFullSortedBatches(t *testing.T) {
	lens := make([]int, 1000)
	for i := range lens {
		lens[i] = 1 + (i*7919)%97
	}
	b := newBatcher(lens, 16, rand.New(rand.NewPCG(1, 2)))
	perEpoch := len(lens) / 16
	seen := map[int]bool{}
	for k := 0; k < perEpoch; k++ {
		idx := b.next()
		if len(idx) != 16 {
			t.Fatalf("batch %d has %d sequences", k, len(idx))
		}
		for j, i := range idx {
			if seen[i] {
				t.Fatalf("sequence %d twice in one epoch", i)
			}
			seen[i] = true
			if j > 0 && lens[i] < lens[idx[j-1]] {
				t.Fatalf("batch %d not sorted by length", k)
			}
		}
	}
	if len(seen) != perEpoch*16 {
		t.Errorf("%d sequences in an epoch", len(seen))
	}
	if len(b.next()) != 16 {
		t.Error("the second epoch does not start")
	}
}

func TestEvalBatches(t *testing.T) {
	got := evalBatches([]int{5, 3, 9, 3, 1}, 2)
	want := [][]int{{4, 1}, {3, 0}, {2}}
	if len(got) != len(want) {
		t.Fatalf("%v", got)
	}
	for i := range want {
		for j := range want[i] {
			if got[i][j] != want[i][j] {
				t.Fatalf("%v, want %v", got, want)
			}
		}
	}
	if n := paddedLen(9, 64); n != 16 {
		t.Errorf("paddedLen(9) = %d", n)
	}
	if n := paddedLen(63, 60); n != 60 {
		t.Errorf("paddedLen(63, max 60) = %d", n)
	}
	batch, length := gather([][]int{{1, 2, 3}, {1}, {1, 5}}, []int{0, 1, 2}, 64)
	if length != 8 || predicted(batch) != 3 {
		t.Errorf("length %d, %d predicted tokens", length, predicted(batch))
	}
}

func TestParseFinetune(t *testing.T) {
	c, err := parseFinetune([]string{"-adapter", "full", "-lora_target_modules", "all", "-lily_target_modules", " q_proj, ,v_proj"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.LR != defaultFullLR || c.Out != "runs/llama-full" || c.LoraTargets != allLinears || c.LilyTargets != "q_proj,v_proj" {
		t.Errorf("resolved %+v", c)
	}
	if !strings.HasSuffix(c.Checkpoint, defaultCheckpoint) || !strings.HasSuffix(c.GlueDir, defaultGlueDir) {
		t.Errorf("default paths %q, %q", c.Checkpoint, c.GlueDir)
	}
	for _, bad := range [][]string{
		{"-adapter", "prefix"}, {"-lily_num_B", "1"}, {"-max_steps", "0"}, {"-lily_routing", "random"},
		{"-train_file", "x.txt"}, {"-lr", "-1"}, {"-lily_stride_A", "0"}, {"-eval_every", "-1"}, {"-warmup_ratio", "1"}, {"-lily_target_modules", ","}, {"stray"},
	} {
		if _, err := parseFinetune(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestSharedPathFindsRepositoryData(t *testing.T) {
	want, _ := filepath.Abs("../../../shared/data/" + defaultTokenizer)
	if _, err := os.Stat(want); err != nil {
		t.Skip("no shared data")
	}
	got, err := filepath.Abs(sharedPath(defaultTokenizer))
	if err != nil || got != want {
		t.Errorf("sharedPath from %s: %q, want %q", "examples/llama", got, want)
	}
	if got := orShared("mine.bin", defaultTokenizer); got != "mine.bin" {
		t.Errorf("orShared overrides an explicit path: %q", got)
	}
}

func TestSweepHelpers(t *testing.T) {
	if commas(1234567) != "1,234,567" || commas(12) != "12" {
		t.Errorf("commas %q", commas(1234567))
	}
	for _, s := range defaultSweep {
		sp, err := sweep.ParseSpec(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseFinetune(sp.Args, &bytes.Buffer{}); err != nil {
			t.Errorf("default sweep run %q: %v", sp.Name, err)
		}
	}
}

func TestSweepRejectsBadArguments(t *testing.T) {
	err := run(t.Context(), []string{"sweep", "-seed", "3"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "-seeds") {
		t.Errorf("sweep -seed: %v", err)
	}
	err = run(t.Context(), []string{"sweep", "-run", "a b: -adapter lora", "-run", "a-b: -adapter full"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "folder") {
		t.Errorf("runs sharing a folder: %v", err)
	}
	err = run(t.Context(), []string{"sweep", "-run", "x: -adapter dora"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "dora") {
		t.Errorf("bad run flags: %v", err)
	}
}

func TestUnknownSubcommand(t *testing.T) {
	var stderr bytes.Buffer
	if err := run(t.Context(), []string{"train"}, &bytes.Buffer{}, &stderr); err == nil || !strings.Contains(stderr.String(), "generate") {
		t.Errorf("err %v, usage %q", err, stderr.String())
	}
}

// TestBudgets checks the trainable-parameter counts that docs/results.md
// matches, from stories260K's shapes alone (dim 64, hidden 172, 5 layers,
// 4 of 8 heads for keys and values).
func TestBudgets(t *testing.T) {
	cfg := llama.Config{Dim: 64, HiddenDim: 172, NLayers: 5, NHeads: 8, NKVHeads: 4, VocabSize: 512, MaxSeqLen: 512, NormEps: 1e-5, RopeTheta: 10000}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"-adapter", "lora", "-lora_r", "1"}, 5780},
		{[]string{"-adapter", "lily", "-lily_r", "3", "-lily_stride_A", "5", "-lily_num_B", "2"}, 5478},
		{[]string{"-adapter", "lora", "-lora_r", "4"}, 23120},
		{[]string{"-adapter", "lily"}, 23738},
		{[]string{"-adapter", "lily", "-lily_uniform"}, 23738 - 7*5*13*2}, // no routers
		{[]string{"-adapter", "lily", "-lily_r", "6", "-lily_stride_A", "1"}, 24300},
		{[]string{"-adapter", "lora", "-lora_r", "2", "-lora_target_modules", "q_proj,v_proj"}, 2240},
		{[]string{"-adapter", "lily", "-lily_r", "5", "-lily_num_B", "3", "-lily_target_modules", "q_proj,v_proj"}, 2230},
	} {
		c, err := parseFinetune(tc.args, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		a, err := newAdapter(c)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := layers.CountParams(a, cfg.Sites()); err != nil || n != tc.want {
			t.Errorf("%v: %d parameters (%v), want %d", tc.args, n, err, tc.want)
		}
	}
}
