//go:build mpi

package main

import (
	"path/filepath"
	"testing"

	"github.com/lilygo/lily/internal/mpitest"
	"github.com/lilygo/lily/internal/resumetest"
	"github.com/lilygo/lily/lilyop"
)

// Two MPI ranks, each training on its half of every global batch of
// pretraining and adaptation, write exactly what one process writes that
// accumulates the same two halves (-grad_accum 2): the pretrained model,
// adapters, results (but timings) and plots, bit for bit. Both runs are the
// command built with the mpi tag under mpirun.
func TestMPIRanksAreGradAccum(t *testing.T) {
	tmp := t.TempDir()
	bin := mpitest.BuildCommand(t, ".", lilyop.BLAS)
	one := filepath.Join(tmp, "one")
	two := filepath.Join(tmp, "two")
	flags := []string{"-seeds", "1", "-methods", "lily_in,lora_in"}
	mpitest.RunCommand(t, 1, bin, tinyArgs(one, append(flags, "-grad_accum", "2")...)...)
	mpitest.RunCommand(t, 2, bin, tinyArgs(two, flags...)...)
	if res := readResults(t, two); res.Ranks != 2 {
		t.Fatalf("the two-rank run reports %d ranks", res.Ranks)
	}
	resumetest.SameOutputs(t, one, two, append(resumetest.Timings, "grad_accum", "mpi_ranks")...)
}
