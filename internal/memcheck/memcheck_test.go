package memcheck

import (
	"bufio"
	"math"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFits(t *testing.T) {
	var n Need
	n.Add("weights", 1<<28, 4)     // 1 GiB
	n.Add("adapter", 3<<30, 4*4)   // 48 GiB
	n.Add("activations", 1<<20, 4) // 4 MiB: too small to be named
	if got := n.Total(); got != (1+48)*GiB+4<<20 {
		t.Fatalf("total %v", got)
	}
	if err := n.Fits(64 * GiB); err != nil {
		t.Fatalf("49 GiB in 64: %v", err)
	}
	err := n.Fits(22 * GiB)
	want := "this run needs about 49.0 GiB (adapter 48.0 GiB), this machine has 22.0 GiB available"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
	var huge Need
	huge.Add("adapter", 1e30, 4)
	if err := huge.Fits(22 * GiB); err == nil || !strings.Contains(err.Error(), "3.73e+21 GiB") {
		t.Fatalf("absurd size: %v", err)
	}
}

func TestParseMeminfo(t *testing.T) {
	in := "MemTotal:       24683748 kB\nMemFree:        23576080 kB\nMemAvailable:   24190324 kB\n"
	got, ok := parseMeminfo(bufio.NewScanner(strings.NewReader(in)))
	if !ok || got != 24190324*1024 {
		t.Fatalf("%v, %v", got, ok)
	}
	if _, ok := parseMeminfo(bufio.NewScanner(strings.NewReader("MemTotal: 1 kB\n"))); ok {
		t.Fatal("no MemAvailable line must be unknown")
	}
	if avail, ok := Available(); ok && avail <= 0 {
		t.Fatalf("this machine has %v bytes available", avail)
	}
}

// LimitHeap sets a limit below the available memory, and leaves one that
// GOMEMLIMIT set alone.
func TestLimitHeap(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOMEMLIMIT", "")
	avail, ok := Available()
	if !ok {
		t.Skip("no /proc/meminfo")
	}
	limit := LimitHeap()
	if limit <= 0 || limit > avail || float64(debug.SetMemoryLimit(-1)) != math.Trunc(limit) {
		t.Errorf("limit %v with %v available; the runtime has %d", limit, avail, debug.SetMemoryLimit(-1))
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	if got := LimitHeap(); got != 0 {
		t.Errorf("with GOMEMLIMIT set, LimitHeap set %v", got)
	}
}
