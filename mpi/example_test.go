//go:build !mpi

// Under the mpi tag this package's tests run inside mpirun (run_mpi_test.go);
// the example runs in the default build's single-process world.

package mpi_test

import (
	"fmt"
	"os"

	"github.com/lilygo/lily/mpi"
)

// The shape of a program that runs as every process of an MPI job: start
// MPI, work (here: sum one number per process), and end with Finalize, or
// with Abort when this process fails so that no other process waits for it.
func Example() {
	world, err := mpi.Init()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buf := []float64{float64(world.Rank() + 1)}
	if err := world.AllreduceSumFloat64(buf); err != nil {
		world.Abort(1, err)
	}
	fmt.Printf("rank %d of %d: the sum of 1..%d is %v\n", world.Rank(), world.Size(), world.Size(), buf[0])
	if err := world.Finalize(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Output: rank 0 of 1: the sum of 1..1 is 1
}
