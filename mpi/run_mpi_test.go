//go:build mpi

package mpi_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lilygo/lily/internal/mpitest"
	"github.com/lilygo/lily/mpi"
)

func TestMain(m *testing.M) { mpitest.Main(m) }

// testWorld is the world of a process that TestMpirun started; elsewhere the
// test is skipped (TestMpirun runs it in two processes).
func testWorld(t *testing.T) *mpi.World {
	t.Helper()
	w := mpitest.World()
	if w == nil {
		t.Skip("runs in the MPI job that TestMpirun starts")
	}
	return w
}

// rankTests run in every process of the job TestMpirun starts.
var rankTests = []string{"TestAllreduce", "TestBroadcast", "TestBarrier", "TestGoSignals", "TestEnabled", "TestPieces", "TestMPIErrorReturned"}

// TestMpirun runs rankTests in a two-process job and checks that both
// processes ran and passed every one of them.
func TestMpirun(t *testing.T) { mpitest.RunRanks(t, 2, rankTests...) }

// TestPieces sends buffers in pieces of 3 elements, so that a buffer of 10
// takes four MPI calls and an empty one still takes one.
func TestPieces(t *testing.T) {
	w := testWorld(t)
	defer mpi.SetMaxCount(3)()
	for _, n := range []int{0, 3, 10} {
		buf := make([]float64, n)
		for i := range buf {
			buf[i] = float64(i + w.Rank())
		}
		if err := w.AllreduceSumFloat64(buf); err != nil {
			t.Fatal(err)
		}
		root := w.Size() - 1
		bc := make([]float32, n)
		for i := range bc {
			bc[i] = float32(w.Rank()*n + i)
		}
		if err := w.BroadcastFloat32(bc, root); err != nil {
			t.Fatal(err)
		}
		s := w.Size()
		for i := range buf {
			if want := float64(s*i + s*(s-1)/2); buf[i] != want {
				t.Errorf("n=%d: allreduce element %d is %v, want %v", n, i, buf[i], want)
			}
			if want := float32(root*n + i); bc[i] != want {
				t.Errorf("n=%d: broadcast element %d is %v, want %v", n, i, bc[i], want)
			}
		}
	}
}

// TestMPIErrorReturned makes MPI itself fail (a broadcast from a root that
// does not exist) and checks that the failure is a Go error carrying MPI's
// message, on every rank, not a crash of the job.
func TestMPIErrorReturned(t *testing.T) {
	w := testWorld(t)
	err := w.BroadcastUnchecked(make([]float64, 2), w.Size()+3)
	t.Logf("MPI's failure as a Go error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "MPI_ERR_ROOT") || !strings.Contains(err.Error(), "Abort") {
		t.Errorf("error %v, want MPI's MPI_ERR_ROOT and advice to Abort", err)
	}
}

// TestFailingRank is run by TestFailureEndsJob: rank 1 fails while rank 0
// waits for it in an allreduce, which must not return.
func TestFailingRank(t *testing.T) {
	w := testWorld(t)
	if w.Rank() == 1 {
		time.Sleep(200 * time.Millisecond) // let rank 0 enter the allreduce
		switch mpitest.Mode() {
		case "abort":
			w.Abort(3, errors.New("a deliberate failure"))
		case "exit":
			os.Exit(4) // as a crash or panic would: no Finalize, no Abort
		}
		t.Fatalf("unknown mode %q", mpitest.Mode())
	}
	err := w.AllreduceSumFloat64(make([]float64, 4))
	t.Errorf("rank 0's allreduce returned (%v) although rank 1 never joined", err)
}

// TestFailureEndsJob checks that when one rank aborts, or exits without
// Finalize, the job ends promptly with that failure instead of leaving the
// other rank waiting in a collective call.
func TestFailureEndsJob(t *testing.T) {
	if mpitest.World() != nil {
		t.Skip("already inside the job")
	}
	for mode, code := range map[string]int{"abort": 3, "exit": 4} {
		t.Run(mode, func(t *testing.T) {
			start := time.Now()
			out, err := mpitest.Launch(t, 2, "^TestFailingRank$", mode, time.Minute)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != code {
				t.Errorf("mpirun ended with %v, want exit status %d:\n%s", err, code, out)
			}
			if strings.Contains(out, "although rank 1 never joined") {
				t.Errorf("rank 0's allreduce returned:\n%s", out)
			}
			t.Logf("the job ended %v after the start", time.Since(start).Round(time.Millisecond))
		})
	}
}
