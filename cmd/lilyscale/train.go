package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/lilygo/lily/bench"
	"github.com/lilygo/lily/dataparallel"
	"github.com/lilygo/lily/graphs/roberta"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
)

// trainComm is what the -train mode needs of the MPI world.
type trainComm interface {
	dataparallel.Comm
	Barrier() error
}

// trainRun is one -train measurement: the model, the global batch of
// batch×seq tokens that the ranks share, and how many steps to run.
type trainRun struct {
	cfg         roberta.Config
	method      bench.Method
	batch, seq  int
	warm, steps int
}

// runTrain times data-parallel RoBERTa training steps: every rank
// builds the same model (rank 0's trainable weights broadcast to the
// others), takes batch/Size() of the global batch, and runs forward,
// backward, one allreduce of every trainable gradient (packed, mean over
// the ranks) and AdamW. After warm untimed steps and a barrier, it times
// steps steps on every rank, and rank 0 prints one Markdown row: the median
// step time with its range, the global tokens per second from the median
// and from the total, and each rank's median allreduce time (waiting for
// the slower rank included).
func runTrain(out io.Writer, comm trainComm, r trainRun) error {
	size := comm.Size()
	if r.batch < 1 || r.seq < 1 || r.batch%size != 0 {
		return errors.Errorf("-train %dx%d: the global batch must be positive and divide among %d ranks", r.batch, r.seq, size)
	}
	if r.steps < 1 || r.warm < 0 {
		return errors.Errorf("-steps %d -warm %d: time at least one step", r.steps, r.warm)
	}
	if comm.Rank() != 0 {
		out = io.Discard
	}
	load0 := loadavg()
	red, err := dataparallel.NewReducer(comm)
	if err != nil {
		return err
	}
	st, err := bench.NewBaseStore(r.cfg)
	if err != nil {
		return errors.Wrap(err, "building the model")
	}
	var reduceTimes []time.Duration
	timing := false
	reduce := func(grads []G.ValueGrad) error {
		t0 := time.Now()
		err := red.MeanGradients(grads, size)
		if timing {
			reduceTimes = append(reduceTimes, time.Since(t0))
		}
		return err
	}
	m := r.method
	step, err := bench.NewTrainStep(bench.StepConfig{Config: r.cfg, Store: st, Method: &m, Batch: r.batch / size, Seq: r.seq, Classifier: true, Reduce: reduce})
	if err != nil {
		return errors.Wrap(err, "building the training step")
	}
	defer step.Close()
	if err := red.BroadcastParams(st.Trainable(), 0); err != nil {
		return err
	}
	for range r.warm {
		if err := step.Step(); err != nil {
			return errors.Wrap(err, "warm-up step")
		}
	}
	if err := comm.Barrier(); err != nil {
		return errors.Wrap(err, "barrier before the timed steps")
	}
	timing = true
	times := make([]time.Duration, r.steps)
	start := time.Now()
	for i := range times {
		t0 := time.Now()
		if err := step.Step(); err != nil {
			return errors.Wrapf(err, "timed step %d", i+1)
		}
		times[i] = time.Since(t0)
	}
	total := time.Since(start)
	// Every rank's median step and allreduce time, summed into rank 0.
	perRank := make([]float64, 2*size)
	perRank[2*comm.Rank()] = medianDur(times).Seconds()
	perRank[2*comm.Rank()+1] = medianDur(reduceTimes).Seconds()
	if err := red.SumMetrics(perRank); err != nil {
		return err
	}
	med := medianDur(times)
	tokens := float64(r.batch * r.seq)
	var ar []string
	for k := range size {
		ar = append(ar, rnd(time.Duration(perRank[2*k+1]*float64(time.Second))).String())
	}
	fmt.Fprintf(out, "roberta-base step (classifier, cross-entropy, dropout, allreduce, AdamW), %v, BLAS %s, %s; %d timed steps after %d untimed:\n\n%s\n",
		r.method, bench.BuildBLAS, runtime.Version(), r.steps, r.warm, trainHeader)
	fmt.Fprintf(out, "| %d × %d | %d×%d (%d×%d per rank) | %v (%v–%v) | %.0f | %.0f | %s | %.2f%% | %s → %s |\n",
		size, runtime.GOMAXPROCS(0), r.batch, r.seq, r.batch/size, r.seq, rnd(med), rnd(slices.Min(times)), rnd(slices.Max(times)),
		tokens/med.Seconds(), tokens*float64(r.steps)/total.Seconds(), strings.Join(ar, ", "),
		100*medianDur(reduceTimes).Seconds()/med.Seconds(), load0, loadavg())
	return nil
}

// trainHeader is the header of runTrain's rows.
const trainHeader = `| ranks × GOMAXPROCS | global batch (tokens) | step: median (min–max) | tokens/s (median step) | tokens/s (all steps) | allreduce per rank (median) | allreduce share of rank 0's step | load average (1 min) start → end |
|---|---|---|---|---|---|---|---|`

// medianDur is the median of d (the upper one of an even count); 0 if d is
// empty.
func medianDur(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// loadavg returns the one-minute load average from /proc/loadavg, or "?".
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}
