// Package memcheck estimates, before a run starts, whether it fits in this
// machine's memory, so that a run too large for it is refused with the
// sizes ("needs about 310 GiB, this machine has 22 GiB available") instead
// of dying in an allocation mid-way. The commands list the parts of their
// run (weights, adapter with its gradients and optimiser state, the
// activations of the largest batch); the estimate is a lower bound, so a
// refusal is certain and a pass is not a promise.
package memcheck

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"

	"github.com/pkg/errors"
)

// GiB is 2³⁰ bytes.
const GiB = 1 << 30

// Part is one item of an estimate.
type Part struct {
	What  string
	Bytes float64
}

// Need is the memory a run needs, part by part. Sizes are float64 so that
// absurd settings add up without overflowing.
type Need []Part

// Add appends a part of count elements of bytesPer bytes each.
func (n *Need) Add(what string, count float64, bytesPer float64) {
	*n = append(*n, Part{What: what, Bytes: count * bytesPer})
}

// Total is the sum of the parts.
func (n Need) Total() float64 {
	t := 0.0
	for _, p := range n {
		t += p.Bytes
	}
	return t
}

// Fits returns an error when the total exceeds avail bytes, naming the
// largest parts so that the user sees which setting to lower.
func (n Need) Fits(avail float64) error {
	total := n.Total()
	if !(total > avail) {
		return nil
	}
	parts := append(Need(nil), n...)
	sort.SliceStable(parts, func(i, j int) bool { return parts[i].Bytes > parts[j].Bytes })
	var big []string
	for _, p := range parts {
		if p.Bytes >= total/20 {
			big = append(big, fmt.Sprintf("%s %s", p.What, Format(p.Bytes)))
		}
	}
	return errors.Errorf("this run needs about %s (%s), this machine has %s available; use smaller settings",
		Format(total), strings.Join(big, ", "), Format(avail))
}

// Check is Fits against the memory available now (Available); where that
// is unknown it checks nothing.
func (n Need) Check() error {
	avail, ok := Available()
	if !ok {
		return nil
	}
	return n.Fits(avail)
}

// Format writes a byte count in GiB, or MiB below 1 GiB.
func Format(b float64) string {
	switch {
	case math.IsInf(b, 0) || b >= 1e6*GiB:
		return fmt.Sprintf("%.3g GiB", b/GiB)
	case b >= GiB:
		return fmt.Sprintf("%.1f GiB", b/GiB)
	}
	return fmt.Sprintf("%.0f MiB", b/(1<<20))
}

// Available returns the memory available to a new process on this machine
// (MemAvailable of /proc/meminfo, in bytes), and false where it is unknown.
func Available() (float64, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	return parseMeminfo(bufio.NewScanner(f))
}

// parseMeminfo finds MemAvailable in /proc/meminfo's lines.
func parseMeminfo(sc *bufio.Scanner) (float64, bool) {
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[0] == "MemAvailable:" && fields[2] == "kB" {
			kb, err := strconv.ParseFloat(fields[1], 64)
			return kb * 1024, err == nil
		}
	}
	return 0, false
}

// LimitHeap sets the Go runtime's soft memory limit
// (runtime/debug.SetMemoryLimit) to nine tenths of the memory available now,
// unless the GOMEMLIMIT environment variable already set one, and returns
// the limit it set (0 when it set none). Without a limit the garbage
// collector lets the heap grow to twice what is live before it collects,
// so a run whose live data fits (a model's weights and its activations)
// would still be killed for the garbage on top; with it, the collector runs
// more often as the heap nears the limit.
func LimitHeap() float64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	avail, ok := Available()
	if !ok {
		return 0
	}
	limit := 0.9 * avail
	debug.SetMemoryLimit(int64(limit))
	return limit
}
