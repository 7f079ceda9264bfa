//go:build mpi

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

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
	bin := filepath.Join(tmp, "mamba")
	tags := "mpi"
	if lilyop.BLAS == "openblas" {
		tags += " openblas"
	}
	if out, err := exec.Command("go", "build", "-tags", tags, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building the command: %v\n%s", err, out)
	}
	mpirun := func(np int, args []string) {
		t.Helper()
		a := []string{"-np", strconv.Itoa(np), "--oversubscribe"}
		if os.Geteuid() == 0 {
			a = append(a, "--allow-run-as-root")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "mpirun", append(append(a, bin), args...)...).CombinedOutput(); err != nil {
			t.Fatalf("mpirun -np %d: %v\n%s", np, err, out)
		}
	}
	one := filepath.Join(tmp, "one")
	two := filepath.Join(tmp, "two")
	flags := []string{"-seeds", "1", "-methods", "lily_in,lora_in"}
	mpirun(1, tinyArgs(one, append(flags, "-grad_accum", "2")...))
	mpirun(2, tinyArgs(two, flags...))
	resumetest.SameOutputs(t, one, two, append(resumetest.Timings, "grad_accum", "mpi_ranks")...)
}
