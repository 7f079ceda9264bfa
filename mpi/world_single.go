//go:build !mpi

package mpi

import (
	"fmt"
	"os"
	"strconv"
	"sync"

	"github.com/pkg/errors"
)

// Enabled reports whether the package was built with the mpi tag, i.e.
// whether a World can have more than one process.
const Enabled = false

// World is the set of processes of one job. Without the mpi build tag it is
// always the single current process.
type World struct {
	mu        sync.Mutex
	finalized bool
}

var (
	worldMu sync.Mutex
	world   *World
)

// launcherSizeVars are the environment variables in which MPI launchers pass
// the number of processes: Open MPI's mpirun, and PMI (MPICH's hydra,
// Slurm's srun --mpi=pmi2).
var launcherSizeVars = []string{"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}

// Init returns the World of this process. Later calls return the same World.
// It fails when a launcher started several processes, because this build
// cannot talk to them.
func Init() (*World, error) {
	for _, v := range launcherSizeVars {
		if n, err := strconv.Atoi(os.Getenv(v)); err == nil && n > 1 {
			return nil, errors.Errorf("mpi.Init: started by an MPI launcher with %s=%d processes, but this program was built without MPI; rebuild it with -tags mpi (docs/scale.md)", v, n)
		}
	}
	worldMu.Lock()
	defer worldMu.Unlock()
	if world == nil {
		world = &World{}
	}
	return world, nil
}

// Rank is this process's number in the world: always 0 here.
func (w *World) Rank() int { return 0 }

// Size is the number of processes in the world: always 1 here.
func (w *World) Size() int { return 1 }

// live returns errFinalized after Finalize.
func (w *World) live(op string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.finalized {
		return errors.Wrap(errFinalized, "mpi."+op)
	}
	return nil
}

// AllreduceSumFloat32 replaces buf by its sum over every process: with one
// process it is left as it is.
func (w *World) AllreduceSumFloat32(buf []float32) error { return w.live("AllreduceSumFloat32") }

// AllreduceSumFloat64 replaces buf by its sum over every process: with one
// process it is left as it is.
func (w *World) AllreduceSumFloat64(buf []float64) error { return w.live("AllreduceSumFloat64") }

// BroadcastFloat32 copies root's buf into every other process's buf; root
// must be 0 here.
func (w *World) BroadcastFloat32(buf []float32, root int) error {
	if err := w.live("BroadcastFloat32"); err != nil {
		return err
	}
	return checkRoot("BroadcastFloat32", root, 1)
}

// BroadcastFloat64 copies root's buf into every other process's buf; root
// must be 0 here.
func (w *World) BroadcastFloat64(buf []float64, root int) error {
	if err := w.live("BroadcastFloat64"); err != nil {
		return err
	}
	return checkRoot("BroadcastFloat64", root, 1)
}

// Barrier returns when every process has called it: at once here.
func (w *World) Barrier() error { return w.live("Barrier") }

// Abort ends the job with the exit status code after printing why on
// standard error: here, the current process. It does not return.
func (w *World) Abort(code int, why error) {
	fmt.Fprintf(os.Stderr, "mpi.Abort: rank 0 of 1 stops the job with status %d: %v\n", code, why)
	os.Exit(code)
}

// Finalize ends the use of MPI; every later call returns an error.
func (w *World) Finalize() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.finalized {
		return errors.Wrap(errFinalized, "mpi.Finalize")
	}
	w.finalized = true
	return nil
}
