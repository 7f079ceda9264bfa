//go:build mpi

package mpi

// SetMaxCount lowers the piece size of one MPI call for a test and returns
// the function that restores it.
func SetMaxCount(n int) (restore func()) {
	old := maxCount
	maxCount = n
	return func() { maxCount = old }
}

// BroadcastUnchecked is BroadcastFloat64 without the root check, so that a
// test can make MPI itself report an error.
func (w *World) BroadcastUnchecked(buf []float64, root int) error {
	return broadcast(w, "BroadcastFloat64", buf, root)
}
