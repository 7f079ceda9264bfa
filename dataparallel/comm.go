package dataparallel

// Comm is the collective communication that data-parallel training needs.
// *mpi.World implements it; every rank must make the same calls, with
// buffers of the same length, in the same order.
type Comm interface {
	// Rank is this process's number, from 0 to Size()-1.
	Rank() int
	// Size is the number of processes.
	Size() int
	// AllreduceSumFloat32 replaces buf by its element-wise sum over all ranks.
	AllreduceSumFloat32(buf []float32) error
	// AllreduceSumFloat64 replaces buf by its element-wise sum over all ranks.
	AllreduceSumFloat64(buf []float64) error
	// BroadcastFloat32 copies root's buf into every other rank's buf.
	BroadcastFloat32(buf []float32, root int) error
	// BroadcastFloat64 copies root's buf into every other rank's buf.
	BroadcastFloat64(buf []float64, root int) error
}
