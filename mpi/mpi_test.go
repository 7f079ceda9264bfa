package mpi_test

import (
	"strings"
	"testing"

	"github.com/lilygo/lily/mpi"
)

// TestAllreduce checks the sums exactly, in both precisions, for empty,
// short and longer buffers: rank r contributes i·(r+1) + 0.25 at index i.
func TestAllreduce(t *testing.T) {
	w := testWorld(t)
	s := float64(w.Size())
	for _, n := range []int{0, 1, 7, 1000} {
		b32, b64 := make([]float32, n), make([]float64, n)
		for i := range n {
			v := float64(i*(w.Rank()+1)) + 0.25
			b32[i], b64[i] = float32(v), v
		}
		if err := w.AllreduceSumFloat32(b32); err != nil {
			t.Fatal(err)
		}
		if err := w.AllreduceSumFloat64(b64); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			want := float64(i)*s*(s+1)/2 + 0.25*s
			if float64(b32[i]) != want || b64[i] != want {
				t.Fatalf("n=%d element %d: float32 %v, float64 %v, want %v", n, i, b32[i], b64[i], want)
			}
		}
	}
}

// TestBroadcast broadcasts from every rank in turn and checks that every
// rank then holds the root's values exactly; a root outside the world is an
// error on every rank.
func TestBroadcast(t *testing.T) {
	w := testWorld(t)
	for root := range w.Size() {
		b32, b64 := make([]float32, 5), make([]float64, 5)
		for i := range b32 {
			b32[i], b64[i] = float32(100*w.Rank()+i)+0.5, float64(100*w.Rank()+i)+0.5
		}
		if err := w.BroadcastFloat32(b32, root); err != nil {
			t.Fatal(err)
		}
		if err := w.BroadcastFloat64(b64, root); err != nil {
			t.Fatal(err)
		}
		for i := range b32 {
			want := float64(100*root+i) + 0.5
			if float64(b32[i]) != want || b64[i] != want {
				t.Fatalf("root %d element %d: float32 %v, float64 %v, want %v", root, i, b32[i], b64[i], want)
			}
		}
	}
	for _, root := range []int{-1, w.Size()} {
		err := w.BroadcastFloat64(make([]float64, 3), root)
		if err == nil || !strings.Contains(err.Error(), "not a rank") {
			t.Errorf("root %d: error %v, want one saying it is not a rank", root, err)
		}
	}
}

// TestBarrier checks that a barrier returns on every rank.
func TestBarrier(t *testing.T) {
	if err := testWorld(t).Barrier(); err != nil {
		t.Fatal(err)
	}
}

// TestGoSignals checks that after Init a nil dereference is still Go's
// recoverable panic, i.e. that MPI did not take SIGSEGV from the runtime.
func TestGoSignals(t *testing.T) {
	testWorld(t)
	var p *[4]int
	defer func() {
		r := recover()
		if err, ok := r.(error); !ok || !strings.Contains(err.Error(), "nil pointer") {
			t.Errorf("recovered %v, want Go's nil pointer panic", r)
		}
	}()
	_ = p[1]
}

// TestEnabled checks the build constant against the world's behaviour.
func TestEnabled(t *testing.T) {
	w := testWorld(t)
	if !mpi.Enabled && w.Size() != 1 {
		t.Errorf("a build without MPI has a world of %d processes", w.Size())
	}
	if w.Rank() < 0 || w.Rank() >= w.Size() {
		t.Errorf("rank %d of %d", w.Rank(), w.Size())
	}
}
