package train_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lilygo/lily/dataparallel"
	"github.com/lilygo/lily/gorgoniafix"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

const (
	toyIn, toyOut, toyExamples = 4, 2, 40
)

// toy is a linear regression with a bias, trained by train.Run: a small
// Task whose Forward also draws from its micro-batch's generator (an input
// mask, like dropout), so that resuming must reproduce those draws.
type toy struct {
	store  *layers.Store
	graphs map[int]*toyGraph
	xs, ys [][]float64
	order  *rand.Rand // the data order, drawn as the steps come
	global int
	evals  []int // every Evaluated step
}

// toyGraph is the training graph of one micro-batch size.
type toyGraph struct {
	g          *layers.Graph
	x, y, loss *G.Node
	vm         G.VM
}

// buildMu serialises graph building of in-process ranks: Gorgonia's Grad
// is not safe for concurrent use across graphs.
var buildMu sync.Mutex

func newToy(t *testing.T, global int) *toy {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 6))
	s, err := layers.NewStore(tensor.Float64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.New(layers.ParamSpec{Name: "w", Shape: tensor.Shape{toyIn, toyOut}, Init: layers.Normal(0.5)}, true, rng); err != nil {
		t.Fatal(err)
	}
	if _, err := s.New(layers.ParamSpec{Name: "b", Shape: tensor.Shape{toyOut}, Init: layers.Constant(0.1)}, true, rng); err != nil {
		t.Fatal(err)
	}
	m := &toy{store: s, graphs: map[int]*toyGraph{}, order: rand.New(rand.NewPCG(9, 9)), global: global}
	for range toyExamples {
		x := make([]float64, toyIn)
		for i := range x {
			x[i] = rng.NormFloat64()
		}
		m.xs = append(m.xs, x)
		m.ys = append(m.ys, []float64{x[0] - 2*x[1] + 0.3, x[2] * x[3]})
	}
	return m
}

func (m *toy) graph(n int) (*toyGraph, error) {
	if tg, ok := m.graphs[n]; ok {
		return tg, nil
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	g := m.store.NewGraph(true)
	tg := &toyGraph{g: g, x: g.Input("x", n, toyIn), y: g.Input("y", n, toyOut)}
	w, err := g.Param("w")
	if err != nil {
		return nil, err
	}
	b, err := g.Param("b")
	if err != nil {
		return nil, err
	}
	out, err := G.Mul(tg.x, w)
	if err != nil {
		return nil, err
	}
	if out, err = G.BroadcastAdd(out, b, nil, []byte{0}); err != nil {
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

func (m *toy) Batch(step int) ([]int, error) { return m.order.Perm(toyExamples)[:m.global], nil }

func (m *toy) Forward(mb train.Micro) (float64, G.Nodes, int, error) {
	tg, err := m.graph(len(mb.Examples))
	if err != nil {
		return 0, nil, 0, err
	}
	var xs, ys []float64
	for _, i := range mb.Examples {
		for _, v := range m.xs[i] {
			if mb.Rand.Float64() < 0.2 { // an input mask, as dropout draws
				v = 0
			}
			xs = append(xs, v)
		}
		ys = append(ys, m.ys[i]...)
	}
	if err := G.Let(tg.x, layers.FromFloat64(tensor.Float64, []int{len(mb.Examples), toyIn}, xs)); err != nil {
		return 0, nil, 0, err
	}
	if err := G.Let(tg.y, layers.FromFloat64(tensor.Float64, []int{len(mb.Examples), toyOut}, ys)); err != nil {
		return 0, nil, 0, err
	}
	tg.vm.Reset()
	if err := tg.vm.RunAll(); err != nil {
		return 0, nil, 0, err
	}
	return tg.loss.Value().Data().(float64), tg.g.Learnables(), len(mb.Examples), nil
}

// The evaluation: one unit per 8 examples, each giving its squared-error
// sum and count.
func (m *toy) EvalUnits() []int { return []int{2, 2, 2, 2, 2} }

func (m *toy) EvalUnit(i int, out []float64) error {
	w := layers.Float64s(m.store.Params()[0].Value)
	b := layers.Float64s(m.store.Params()[1].Value)
	for e := i * 8; e < i*8+8; e++ {
		for o := range toyOut {
			p := b[o]
			for k := range toyIn {
				p += m.xs[e][k] * w[k*toyOut+o]
			}
			out[0] += (p - m.ys[e][o]) * (p - m.ys[e][o])
			out[1]++
		}
	}
	return nil
}

func (m *toy) Metrics(stats [][]float64) (float64, float64, error) {
	var s, n float64
	for _, u := range stats {
		s += u[0]
		n += u[1]
	}
	return s / n, s / n, nil
}

func (m *toy) Evaluated(e train.Evaluation[float64]) { m.evals = append(m.evals, e.Step) }

// config returns the settings of a toy run of steps steps.
func (m *toy) config(steps, batch, accum int) train.Config {
	var w, b []*layers.Param
	for _, p := range m.store.Params() {
		if p.Name == "w" {
			w = append(w, p)
		} else {
			b = append(b, p)
		}
	}
	sched, _ := train.NewSchedule(steps, 0.2)
	return train.Config{Steps: steps, Batch: batch, GradAccum: accum, Schedule: sched, Seed: 3,
		Groups: []*train.Group{
			{Name: "w", PeakLR: 0.05, Params: w, Opt: gorgoniafix.NewAdamW(gorgoniafix.WithLearnRate(0.05))},
			{Name: "b", PeakLR: 0.1, Params: b, Opt: gorgoniafix.NewAdamW(gorgoniafix.WithLearnRate(0.1), gorgoniafix.WithWeightDecay(0))},
		},
		EvalAt: func(s int) bool { return s%4 == 0 }, EvalFirst: true, KeepBest: true, Identity: map[string]int{"steps": steps}}
}

// weights returns the toy's parameters.
func (m *toy) weights() []float64 {
	var out []float64
	for _, p := range m.store.Params() {
		out = append(out, layers.Float64s(p.Value)...)
	}
	return out
}

// sameBits reports the first difference between two runs.
func sameBits(a, b []float64) error {
	if len(a) != len(b) {
		return errors.Errorf("%d values against %d", len(a), len(b))
	}
	for i := range a {
		if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
			return errors.Errorf("value %d: %v against %v", i, a[i], b[i])
		}
	}
	return nil
}

func evalScores(r *train.Result[float64]) []float64 {
	var out []float64
	for _, e := range r.Evals {
		out = append(out, float64(e.Step), e.Score, e.TrainLoss)
	}
	return out
}

func TestRunLearnsAndKeepsTheBest(t *testing.T) {
	m := newToy(t, 8)
	res, err := train.Run(context.Background(), m.config(24, 8, 1), m)
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 24 || len(res.Losses) != 24 || res.Interrupted {
		t.Fatalf("%d steps, %d losses, interrupted %v", res.Steps, len(res.Losses), res.Interrupted)
	}
	if fmt.Sprint(m.evals) != "[0 4 8 12 16 20 24]" {
		t.Errorf("evaluated after steps %v", m.evals)
	}
	best, _ := res.BestEval()
	if first := res.Evals[0].Score; !(best.Score < first*0.7) {
		t.Errorf("the held-out error went from %v to at best %v", first, best.Score)
	}
	// KeepBest: the store holds the best evaluation's weights.
	again, _, err := m.Metrics(evalStats(t, m))
	if err != nil || again != best.Score {
		t.Errorf("after the run the weights score %v, the best evaluation %v (%v)", again, best.Score, err)
	}
}

// evalStats evaluates every unit of m.
func evalStats(t *testing.T, m *toy) [][]float64 {
	var stats [][]float64
	for i, n := range m.EvalUnits() {
		u := make([]float64, n)
		if err := m.EvalUnit(i, u); err != nil {
			t.Fatal(err)
		}
		stats = append(stats, u)
	}
	return stats
}

// Gradient accumulation over K micro-batches of b examples is one step on
// the K·b examples: the mean of the micro-batches' mean gradients.
func TestGradAccumIsTheLargerBatch(t *testing.T) {
	full := newToy(t, 8)
	cf := full.config(6, 8, 1)
	acc := newToy(t, 8)
	ca := acc.config(6, 2, 4)
	if ca.GlobalBatch() != 8 {
		t.Fatalf("GlobalBatch = %d", ca.GlobalBatch())
	}
	rf, err := train.Run(context.Background(), cf, unmasked{full})
	if err != nil {
		t.Fatal(err)
	}
	ra, err := train.Run(context.Background(), ca, unmasked{acc})
	if err != nil {
		t.Fatal(err)
	}
	for i := range rf.Losses {
		if d := math.Abs(rf.Losses[i] - ra.Losses[i]); d > 1e-12 {
			t.Errorf("step %d: loss %v with batch 8, %v with 4 micro-batches of 2", i, rf.Losses[i], ra.Losses[i])
		}
	}
	wf, wa := full.weights(), acc.weights()
	for i := range wf {
		if d := math.Abs(wf[i] - wa[i]); d > 1e-12 {
			t.Errorf("weight %d: %v against %v", i, wf[i], wa[i])
		}
	}
}

// unmasked is a toy that draws no input mask (the masks of different
// micro-batch layouts differ).
type unmasked struct{ *toy }

func (u unmasked) Forward(mb train.Micro) (float64, G.Nodes, int, error) {
	mb.Rand = rand.New(constSource{})
	return u.toy.Forward(mb)
}

// constSource makes every Float64 draw 0.5 (never below the mask rate).
type constSource struct{}

func (constSource) Uint64() uint64 { return 1 << 63 }

// Two ranks, one micro-batch each, give bit for bit what one process
// accumulating the same two micro-batches gives.
func TestTwoRanksAreGradAccumTwo(t *testing.T) {
	one := newToy(t, 8)
	ref, err := train.Run(context.Background(), one.config(8, 4, 2), one)
	if err != nil {
		t.Fatal(err)
	}
	comms := dataparallel.NewLocalGroup(2)
	results := make([]*train.Result[float64], 2)
	models := make([]*toy, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		models[r] = newToy(t, 8)
		if r == 1 { // the broadcast from rank 0 must undo this
			for _, p := range models[r].store.Params() {
				p.Value.Zero()
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := models[r].config(8, 4, 1)
			c.Comm = comms[r]
			results[r], errs[r] = train.Run(context.Background(), c, models[r])
		}()
	}
	wg.Wait()
	for r := range 2 {
		if errs[r] != nil {
			t.Fatalf("rank %d: %v", r, errs[r])
		}
		if err := sameBits(ref.Losses, results[r].Losses); err != nil {
			t.Errorf("rank %d losses: %v", r, err)
		}
		if err := sameBits(evalScores(ref), evalScores(results[r])); err != nil {
			t.Errorf("rank %d evaluations: %v", r, err)
		}
		if err := sameBits(one.weights(), models[r].weights()); err != nil {
			t.Errorf("rank %d weights: %v", r, err)
		}
	}
}

// A run killed after a checkpoint and resumed from it gives bit for bit
// the uninterrupted run: losses, evaluations, best weights.
func TestResumeIsExact(t *testing.T) {
	whole := newToy(t, 6)
	ref, err := train.Run(context.Background(), whole.config(20, 3, 2), whole)
	if err != nil {
		t.Fatal(err)
	}
	for _, killAt := range []int{7, 12, 19} {
		dir := t.TempDir()
		ck := filepath.Join(dir, "checkpoint")
		saved := filepath.Join(dir, "saved")
		m := newToy(t, 6)
		c := m.config(20, 3, 2)
		c.Checkpoint, c.SaveEvery = ck, 5
		// "Kill" the run after step killAt: keep the checkpoint as it was
		// then and drop everything the process held.
		c.AfterStep = func(steps int) {
			if steps == killAt {
				if err := os.CopyFS(saved, os.DirFS(ck)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := train.Run(context.Background(), c, m); err != nil {
			t.Fatal(err)
		}
		if train.HasCheckpoint(ck) != true {
			t.Fatal("no checkpoint left") // a finished run leaves its last one; the command's output write removes it
		}
		fresh := newToy(t, 6)
		rc := fresh.config(20, 3, 2)
		rc.Checkpoint, rc.Resume, rc.SaveEvery = saved, true, 5
		res, err := train.Run(context.Background(), rc, fresh)
		if err != nil {
			t.Fatalf("kill at %d: %v", killAt, err)
		}
		if want := killAt / 5 * 5; res.ResumedFrom != want {
			t.Errorf("kill at %d: resumed from %d, want %d", killAt, res.ResumedFrom, want)
		}
		if err := sameBits(ref.Losses, res.Losses); err != nil {
			t.Errorf("kill at %d: losses: %v", killAt, err)
		}
		if err := sameBits(evalScores(ref), evalScores(res)); err != nil {
			t.Errorf("kill at %d: evaluations: %v", killAt, err)
		}
		if err := sameBits(whole.weights(), fresh.weights()); err != nil {
			t.Errorf("kill at %d: weights: %v", killAt, err)
		}
		if res.Best != ref.Best {
			t.Errorf("kill at %d: best evaluation #%d, uninterrupted #%d", killAt, res.Best, ref.Best)
		}
	}
}

// Ctrl-C stops after the current step with a checkpoint to resume from.
func TestInterruptSavesAndResumes(t *testing.T) {
	whole := newToy(t, 6)
	ref, err := train.Run(context.Background(), whole.config(10, 6, 1), whole)
	if err != nil {
		t.Fatal(err)
	}
	ck := filepath.Join(t.TempDir(), "ck")
	m := newToy(t, 6)
	ctx, cancel := context.WithCancel(context.Background())
	c := m.config(10, 6, 1)
	c.Checkpoint = ck
	c.AfterStep = func(steps int) {
		if steps == 3 {
			cancel()
		}
	}
	res, err := train.Run(ctx, c, m)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || res.Steps != 3 {
		t.Fatalf("interrupted %v after %d steps", res.Interrupted, res.Steps)
	}
	fresh := newToy(t, 6)
	rc := fresh.config(10, 6, 1)
	rc.Checkpoint, rc.Resume = ck, true
	res, err = train.Run(context.Background(), rc, fresh)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameBits(ref.Losses, res.Losses); err != nil {
		t.Errorf("losses: %v", err)
	}
	if err := sameBits(whole.weights(), fresh.weights()); err != nil {
		t.Errorf("weights: %v", err)
	}
}

// A checkpoint is refused by a run it does not belong to, with a message
// that says what differs.
func TestResumeRefusesAnotherRun(t *testing.T) {
	ck := filepath.Join(t.TempDir(), "ck")
	m := newToy(t, 6)
	c := m.config(10, 6, 1)
	c.Checkpoint, c.SaveEvery = ck, 4
	if _, err := train.Run(context.Background(), c, m); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*train.Config, *toy){
		"same number of steps": func(c *train.Config, _ *toy) { c.Steps = 12 },
		"batch":                func(c *train.Config, _ *toy) { c.GradAccum = 2 },
		"settings differ":      func(c *train.Config, _ *toy) { c.Identity = map[string]int{"steps": 10, "seed": 2} },
		"data order differs":   func(_ *train.Config, m *toy) { m.order = rand.New(rand.NewPCG(1, 1)) },
	} {
		fresh := newToy(t, 6)
		rc := fresh.config(10, 6, 1)
		rc.Checkpoint, rc.Resume = ck, true
		change(&rc, fresh)
		_, err := train.Run(context.Background(), rc, fresh)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	_, err := train.Run(context.Background(), func() train.Config {
		c := m.config(10, 6, 1)
		c.Checkpoint, c.Resume = filepath.Join(t.TempDir(), "none"), true
		return c
	}(), m)
	if err == nil || !strings.Contains(err.Error(), "no checkpoint") {
		t.Errorf("resuming without a checkpoint: %v", err)
	}
}

// A failing micro-batch on one rank stops every rank with an error instead
// of leaving the others waiting.
func TestFailureOnOneRankStopsAll(t *testing.T) {
	comms := dataparallel.NewLocalGroup(2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		m := newToy(t, 8)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := m.config(8, 4, 1)
			c.Comm = comms[r]
			var task train.Task[float64] = m
			if r == 1 {
				task = failing{m}
			}
			_, errs[r] = train.Run(context.Background(), c, task)
		}()
	}
	wg.Wait()
	if errs[0] == nil || !strings.Contains(errs[0].Error(), "another rank") {
		t.Errorf("rank 0: %v", errs[0])
	}
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "broken") {
		t.Errorf("rank 1: %v", errs[1])
	}
}

// failing is a toy whose third step fails.
type failing struct{ *toy }

func (f failing) Forward(mb train.Micro) (float64, G.Nodes, int, error) {
	if mb.Step == 2 {
		return 0, nil, 0, errors.New("broken micro-batch")
	}
	return f.toy.Forward(mb)
}
