package bench

import (
	"fmt"
	"runtime"
	"slices"
	"time"
)

// Stepper is one thing being timed: Step runs one unit of work (a training
// step, a list of GEMMs, …).
type Stepper interface {
	Step() error
}

// StepFunc adapts a function to Stepper.
type StepFunc func() error

// Step calls f.
func (f StepFunc) Step() error { return f() }

// Timing is the outcome of an interleaved comparison of A and B.
type Timing struct {
	// A and B are the individual step times, in the order they ran.
	A, B []time.Duration
	// Ratios are A/B of each round.
	Ratios []float64
	// CPUA and CPUB are the process's CPU times (user + system, every
	// thread) of the steps, and CPURatios their per-round ratios: less
	// sensitive than wall time to other processes taking the cores, blind
	// to how well a step uses several cores.
	CPUA, CPUB []time.Duration
	CPURatios  []float64
}

// CPURatio is the median of the per-round CPU-time ratios A/B.
func (t Timing) CPURatio() float64 { return median(t.CPURatios) }

// Ratio is the median of the per-round ratios A/B.
func (t Timing) Ratio() float64 { return median(t.Ratios) }

// MedA is the median time of A.
func (t Timing) MedA() time.Duration { return medianDur(t.A) }

// MedB is the median time of B.
func (t Timing) MedB() time.Duration { return medianDur(t.B) }

// Spread returns the smallest and largest per-round ratio.
func (t Timing) Spread() (lo, hi float64) {
	if len(t.Ratios) == 0 {
		return 0, 0
	}
	return slices.Min(t.Ratios), slices.Max(t.Ratios)
}

// String formats the medians and the ratio with its range.
func (t Timing) String() string {
	lo, hi := t.Spread()
	return fmt.Sprintf("A %v, B %v, A/B %.3f (rounds %d, range %.3f–%.3f; CPU time A/B %.3f)", t.MedA().Round(time.Microsecond), t.MedB().Round(time.Microsecond), t.Ratio(), len(t.Ratios), lo, hi, t.CPURatio())
}

// timeStep runs one step after a garbage collection, so that each step pays
// for the collections its own allocations cause and not for its
// predecessor's, and returns its wall and CPU time.
func timeStep(s Stepper) (wall, cpu time.Duration, err error) {
	runtime.GC()
	c0 := cpuTime()
	t0 := time.Now()
	err = s.Step()
	return time.Since(t0), cpuTime() - c0, err
}

// Interleave runs warm warm-up steps of each, then rounds rounds of one
// step of A and one of B (alternating which goes first, so neither always
// follows the other), and returns every time.
func Interleave(a, b Stepper, warm, rounds int) (Timing, error) {
	for i := 0; i < warm; i++ {
		if err := a.Step(); err != nil {
			return Timing{}, err
		}
		if err := b.Step(); err != nil {
			return Timing{}, err
		}
	}
	var t Timing
	for i := 0; i < rounds; i++ {
		first, second := a, b
		if i%2 == 1 {
			first, second = b, a
		}
		d1, c1, err := timeStep(first)
		if err != nil {
			return t, err
		}
		d2, c2, err := timeStep(second)
		if err != nil {
			return t, err
		}
		da, db, ca, cb := d1, d2, c1, c2
		if i%2 == 1 {
			da, db, ca, cb = d2, d1, c2, c1
		}
		t.A, t.B = append(t.A, da), append(t.B, db)
		t.Ratios = append(t.Ratios, float64(da)/float64(db))
		t.CPUA, t.CPUB = append(t.CPUA, ca), append(t.CPUB, cb)
		t.CPURatios = append(t.CPURatios, float64(ca)/float64(cb))
	}
	return t, nil
}

// Allocs runs s once and returns the bytes and the number of objects it
// allocated (runtime.MemStats TotalAlloc and Mallocs).
func Allocs(s Stepper) (bytes, objects uint64, err error) {
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	err = s.Step()
	runtime.ReadMemStats(&m1)
	return m1.TotalAlloc - m0.TotalAlloc, m1.Mallocs - m0.Mallocs, err
}

func median(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	s := slices.Clone(x)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianDur(x []time.Duration) time.Duration {
	f := make([]float64, len(x))
	for i, d := range x {
		f[i] = float64(d)
	}
	return time.Duration(median(f))
}
