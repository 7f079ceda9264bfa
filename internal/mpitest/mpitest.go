//go:build mpi

// Package mpitest runs a package's tests under mpirun: TestMain calls Main,
// and a test calls Launch to re-execute the test binary as the processes of
// an MPI job, in which World returns the job's World.
package mpitest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lilygo/lily/mpi"
)

// childEnv marks a test binary started by Launch; its value is the mode
// that Mode returns.
const childEnv = "LILY_MPITEST_CHILD"

var world *mpi.World

// Main is a TestMain. In a process started by Launch it initialises MPI,
// runs the tests and finalizes, or aborts the job when a test failed (so
// that no process waits for ever for a failed one); otherwise it just runs
// the tests.
func Main(m *testing.M) {
	if _, child := os.LookupEnv(childEnv); !child {
		os.Exit(m.Run())
	}
	w, err := mpi.Init()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	world = w
	if code := m.Run(); code != 0 {
		w.Abort(code, fmt.Errorf("tests failed on rank %d", w.Rank()))
	}
	if err := w.Finalize(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(0)
}

// World returns the MPI world of a process started by Launch, or nil in an
// ordinary test process.
func World() *mpi.World { return world }

// Mode returns the mode passed to Launch, in a process it started.
func Mode() string { return os.Getenv(childEnv) }

// Launch runs the tests matching pattern in np processes under mpirun (with
// --oversubscribe, and --allow-run-as-root when root), with Mode() = mode in
// each, and returns mpirun's combined output and error (nil when every
// process passed). It gives up after timeout, so a hung job fails the test
// instead of hanging it.
func Launch(t *testing.T, np int, pattern, mode string, timeout time.Duration) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Fatalf("mpirun is not installed (Debian: apt-get install openmpi-bin libopenmpi-dev): %v", err)
	}
	args := []string{"-np", strconv.Itoa(np), "--oversubscribe"}
	if os.Geteuid() == 0 {
		args = append(args, "--allow-run-as-root")
	}
	args = append(args, "-x", childEnv+"="+mode, os.Args[0], "-test.run", pattern, "-test.v")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mpirun", args...)
	// SIGTERM lets mpirun end its processes; SIGKILL would orphan them.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("mpirun %v did not finish within %v (a hang):\n%s", args, timeout, out)
	}
	return string(out), err
}

// RunRanks runs the tests named names in an MPI job of np processes and
// fails t unless the job succeeded and every process passed every one of
// them (a test that skipped or did not run fails it too).
func RunRanks(t *testing.T, np int, names ...string) {
	t.Helper()
	if World() != nil {
		t.Skip("already inside the job")
	}
	out, err := Launch(t, np, "^("+strings.Join(names, "|")+")$", "", 5*time.Minute)
	if err != nil {
		t.Fatalf("mpirun: %v\n%s", err, out)
	}
	for _, name := range names {
		if n := strings.Count(out, "--- PASS: "+name+" "); n != np {
			t.Errorf("%s passed in %d processes, want %d:\n%s", name, n, np, out)
		}
	}
}

// BuildCommand builds the command in the package folder dir (a test's
// working directory: ".") with the mpi tag, and openblas too when the test
// binary was built with it (blas is lilyop.BLAS), and returns the binary's
// path in a temporary folder of t.
func BuildCommand(t *testing.T, dir, blas string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "command")
	tags := "mpi"
	if blas == "openblas" {
		tags += " openblas"
	}
	if out, err := exec.Command("go", "build", "-tags", tags, "-o", bin, dir).CombinedOutput(); err != nil {
		t.Fatalf("building %s with -tags %q: %v\n%s", dir, tags, err, out)
	}
	return bin
}

// RunCommand runs bin with args as an MPI job of np processes (with
// --oversubscribe, and --allow-run-as-root when root) and fails t unless
// it succeeds within five minutes.
func RunCommand(t *testing.T, np int, bin string, args ...string) {
	t.Helper()
	a := []string{"-np", strconv.Itoa(np), "--oversubscribe"}
	if os.Geteuid() == 0 {
		a = append(a, "--allow-run-as-root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mpirun", append(append(a, bin), args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mpirun -np %d %s %v: %v\n%s", np, bin, args, err, out)
	}
}
