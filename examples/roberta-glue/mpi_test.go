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

// Two MPI ranks, each training on its half of every global batch, write
// exactly what one process writes that accumulates the same two halves
// (-grad_accum 2), bit for bit, with dropout on: for fine-tuning the
// losses, GLUE metrics (the dev batches split across the ranks), adapter
// and plots; for pretraining (every weight trains) the model, the log and
// the plot. A sweep runs on both ranks too. All runs are the command built with the mpi tag under mpirun.
func TestMPIRanksAreGradAccum(t *testing.T) {
	glueDir, model := fixture(t)
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "roberta-glue")
	tags := "mpi"
	if lilyop.BLAS == "openblas" {
		tags += " openblas"
	}
	build := exec.Command("go", "build", "-tags", tags, "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the command: %v\n%s", err, out)
	}
	args := func(out string, extra ...string) []string {
		a := append([]string{bin}, tinyFinetuneArgs(glueDir, model, out)...)
		return append(append(a, "-max_steps", "5", "-eval_every", "2", "-batch_size", "4"), extra...)
	}
	mpirun := func(np int, cmdArgs []string) {
		t.Helper()
		a := []string{"-np", strconv.Itoa(np), "--oversubscribe"}
		if os.Geteuid() == 0 {
			a = append(a, "--allow-run-as-root")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "mpirun", append(a, cmdArgs...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mpirun -np %d: %v\n%s", np, err, out)
		}
	}
	one := filepath.Join(tmp, "one")
	two := filepath.Join(tmp, "two")
	mpirun(1, args(one, "-grad_accum", "2"))
	mpirun(2, args(two))
	if res := readFTResult(t, two); res.Ranks != 2 || res.Steps != 5 || len(res.Evals) != 3 {
		t.Fatalf("the two-rank run reports %d ranks, %d steps and %d evaluations", res.Ranks, res.Steps, len(res.Evals))
	}
	resumetest.SameOutputs(t, one, two, append(resumetest.Timings, "grad_accum", "mpi_ranks")...)

	ptArgs := func(out string, extra ...string) []string {
		a := append([]string{bin}, tinyPretrainArgs(glueDir, out)...)
		return append(append(a, "-max_steps", "5", "-save_every", "2", "-batch_size", "4"), extra...)
	}
	one, two = filepath.Join(tmp, "pt-one"), filepath.Join(tmp, "pt-two")
	mpirun(1, ptArgs(one, "-grad_accum", "2"))
	mpirun(2, ptArgs(two))
	resumetest.SameOutputs(t, one, two, append(resumetest.Timings, "grad_accum", "mpi_ranks")...)

	// A sweep's runs train on both ranks; rank 0 writes the summary.
	sw := filepath.Join(tmp, "sweep")
	mpirun(2, []string{bin, "sweep", "-glue_dir", glueDir, "-model", model, "-tasks", "sst2", "-seeds", "1", "-max_steps", "2",
		"-batch_size", "4", "-max_len", "16", "-out", sw, "-run", "lora: -adapter lora -lora_r 2 -lora_alpha 2"})
	if res := readFTResult(t, filepath.Join(sw, "sst2", "lora-seed1")); res.Ranks != 2 || res.Steps != 2 {
		t.Errorf("the sweep's run reports %d ranks and %d steps", res.Ranks, res.Steps)
	}
	if _, err := os.Stat(filepath.Join(sw, sweepJSON)); err != nil {
		t.Error(err)
	}
}
