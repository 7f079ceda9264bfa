package main

import (
	"testing"
	"time"
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
