//go:build mpi

package main

import (
	"path/filepath"
	"testing"

	"github.com/lilygo/lily/internal/mpitest"
	"github.com/lilygo/lily/internal/resumetest"
	"github.com/lilygo/lily/lilyop"
)

// Two MPI ranks, each training on its half of every global batch, write
// exactly what one process writes that accumulates the same two halves
// (-grad_accum 2): losses, evaluations (split across the ranks), adapter
// and plots, bit for bit. Both runs are the command built with the mpi tag
// under mpirun.
func TestMPIRanksAreGradAccum(t *testing.T) {
	data := sharedData(t)
	tmp := t.TempDir()
	bin := mpitest.BuildCommand(t, ".", lilyop.BLAS)
	args := func(out string, extra ...string) []string {
		a := append([]string{"finetune", "-adapter", "lily", "-out", out}, tinyArgs(data)...)
		return append(append(a, "-max_steps", "5", "-eval_every", "2", "-batch_size", "4"), extra...)
	}
	one := filepath.Join(tmp, "one")
	two := filepath.Join(tmp, "two")
	mpitest.RunCommand(t, 1, bin, args(one, "-grad_accum", "2")...)
	mpitest.RunCommand(t, 2, bin, args(two)...)
	if res := readResult(t, two); res.Ranks != 2 || res.Steps != 5 {
		t.Fatalf("the two-rank run reports %d ranks and %d steps", res.Ranks, res.Steps)
	}
	resumetest.SameOutputs(t, one, two, append(resumetest.Timings, "grad_accum", "mpi_ranks")...)
}
