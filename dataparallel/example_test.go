//go:build !mpi

// The examples use mpi.Init's single-process world, so they run in the
// default build only; under the mpi tag, tests start MPI under mpirun.

package dataparallel_test

import (
	"fmt"
	"log"

	"github.com/lilygo/lily/dataparallel"
	"github.com/lilygo/lily/gorgoniafix"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/mpi"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// One data-parallel training step with gradient accumulation: this rank's
// share of a global batch, cut into two micro-batches whose gradients are
// summed, averaged over every micro-batch of every rank with one allreduce,
// and one optimiser step. Run under mpirun with a build tagged mpi, every
// rank takes the same step; here the world is this process alone.
func Example() {
	world, err := mpi.Init()
	if err != nil {
		log.Fatal(err)
	}
	red, err := dataparallel.NewReducer(world)
	if err != nil {
		log.Fatal(err)
	}

	// A model with one trainable weight w and the loss w·x for an input x.
	store, _ := layers.NewStore(tensor.Float64)
	if _, err := store.New(layers.ParamSpec{Name: "w", Shape: tensor.Shape{2}}, true, nil); err != nil {
		log.Fatal(err)
	}
	if err := red.BroadcastParams(store.Trainable(), 0); err != nil { // every rank starts from rank 0's weights
		log.Fatal(err)
	}
	g := store.NewGraph(true)
	x := g.Input("x", 2)
	w, _ := g.Param("w")
	vm, err := g.Machine(G.Must(G.Sum(G.Must(G.HadamardProd(w, x)))))
	if err != nil {
		log.Fatal(err)
	}
	acc, _ := dataparallel.NewAccumulator(store.Trainable())
	data := [][]float64{{1, 2}, {3, 4}, {5, 6}, {7, 8}}

	share, _ := red.Shard([]int{3, 0, 2, 1}) // the global batch, in the seeded order
	micro, _ := dataparallel.Split(share, 2)
	for _, idx := range micro {
		for _, i := range idx { // one example per run here; a real graph takes the whole micro-batch
			copy(x.Value().Data().([]float64), data[i])
			vm.Reset()
			if err := vm.RunAll(); err != nil {
				log.Fatal(err)
			}
			if err := acc.Add(g.Learnables()); err != nil {
				log.Fatal(err)
			}
		}
	}
	fmt.Println("rank", world.Rank(), "of", world.Size(), "share", share, "micro-batches", micro)
	grads := acc.Gradients()
	if err := red.MeanGradients(grads, len(micro)*world.Size()); err != nil {
		log.Fatal(err)
	}
	gv, _ := grads[0].Grad()
	fmt.Println("gradient of w:", gv)
	opt := gorgoniafix.NewAdamW(gorgoniafix.WithLearnRate(0.1), gorgoniafix.WithWeightDecay(0))
	if err := opt.Step(grads); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("w after one step: %.3f\n", store.Trainable()[0].Value.Data())
	// Output:
	// rank 0 of 1 share [3 0 2 1] micro-batches [[3 0] [2 1]]
	// gradient of w: [ 8  10]
	// w after one step: [-0.100 -0.100]
}

// Evaluation split across ranks: each rank scores its share, and the counts
// are summed so that every rank reports the metric of all examples.
func ExampleReducer_SumMetrics() {
	world, err := mpi.Init()
	if err != nil {
		log.Fatal(err)
	}
	red, _ := dataparallel.NewReducer(world)
	gold := []int{1, 0, 1, 1, 0}
	pred := []int{1, 1, 1, 0, 0}
	all := []int{0, 1, 2, 3, 4}
	mine, _ := red.Shard(all)
	counts := []float64{0, 0} // correct, seen
	for _, i := range mine {
		if pred[i] == gold[i] {
			counts[0]++
		}
		counts[1]++
	}
	if err := red.SumMetrics(counts); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("accuracy %.0f/%.0f\n", counts[0], counts[1])
	// Output: accuracy 3/5
}
