// Package dataparallel trains one model on several processes at once: every
// process (rank) holds the same parameters, computes the gradients of its
// own share of each global batch, and the ranks sum those gradients so that
// all of them take the same optimiser step. It sits on top of package layers
// and talks to the other ranks through a Comm, which *mpi.World implements
// (with the mpi build tag, Open MPI; without it, a single process).
//
// A training step of a rank:
//
//	share, _ := red.Shard(globalBatch)   // this rank's indices, in the seeded order
//	micro, _ := dataparallel.Split(share, k)
//	for _, idx := range micro {
//		// fill the graph of len(idx) examples from idx and run it
//		acc.Add(graph.Learnables())       // sum this micro-batch's gradients
//	}
//	grads := acc.Gradients()
//	red.MeanGradients(grads, k*red.Comm().Size()) // one allreduce of every gradient
//	opt.Step(grads)                               // identical on every rank
//
// (every call returns an error to check). With several optimiser groups
// (head and adapter), step each group's optimiser on the Gradients whose
// parameter belongs to it. train.Run is this loop, for every command.
//
// Before the first step, BroadcastParams copies rank 0's trainable weights to
// every rank; evaluation splits its examples the same way and sums its
// counts with SumMetrics. The Accumulator is also what gradient
// accumulation in a single process is made of: K micro-batches summed into
// one step, on one graph or on several (one per shape bucket).
//
// # Exactness
//
// Floating-point sums depend on their order. A Reducer packs every gradient
// into one buffer and allreduces it once; with two ranks, each taking one
// micro-batch, the result is g0 + g1 on both ranks, exactly what one
// process accumulating the same two micro-batches computes, so losses and
// weights stay bit-identical (tested under mpirun). With more ranks or more
// micro-batches per rank the MPI library chooses the order of the sum, and
// the results match a single process only to rounding. MPI does not
// promise every rank the same bits either (Open MPI's algorithms give them
// in practice); Replicated checks it for the price of one broadcast.
package dataparallel
