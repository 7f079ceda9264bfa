//go:build mpi

package mpi

/*
#cgo pkg-config: ompi-c
#include <stdlib.h>
#include <mpi.h>

// Open MPI's MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM and friends are macros over
// addresses of globals, which cgo cannot use directly: these wrappers hide
// them.
static int lily_init(int *provided) {
	int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, provided);
	if (rc != MPI_SUCCESS) return rc;
	return MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}
static int lily_funneled(void) { return MPI_THREAD_FUNNELED; }
static int lily_rank(int *r) { return MPI_Comm_rank(MPI_COMM_WORLD, r); }
static int lily_size(int *s) { return MPI_Comm_size(MPI_COMM_WORLD, s); }
static int lily_allreduce_sum(void *buf, int n, int f64) {
	return MPI_Allreduce(MPI_IN_PLACE, buf, n, f64 ? MPI_DOUBLE : MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}
static int lily_bcast(void *buf, int n, int f64, int root) {
	return MPI_Bcast(buf, n, f64 ? MPI_DOUBLE : MPI_FLOAT, root, MPI_COMM_WORLD);
}
static int lily_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }
static int lily_abort(int code) { return MPI_Abort(MPI_COMM_WORLD, code); }
static int lily_finalize(void) { return MPI_Finalize(); }
static int lily_error_class(int code) {
	int cls = code;
	MPI_Error_class(code, &cls);
	return cls;
}
static void lily_error_string(int code, char *buf, int *n) {
	if (MPI_Error_string(code, buf, n) != MPI_SUCCESS) *n = 0;
}
static int lily_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"github.com/pkg/errors"
)

// Enabled reports whether the package was built with the mpi tag, i.e.
// whether a World can have more than one process.
const Enabled = true

// maxCount is the largest number of elements passed to one MPI call (MPI
// counts are C ints); longer buffers are sent in pieces. Tests lower it.
var maxCount = 1 << 30

// World is the set of processes of one job: MPI_COMM_WORLD.
type World struct {
	rank, size int
	// calls carries work to the goroutine that owns the MPI thread.
	calls chan func()
	// mu is held while a call is in flight: MPI calls are serialised.
	mu        sync.Mutex
	finalized bool
}

var (
	worldMu sync.Mutex
	world   *World
	initErr error
)

// Init starts MPI once per process (MPI_Init_thread with
// MPI_THREAD_FUNNELED on a dedicated OS thread) and returns the World; later
// calls return the same World, or the first call's error. Under mpirun every
// process must call it.
func Init() (*World, error) {
	worldMu.Lock()
	defer worldMu.Unlock()
	if world != nil || initErr != nil {
		return world, initErr
	}
	// Go has installed its signal handlers already, and Open MPI keeps
	// handlers it finds; the empty list also stops it from trying.
	if _, set := os.LookupEnv("OMPI_MCA_opal_signal"); !set {
		if err := os.Setenv("OMPI_MCA_opal_signal", ""); err != nil {
			initErr = errors.Wrap(err, "mpi.Init: setting OMPI_MCA_opal_signal")
			return nil, initErr
		}
	}
	w := &World{calls: make(chan func())}
	started := make(chan error)
	go w.serve(started)
	if err := <-started; err != nil {
		initErr = errors.Wrap(err, "mpi.Init")
		return nil, initErr
	}
	world = w
	return w, nil
}

// serve runs on its own OS thread for the life of the process: it
// initialises MPI and then makes every MPI call the World's methods send it.
func (w *World) serve(started chan<- error) {
	runtime.LockOSThread() // never unlocked: this thread is MPI's main thread
	var provided C.int
	if rc := C.lily_init(&provided); rc != C.MPI_SUCCESS {
		started <- mpiError("MPI_Init_thread", rc)
		return
	}
	if provided < C.lily_funneled() {
		started <- errors.Errorf("this MPI library provides thread level %d, below MPI_THREAD_FUNNELED (%d), which Go programs need; use an Open MPI built with thread support", int(provided), int(C.lily_funneled()))
		return
	}
	var rank, size C.int
	if rc := C.lily_rank(&rank); rc != C.MPI_SUCCESS {
		started <- mpiError("MPI_Comm_rank", rc)
		return
	}
	if rc := C.lily_size(&size); rc != C.MPI_SUCCESS {
		started <- mpiError("MPI_Comm_size", rc)
		return
	}
	w.rank, w.size = int(rank), int(size)
	started <- nil
	for f := range w.calls {
		f()
	}
}

// do runs f on the MPI thread and turns its return code into an error that
// names op.
func (w *World) do(op string, f func() C.int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.finalized {
		return errors.Wrap(errFinalized, "mpi."+op)
	}
	done := make(chan C.int)
	w.calls <- func() { done <- f() }
	if rc := <-done; rc != C.MPI_SUCCESS {
		return errors.Wrap(mpiError(op, rc), fmt.Sprintf("rank %d of %d", w.rank, w.size))
	}
	return nil
}

// mpiError maps an MPI return code to an error carrying MPI's error class
// and message.
func mpiError(call string, rc C.int) error {
	buf := make([]C.char, int(C.lily_max_error_string()))
	n := C.int(0)
	C.lily_error_string(rc, &buf[0], &n)
	return errors.Errorf("%s failed with MPI error %d (class %d): %s; MPI's state is now undefined, so stop every process with World.Abort",
		call, int(rc), int(C.lily_error_class(rc)), C.GoStringN(&buf[0], n))
}

// Rank is this process's number in the world, from 0 to Size()-1.
func (w *World) Rank() int { return w.rank }

// Size is the number of processes in the world.
func (w *World) Size() int { return w.size }

// pieces calls f on consecutive pieces of at most maxCount of n elements
// (one empty piece when n is 0, so that every process still takes part);
// the boundaries depend on n only, so every process makes the same calls.
func pieces(n int, f func(off, count int) C.int) C.int {
	for off := 0; ; {
		count := min(maxCount, n-off)
		if rc := f(off, count); rc != C.MPI_SUCCESS {
			return rc
		}
		if off += count; off >= n {
			return C.MPI_SUCCESS
		}
	}
}

// AllreduceSumFloat32 replaces buf, in every process, by the element-wise
// sum of buf over all processes (MPI_Allreduce, MPI_SUM). Every process must
// pass a buffer of the same length.
func (w *World) AllreduceSumFloat32(buf []float32) error {
	return allreduceSum(w, "AllreduceSumFloat32", buf)
}

// AllreduceSumFloat64 replaces buf, in every process, by the element-wise
// sum of buf over all processes (MPI_Allreduce, MPI_SUM). Every process must
// pass a buffer of the same length.
func (w *World) AllreduceSumFloat64(buf []float64) error {
	return allreduceSum(w, "AllreduceSumFloat64", buf)
}

// BroadcastFloat32 copies root's buf into every other process's buf
// (MPI_Bcast). Every process must pass a buffer of the same length and the
// same root.
func (w *World) BroadcastFloat32(buf []float32, root int) error {
	if err := checkRoot("BroadcastFloat32", root, w.size); err != nil {
		return err
	}
	return broadcast(w, "BroadcastFloat32", buf, root)
}

// BroadcastFloat64 copies root's buf into every other process's buf
// (MPI_Bcast). Every process must pass a buffer of the same length and the
// same root.
func (w *World) BroadcastFloat64(buf []float64, root int) error {
	if err := checkRoot("BroadcastFloat64", root, w.size); err != nil {
		return err
	}
	return broadcast(w, "BroadcastFloat64", buf, root)
}

// allreduceSum is MPI_Allreduce(MPI_IN_PLACE, MPI_SUM) of buf in pieces.
func allreduceSum[T float32 | float64](w *World, op string, buf []T) error {
	f64 := isFloat64(buf)
	return w.do(op, func() C.int {
		return pieces(len(buf), func(off, n int) C.int {
			return C.lily_allreduce_sum(ptr(buf, off), C.int(n), f64)
		})
	})
}

// broadcast is MPI_Bcast of buf from root in pieces; root is not checked.
func broadcast[T float32 | float64](w *World, op string, buf []T, root int) error {
	f64 := isFloat64(buf)
	return w.do(op, func() C.int {
		return pieces(len(buf), func(off, n int) C.int {
			return C.lily_bcast(ptr(buf, off), C.int(n), f64, C.int(root))
		})
	})
}

// isFloat64 is 1 for a float64 buffer and 0 for a float32 one, as the C
// wrappers take it.
func isFloat64[T float32 | float64](buf []T) C.int {
	var zero T
	if unsafe.Sizeof(zero) == 8 {
		return 1
	}
	return 0
}

// ptr returns the address of buf[off], or nil for an empty buffer.
func ptr[T float32 | float64](buf []T, off int) unsafe.Pointer {
	if off >= len(buf) {
		return nil
	}
	return unsafe.Pointer(&buf[off])
}

// Barrier returns when every process has called it (MPI_Barrier).
func (w *World) Barrier() error {
	return w.do("Barrier", func() C.int { return C.lily_barrier() })
}

// Abort ends every process of the job with exit status code (MPI_Abort)
// after printing why on standard error; use it, not Finalize, when this
// process fails, so that no other process waits for it for ever. It does not
// return. If another goroutine's MPI call is in flight (it may be waiting
// for the failed process), this process exits with code instead, and the
// launcher ends the others because it exited without Finalize.
func (w *World) Abort(code int, why error) {
	fmt.Fprintf(os.Stderr, "mpi.Abort: rank %d of %d stops the job with status %d: %v\n", w.rank, w.size, code, why)
	if w.mu.TryLock() {
		if !w.finalized {
			done := make(chan struct{})
			w.calls <- func() { C.lily_abort(C.int(code)); close(done) }
			<-done
		}
		w.mu.Unlock()
	}
	os.Exit(code)
}

// Finalize ends the use of MPI in this process (MPI_Finalize) after every
// process has called it; every later call returns an error.
func (w *World) Finalize() error {
	err := w.do("Finalize", func() C.int { return C.lily_finalize() })
	w.mu.Lock()
	w.finalized = true
	w.mu.Unlock()
	return err
}
