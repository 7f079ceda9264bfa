package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lilygo/lily/bench"
	"github.com/lilygo/lily/graphs/roberta"
)

// TestPaperSettings checks the shape-only counts against the paper's
// (docs: LILY.md's table; LoRA's 56M from the paper's LLaMA3-8B comparison)
// and the roberta-base two-label head (768·768 + 768 + 768·2 + 2).
func TestPaperSettings(t *testing.T) {
	s, err := paperSettings()
	if err != nil {
		t.Fatal(err)
	}
	want := []setting{
		{adapter: 198144, head: 592130},
		{adapter: 2 * 12 * 8 * (768 + 768), head: 592130},
		{adapter: 1185792},
		{adapter: 32 * 32 * ((4096 + 4096) + 2*(4096+1024) + 2*(4096+14336))},
	}
	for i, w := range want {
		if s[i].adapter != w.adapter || s[i].head != w.head {
			t.Errorf("%s %s: %d + %d parameters, want %d + %d", s[i].model, s[i].method, s[i].adapter, s[i].head, w.adapter, w.head)
		}
	}
}

// TestRingTime checks the ring model on numbers worked by hand: 8 nodes move
// 2·7/8 of 8 MB = 14 MB at 1 GB/s (14 ms) in 14 messages of 10 µs.
func TestRingTime(t *testing.T) {
	if got, want := ringTime(8_000_000, 8, 1e9, 10*time.Microsecond), 14*time.Millisecond+140*time.Microsecond; got != want {
		t.Errorf("ringTime = %v, want %v", got, want)
	}
}

// oneProcess is a trainComm of one process.
type oneProcess struct{ size int }

func (c oneProcess) Rank() int                               { return 0 }
func (c oneProcess) Size() int                               { return c.size }
func (c oneProcess) AllreduceSumFloat32(buf []float32) error { return nil }
func (c oneProcess) AllreduceSumFloat64(buf []float64) error { return nil }
func (c oneProcess) BroadcastFloat32(buf []float32, root int) error {
	return nil
}
func (c oneProcess) BroadcastFloat64(buf []float64, root int) error {
	return nil
}
func (c oneProcess) Barrier() error { return nil }

// tinyRun is a -train run on a two-layer RoBERTa small enough for a test.
func tinyRun(batch int) trainRun {
	c := roberta.BaseConfig()
	c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads = 11, 8, 2, 2
	c.IntermediateSize, c.MaxPositionEmbeddings, c.TypeVocabSize = 12, 9, 2
	return trainRun{cfg: c, method: bench.Method{Name: "lily", R: 2, StrideA: 1, NumB: 2, Scaling: 1}, batch: batch, seq: 4, warm: 1, steps: 3}
}

// runTrain prints the header and one row that names the world and the
// batch, and refuses a global batch that does not divide among the ranks.
func TestRunTrain(t *testing.T) {
	var out strings.Builder
	if err := runTrain(&out, oneProcess{size: 1}, tinyRun(2)); err != nil {
		t.Fatalf("%+v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 || lines[2] != strings.Split(trainHeader, "\n")[0] {
		t.Fatalf("output:\n%s\nwant a title, a blank line, the header and one row", out.String())
	}
	want := fmt.Sprintf("| 1 × %d | 2×4 (2×4 per rank) | ", runtime.GOMAXPROCS(0))
	if row := lines[4]; !strings.HasPrefix(row, want) || strings.Count(row, "|") != 9 {
		t.Errorf("row %q, want it to start %q and have 8 cells", row, want)
	}
	if err := runTrain(io.Discard, oneProcess{size: 2}, tinyRun(3)); err == nil || !strings.Contains(err.Error(), "divide among 2 ranks") {
		t.Errorf("3 sequences over 2 ranks: error %v", err)
	}
}
