package glue

import (
	"strconv"
	"testing"
)

func numbered(n int) []Example {
	exs := make([]Example, n)
	for i := range exs {
		exs[i] = Example{ID: strconv.Itoa(i), Line: i + 2}
	}
	return exs
}

func TestSplit(t *testing.T) {
	exs := numbered(101)
	a, b, err := Split(exs, 0.8, 42)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 81 || len(b) != 20 {
		t.Fatalf("sizes %d, %d, want 81, 20", len(a), len(b))
	}
	seen := map[string]int{}
	for _, part := range [][]Example{a, b} {
		for i, e := range part {
			seen[e.ID]++
			if i > 0 && part[i-1].Line >= e.Line {
				t.Fatal("a part does not keep the original order")
			}
		}
	}
	if len(seen) != len(exs) {
		t.Fatalf("parts cover %d distinct examples, want %d", len(seen), len(exs))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("example %s in %d parts", id, n)
		}
	}
	// Deterministic, and pinned so that it stays the same across Go
	// versions and platforms.
	a2, b2, _ := Split(exs, 0.8, 42)
	if !sameIDs(a, a2) || !sameIDs(b, b2) {
		t.Fatal("same seed, different split")
	}
	if got, want := ids(b), "[6 9 15 16 23 42 47 53 58 59 72 74 76 81 85 86 90 91 94 99]"; got != want {
		t.Errorf("seed 42 eval part = %s, want %s", got, want)
	}
	// SplitMix64's published first output for seed 0.
	if r := (&splitMix64{}).next(); r != 0xe220a8397b1dcdaf {
		t.Errorf("splitMix64 seed 0 → %#x", r)
	}
	c, _, _ := Split(exs, 0.8, 43)
	if sameIDs(a, c) {
		t.Error("seeds 42 and 43 give the same split")
	}
	// The input is not modified.
	for i, e := range exs {
		if e.ID != strconv.Itoa(i) {
			t.Fatal("input reordered")
		}
	}
	for _, frac := range []float64{0, 1} {
		a, b, err := Split(exs, frac, 1)
		if err != nil || len(a) != int(frac)*len(exs) || len(a)+len(b) != len(exs) {
			t.Errorf("frac %v: %d, %d, %v", frac, len(a), len(b), err)
		}
	}
	if a, b, err := Split(nil, 0.5, 1); err != nil || len(a)+len(b) != 0 {
		t.Errorf("empty input: %v %v %v", a, b, err)
	}
	for _, frac := range []float64{-0.1, 1.5, nan()} {
		if _, _, err := Split(exs, frac, 1); err == nil {
			t.Errorf("frac %v: no error", frac)
		}
	}
}

func nan() float64 { z := 0.0; return z / z }

func sameIDs(a, b []Example) bool { return ids(a) == ids(b) }

func ids(exs []Example) string {
	s := "["
	for i, e := range exs {
		if i > 0 {
			s += " "
		}
		s += e.ID
	}
	return s + "]"
}
