//go:build !mpi

package mpi_test

import (
	"strings"
	"testing"

	"github.com/lilygo/lily/mpi"
)

// testWorld is the single-process world of a build without MPI.
func testWorld(t *testing.T) *mpi.World {
	t.Helper()
	w, err := mpi.Init()
	if err != nil {
		t.Fatal(err)
	}
	if w.Rank() != 0 || w.Size() != 1 {
		t.Fatalf("rank %d of %d, want 0 of 1", w.Rank(), w.Size())
	}
	return w
}

// TestSingleLeavesBuffers checks that the single-process collectives leave
// their buffers exactly as they were.
func TestSingleLeavesBuffers(t *testing.T) {
	w := testWorld(t)
	b32, b64 := []float32{1.5, -2, 3e-7}, []float64{1.5, -2, 3e-300}
	if err := w.AllreduceSumFloat32(b32); err != nil {
		t.Fatal(err)
	}
	if err := w.AllreduceSumFloat64(b64); err != nil {
		t.Fatal(err)
	}
	if err := w.BroadcastFloat64(b64, 0); err != nil {
		t.Fatal(err)
	}
	if b32[2] != 3e-7 || b64[2] != 3e-300 || b32[1] != -2 || b64[0] != 1.5 {
		t.Errorf("buffers changed: %v %v", b32, b64)
	}
}

// TestInitRefusesLauncher checks that a build without MPI refuses to run as
// one of several processes started by mpirun or srun.
func TestInitRefusesLauncher(t *testing.T) {
	for _, v := range []string{"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"} {
		t.Run(v, func(t *testing.T) {
			t.Setenv(v, "4")
			_, err := mpi.Init()
			if err == nil || !strings.Contains(err.Error(), "-tags mpi") {
				t.Errorf("error %v, want one that says to rebuild with -tags mpi", err)
			}
		})
	}
	t.Setenv("OMPI_COMM_WORLD_SIZE", "1")
	if _, err := mpi.Init(); err != nil {
		t.Errorf("one process under mpirun: %v", err)
	}
}
