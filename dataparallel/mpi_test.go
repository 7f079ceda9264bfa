//go:build mpi

package dataparallel_test

import (
	"testing"

	"github.com/lilygo/lily/internal/mpitest"
	"gorgonia.org/tensor"
)

func TestMain(m *testing.M) { mpitest.Main(m) }

// TestMpirun runs TestRanksDataParallel in a two-process MPI job.
func TestMpirun(t *testing.T) { mpitest.RunRanks(t, 2, "TestRanksDataParallel") }

// TestRanksDataParallel runs checkDataParallelStep in every process of the
// job TestMpirun starts: two ranks over Open MPI must train exactly as one
// process accumulating the same two micro-batches.
func TestRanksDataParallel(t *testing.T) {
	w := mpitest.World()
	if w == nil {
		t.Skip("runs in the MPI job that TestMpirun starts")
	}
	for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
		if err := checkDataParallelStep(w, dt); err != nil {
			t.Errorf("%v: %v", dt, err)
		}
	}
}
