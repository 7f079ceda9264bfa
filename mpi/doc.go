// Package mpi is the few MPI calls that data-parallel training needs: start
// and stop (Init, Finalize, Abort), who am I (Rank, Size), sum a buffer over
// every process (AllreduceSumFloat32, AllreduceSumFloat64), copy a buffer
// from one process to all (BroadcastFloat32, BroadcastFloat64) and wait for
// all (Barrier).
//
// Built with the tag mpi, it calls Open MPI through cgo (Debian:
// apt-get install openmpi-bin libopenmpi-dev; the compiler flags come from
// pkg-config's ompi-c) and the program runs under mpirun, srun or the
// Kubeflow MPI Operator (docs/scale.md). Without the tag the package is pure
// Go and a World is a single process: rank 0 of 1, an allreduce leaves its
// buffer as it is and a broadcast from rank 0 does nothing, so a caller
// compiles and runs unchanged either way. A program built without the tag
// but started by mpirun with several processes gets an error from Init
// rather than N copies that silently train alone.
//
// # Threads
//
// Go moves goroutines between operating-system threads, and MPI wants to be
// called from known threads. Init starts one goroutine locked to its own
// OS thread, which calls MPI_Init_thread asking for MPI_THREAD_FUNNELED and
// then makes every other MPI call of the process; the World's methods hand
// their work to it and wait. Any goroutine may therefore use a World, and
// calls from several goroutines are serialised. Collective calls must still
// be made in the same order by every process, as MPI requires.
//
// # Errors and failures
//
// MPI_COMM_WORLD is switched to MPI_ERRORS_RETURN, so a failing MPI call
// becomes a Go error carrying MPI's error class and message, never a crash;
// after such an error MPI's state is undefined and the program should call
// Abort. When a process fails, it must not leave the others waiting in a
// collective call for ever: call Abort (MPI_Abort ends every process of the
// job), not Finalize (which waits for the others). A process that exits or
// panics without Finalize is also noticed by mpirun, which then ends the
// whole job. The tests check both.
//
// # Signals
//
// Go installs its signal handlers before Init runs, and Open MPI does not
// replace handlers that are already installed; Init also sets Open MPI's
// opal_signal parameter to the empty list (unless the user set it), so Go
// keeps turning a nil dereference into a panic and os/signal keeps working.
// Open MPI's mpirun turns Ctrl-C into SIGTERM for every process and kills
// them one second later (docs/scale.md), so outputs must be written
// atomically. A program that stops gracefully on a signal must agree on
// the stop with the other processes (package dataparallel's AnyRank) before
// it skips a collective call.
package mpi
