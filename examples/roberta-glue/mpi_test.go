//go:build mpi

package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/lilygo/lily/internal/mpitest"
	"github.com/lilygo/lily/internal/resumetest"
	"github.com/lilygo/lily/lilyop"
)

// Two MPI ranks, each training on its half of every global batch, write
// exactly what one process writes that accumulates the same two halves
// (-grad_accum 2), bit for bit, with dropout on: for fine-tuning the
// losses, GLUE metrics (the dev batches split across the ranks), adapter
// and plots; for pretraining (every weight trains) the model, the log and
// the plot. A sweep runs on both ranks too. All runs are the command built
// with the mpi tag under mpirun.
func TestMPIRanksAreGradAccum(t *testing.T) {
	glueDir, model := fixture(t)
	tmp := t.TempDir()
	bin := mpitest.BuildCommand(t, ".", lilyop.BLAS)
	args := func(out string, extra ...string) []string {
		a := tinyFinetuneArgs(glueDir, model, out)
		return append(append(a, "-max_steps", "5", "-eval_every", "2", "-batch_size", "4"), extra...)
	}
	one := filepath.Join(tmp, "one")
	two := filepath.Join(tmp, "two")
	mpitest.RunCommand(t, 1, bin, args(one, "-grad_accum", "2")...)
	mpitest.RunCommand(t, 2, bin, args(two)...)
	if res := readFTResult(t, two); res.Ranks != 2 || res.Steps != 5 || len(res.Evals) != 3 {
		t.Fatalf("the two-rank run reports %d ranks, %d steps and %d evaluations", res.Ranks, res.Steps, len(res.Evals))
	}
	resumetest.SameOutputs(t, one, two, append(resumetest.Timings, "grad_accum", "mpi_ranks")...)

	ptArgs := func(out string, extra ...string) []string {
		a := tinyPretrainArgs(glueDir, out)
		return append(append(a, "-max_steps", "5", "-save_every", "2", "-batch_size", "4"), extra...)
	}
	one, two = filepath.Join(tmp, "pt-one"), filepath.Join(tmp, "pt-two")
	mpitest.RunCommand(t, 1, bin, ptArgs(one, "-grad_accum", "2")...)
	mpitest.RunCommand(t, 2, bin, ptArgs(two)...)
	resumetest.SameOutputs(t, one, two, append(resumetest.Timings, "grad_accum", "mpi_ranks")...)

	// A sweep's runs train on both ranks; rank 0 writes the summary.
	sw := filepath.Join(tmp, "sweep")
	mpitest.RunCommand(t, 2, bin, "sweep", "-glue_dir", glueDir, "-model", model, "-tasks", "sst2", "-seeds", "1", "-max_steps", "2",
		"-batch_size", "4", "-max_len", "16", "-out", sw, "-run", "lora: -adapter lora -lora_r 2 -lora_alpha 2")
	if res := readFTResult(t, filepath.Join(sw, "sst2", "lora-seed1")); res.Ranks != 2 || res.Steps != 2 {
		t.Errorf("the sweep's run reports %d ranks and %d steps", res.Ranks, res.Steps)
	}
	if _, err := os.Stat(filepath.Join(sw, sweepJSON)); err != nil {
		t.Error(err)
	}
}
