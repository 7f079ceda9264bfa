package dataparallel_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"

	"github.com/lilygo/lily/dataparallel"
	"github.com/lilygo/lily/gorgoniafix"
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

const (
	tinyWidth    = 8
	tinyExamples = 16
)

// tiny is a small model for the data-parallel tests: two frozen linears
// adapted by Lily (one shared A, two shared B's, batch routing), a tanh
// between them and a trainable head, with a squared-error loss; one graph
// per batch size, all bound to one store.
type tiny struct {
	store  *layers.Store
	lily   *layers.Lily
	sites  []layers.Site
	opt    *gorgoniafix.AdamW
	graphs map[int]*tinyGraph
	xs, ys [][]float64
}

// tinyGraph is the training graph of one batch size.
type tinyGraph struct {
	g          *layers.Graph
	x, y, loss *G.Node
	vm         G.VM
}

// newTiny builds the model and its data set from seed, in dtype dt.
func newTiny(dt tensor.Dtype, seed uint64) (*tiny, error) {
	rng := rand.New(rand.NewPCG(seed, 7))
	store, err := layers.NewStore(dt)
	if err != nil {
		return nil, err
	}
	m := &tiny{store: store, graphs: map[int]*tinyGraph{},
		opt: gorgoniafix.NewAdamW(gorgoniafix.WithLearnRate(0.01))}
	for l := range 2 {
		path := fmt.Sprintf("layers.%d.proj", l)
		w, err := store.New(layers.ParamSpec{Name: path + ".weight", Shape: tensor.Shape{tinyWidth, tinyWidth}, Init: layers.KaimingUniform(tinyWidth)}, false, rng)
		if err != nil {
			return nil, err
		}
		m.sites = append(m.sites, layers.Site{Layer: l, Target: "proj", Path: path, DIn: tinyWidth, DOut: tinyWidth, Weight: w.Name})
	}
	if m.lily, err = layers.NewLily(layers.LilyConfig{R: 3, StrideA: 2, NumB: 2, Scaling: 0.5, NonZeroB: true, TargetModules: []string{"proj"}}); err != nil {
		return nil, err
	}
	if err := layers.Attach(store, m.lily, m.sites, rng); err != nil {
		return nil, err
	}
	if _, err := store.New(layers.ParamSpec{Name: "head.weight", Shape: tensor.Shape{tinyWidth, 2}, Init: layers.KaimingUniform(tinyWidth)}, true, rng); err != nil {
		return nil, err
	}
	for range tinyExamples {
		x, y := make([]float64, tinyWidth), make([]float64, 2)
		for i := range x {
			x[i] = rng.NormFloat64()
		}
		y[0], y[1] = x[0]-x[1], x[2]*x[3]
		m.xs, m.ys = append(m.xs, x), append(m.ys, y)
	}
	return m, nil
}

// buildMu serialises graph construction across the in-process ranks of
// TestDataParallelStepMatchesAccumulation: Gorgonia's Grad caches hash codes
// in package-level constant nodes that every graph shares, a data race when
// two goroutines build graphs at once (running them concurrently is safe).
var buildMu sync.Mutex

// graph returns the training graph for batch size n, building it on first
// use.
func (m *tiny) graph(n int) (*tinyGraph, error) {
	if tg, ok := m.graphs[n]; ok {
		return tg, nil
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	g := m.store.NewGraph(true)
	tg := &tinyGraph{g: g, x: g.Input("x", n, tinyWidth), y: g.Input("y", n, 2)}
	h, err := layers.Linear(g, m.lily, m.sites[0], tg.x)
	if err != nil {
		return nil, err
	}
	if h, err = G.Tanh(h); err != nil {
		return nil, err
	}
	if h, err = layers.Linear(g, m.lily, m.sites[1], h); err != nil {
		return nil, err
	}
	head, err := g.Param("head.weight")
	if err != nil {
		return nil, err
	}
	out, err := G.Mul(h, head)
	if err != nil {
		return nil, err
	}
	diff, err := G.Sub(out, tg.y)
	if err != nil {
		return nil, err
	}
	sq, err := G.Square(diff)
	if err != nil {
		return nil, err
	}
	if tg.loss, err = G.Mean(sq); err != nil {
		return nil, err
	}
	if tg.vm, err = g.Machine(tg.loss); err != nil {
		return nil, err
	}
	m.graphs[n] = tg
	return tg, nil
}

// run runs forward and backward on the examples idx and returns the loss and
// the graph, whose Learnables then hold the gradients.
func (m *tiny) run(idx []int) (float64, *layers.Graph, error) {
	tg, err := m.graph(len(idx))
	if err != nil {
		return 0, nil, err
	}
	var xs, ys []float64
	for _, i := range idx {
		xs, ys = append(xs, m.xs[i]...), append(ys, m.ys[i]...)
	}
	if err := G.Let(tg.x, layers.FromFloat64(m.store.Dtype(), []int{len(idx), tinyWidth}, xs)); err != nil {
		return 0, nil, err
	}
	if err := G.Let(tg.y, layers.FromFloat64(m.store.Dtype(), []int{len(idx), 2}, ys)); err != nil {
		return 0, nil, err
	}
	tg.vm.Reset()
	if err := tg.vm.RunAll(); err != nil {
		return 0, nil, err
	}
	switch v := tg.loss.Value().Data().(type) {
	case float32:
		return float64(v), tg.g, nil
	case float64:
		return v, tg.g, nil
	}
	return 0, nil, errors.Errorf("the loss is a %T", tg.loss.Value().Data())
}

// globalBatch returns step's global batch of n indices in the seeded order.
func globalBatch(step, n int) []int {
	return rand.New(rand.NewPCG(uint64(step), 99)).Perm(tinyExamples)[:n]
}

// checkDataParallelStep is run by every rank of comm (two ranks for the
// exactness it checks): it trains the tiny model for three steps of a global
// batch of 7 examples split across the ranks, one micro-batch each, and on
// rank 0 also trains a copy of the model in this process alone, accumulating
// the same micro-batches in rank order; the losses and every weight must be
// identical bit for bit, and every rank must hold rank 0's weights.
func checkDataParallelStep(comm dataparallel.Comm, dt tensor.Dtype) error {
	m, err := newTiny(dt, 1)
	if err != nil {
		return err
	}
	if comm.Rank() != 0 { // the broadcast must undo this
		for _, p := range m.store.Trainable() {
			p.Value.Zero()
		}
	}
	red, err := dataparallel.NewReducer(comm)
	if err != nil {
		return err
	}
	if err := red.BroadcastParams(m.store.Trainable(), 0); err != nil {
		return err
	}
	acc, err := dataparallel.NewAccumulator(m.store.Trainable())
	if err != nil {
		return err
	}
	var ref *tiny
	var refAcc *dataparallel.Accumulator
	var refRed *dataparallel.Reducer
	if comm.Rank() == 0 {
		if ref, err = newTiny(dt, 1); err != nil {
			return err
		}
		if refAcc, err = dataparallel.NewAccumulator(ref.store.Trainable()); err != nil {
			return err
		}
		if refRed, err = dataparallel.NewReducer(dataparallel.NewLocalGroup(1)[0]); err != nil {
			return err
		}
	}
	var mismatch []string
	for step := range 3 {
		global := globalBatch(step, 7)
		share, err := red.Shard(global)
		if err != nil {
			return err
		}
		loss, g, err := m.run(share)
		if err != nil {
			return err
		}
		if err := acc.Add(g.Learnables()); err != nil {
			return err
		}
		grads := acc.Gradients()
		if err := red.MeanGradients(grads, comm.Size()); err != nil {
			return err
		}
		if err := m.opt.Step(grads); err != nil {
			return err
		}
		losses := []float64{loss}
		if err := red.SumMetrics(losses); err != nil {
			return err
		}
		if ref == nil {
			continue
		}
		micro, err := dataparallel.Split(global, comm.Size())
		if err != nil {
			return err
		}
		refLoss := 0.0
		for k, idx := range micro {
			l, g, err := ref.run(idx)
			if err != nil {
				return err
			}
			if k == 0 {
				refLoss = l
			} else {
				refLoss += l
			}
			if err := refAcc.Add(g.Learnables()); err != nil {
				return err
			}
		}
		grads = refAcc.Gradients()
		if err := refRed.MeanGradients(grads, len(micro)); err != nil {
			return err
		}
		if err := ref.opt.Step(grads); err != nil {
			return err
		}
		if math.Float64bits(losses[0]) != math.Float64bits(refLoss) {
			mismatch = append(mismatch, fmt.Sprintf("step %d: summed loss %v, one process %v", step, losses[0], refLoss))
		}
		for i, p := range m.store.Trainable() {
			a, b := layers.Float64s(p.Value), layers.Float64s(ref.store.Trainable()[i].Value)
			for j := range a {
				if math.Float64bits(a[j]) != math.Float64bits(b[j]) {
					mismatch = append(mismatch, fmt.Sprintf("step %d: %s[%d] = %v, one process %v", step, p.Name, j, a[j], b[j]))
					break
				}
			}
		}
	}
	same, err := red.Replicated(m.store.Trainable())
	if err != nil {
		return err
	}
	if !same {
		mismatch = append(mismatch, "the ranks' weights differ after training")
	}
	if len(mismatch) > 0 {
		return errors.Errorf("rank %d: data-parallel training differs from one process:\n%s", comm.Rank(), strings.Join(mismatch, "\n"))
	}
	return nil
}
