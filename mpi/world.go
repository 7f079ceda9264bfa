package mpi

import (
	"github.com/pkg/errors"
)

// errFinalized is returned by every call on a World after Finalize.
var errFinalized = errors.New("the MPI world was finalized; no MPI call is possible after Finalize")

// checkRoot reports whether root names a process of a world of size
// processes.
func checkRoot(op string, root, size int) error {
	if root < 0 || root >= size {
		return errors.Errorf("mpi.%s: root %d is not a rank of this world of %d processes; use a rank in [0, %d)", op, root, size, size)
	}
	return nil
}
