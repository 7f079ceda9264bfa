// Package atomictest stops atomicfile's writes at each of their steps, as a
// killed process stops, for tests that check what such a kill leaves on
// disk: the previous version or the new one, complete, never a mix.
package atomictest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
)

// killed is the panic value that stands for a killed process.
type killed struct{}

// KillAt runs write and stops it at the k-th step (from 0) that atomicfile
// reports while it runs: nothing of write runs after that step, its
// clean-up included, as when the process is killed there. It reports
// whether write was stopped, and write's error when it ran to the end.
func KillAt(k int, write func() error) (stopped bool, err error) {
	n := 0
	atomicfile.StepHook = func(string) {
		if n == k {
			panic(killed{})
		}
		n++
	}
	defer func() {
		atomicfile.StepHook = nil
		if r := recover(); r != nil {
			if _, ok := r.(killed); !ok {
				panic(r)
			}
			stopped = true
		}
	}()
	return false, write()
}

// EveryStep kills write at every step it reaches in turn: for k = 0, 1, …
// it calls setup (which writes the previous version), KillAt(k, write) and
// check(k), until write runs to the end. It returns the number of steps
// write went through, and fails t when write returns an error.
func EveryStep(t testing.TB, setup func(), write func() error, check func(k int)) int {
	t.Helper()
	for k := 0; ; k++ {
		setup()
		stopped, err := KillAt(k, write)
		if err != nil {
			t.Fatalf("the write stopped at step %d failed on its own: %+v", k, err)
		}
		if !stopped {
			return k
		}
		check(k)
	}
}

// Versions checks a saver against kills: with version 1 saved to dir, it
// kills save(2) at every step; after each kill read (a loader that returns
// the version it finds, or an error when the files do not load or mix
// versions) must find version 1 or 2, and save(3) must then work, read back
// 3 and leave nothing else in dir's parent. It returns the number of steps
// of a save.
func Versions(t testing.TB, dir string, save func(version int) error, read func() (int, error)) int {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%+v", err)
		}
	}
	steps := EveryStep(t, func() { must(save(1)) }, func() error { return save(2) }, func(k int) {
		t.Helper()
		v, err := read()
		if err != nil || (v != 1 && v != 2) {
			t.Fatalf("killed at step %d: %s reads as version %d (%v); want the complete version 1 or 2", k, dir, v, err)
		}
		must(save(3))
		if v, err := read(); err != nil || v != 3 {
			t.Fatalf("the save after a kill at step %d reads back as version %d (%v)", k, v, err)
		}
		entries, err := os.ReadDir(filepath.Dir(dir))
		must(err)
		if len(entries) != 1 {
			t.Fatalf("the save after a kill at step %d left %d entries beside %s", k, len(entries)-1, dir)
		}
	})
	if steps < 8 {
		t.Fatalf("a save of %s went through %d steps; a folder swap has more", dir, steps)
	}
	return steps
}

// Fill sets every element of the parameters to v, so that a saved version
// can be recognised after loading (CommonValue).
func Fill(ps []*layers.Param, v float64) {
	for _, p := range ps {
		switch d := p.Value.Data().(type) {
		case []float32:
			for i := range d {
				d[i] = float32(v)
			}
		case []float64:
			for i := range d {
				d[i] = v
			}
		}
	}
}

// CommonValue returns the value every element of the parameters holds, or
// an error naming a parameter that holds another.
func CommonValue(ps []*layers.Param) (float64, error) {
	if len(ps) == 0 {
		return 0, errors.New("no parameters")
	}
	v := layers.Float64s(ps[0].Value)[0]
	for _, p := range ps {
		for _, x := range layers.Float64s(p.Value) {
			if x != v {
				return 0, errors.Errorf("%s holds %v beside %v", p.Name, x, v)
			}
		}
	}
	return v, nil
}
