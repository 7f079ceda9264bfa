// Command lilyscale prints what data-parallel training sends over the
// network per optimiser step, Lily against LoRA at the paper's settings:
// the trainable parameters counted from the model shapes alone
// (layers.CountParams, nothing allocated but the small classifier head),
// the bytes of float32 gradient one allreduce carries, the allreduce's time
// measured in this MPI job (when it has more than one process), and the
// time a ring allreduce would take across nodes (a model, not a
// measurement).
//
//	go run ./cmd/lilyscale                  # counts and the model only
//	go build -tags mpi -o /tmp/lilyscale ./cmd/lilyscale
//	mpirun -np 2 --oversubscribe /tmp/lilyscale -reps 10   # plus measured times
//
// With -train BxS it measures instead the throughput of data-parallel
// roberta-base training steps with Lily as in the paper's GLUE setting: the
// global batch of B sequences of S tokens is shared among the processes,
// and every step includes the gradient allreduce and the AdamW step on
// every rank (runTrain). On a 2-core machine, 2 ranks × 1 thread against
// 1 process × 2 threads:
//
//	mpirun -np 2 --oversubscribe -x GOMAXPROCS=1 /tmp/lilyscale -train 16x64
//	GOMAXPROCS=2 /tmp/lilyscale -train 16x64
//
// The ring model: each of p nodes sends and receives 2(p−1)/p of the buffer
// (reduce-scatter, then allgather) in 2(p−1) messages, so
// t = 2(p−1)/p · bytes / bandwidth + 2(p−1) · latency.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/lilygo/lily/bench"
	"github.com/lilygo/lily/graphs/llama"
	"github.com/lilygo/lily/graphs/roberta"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/mpi"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// setting is one adapter on one model, as the paper trains it.
type setting struct {
	model, method string
	adapter       int // adapter parameters
	head          int // other trainable parameters (the classifier head)
}

func main() {
	reps := flag.Int("reps", 10, "timed allreduces per size (after 2 untimed ones)")
	latency := flag.Duration("latency", 20*time.Microsecond, "per-message latency of the ring model")
	step := flag.Duration("step", 0, "compute time of one roberta-base optimiser step on one node, to set the modelled allreduce against (0: omit)")
	trainShape := flag.String("train", "", "BxS: time roberta-base + Lily training steps on a global batch of B sequences of S tokens shared among the ranks, instead of printing the tables")
	steps := flag.Int("steps", 5, "-train: timed steps")
	warm := flag.Int("warm", 1, "-train: untimed steps first")
	flag.Parse()
	world, err := mpi.Init()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *trainShape != "" {
		err = trainMode(world, *trainShape, *warm, *steps)
	} else {
		err = run(os.Stdout, world, *reps, *latency, *step)
	}
	if err != nil {
		world.Abort(1, err)
	}
	if err := world.Finalize(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// trainMode runs -train BxS on roberta-base with bench.PaperLily.
func trainMode(world *mpi.World, shape string, warm, steps int) error {
	var b, s int
	if n, err := fmt.Sscanf(shape, "%dx%d", &b, &s); err != nil || n != 2 {
		return errors.Errorf("-train %q: want BxS, such as 16x64", shape)
	}
	return runTrain(os.Stdout, world, trainRun{cfg: roberta.BaseConfig(), method: bench.PaperLily(), batch: b, seq: s, warm: warm, steps: steps})
}

// run prints the three tables; only rank 0 writes.
func run(out io.Writer, world *mpi.World, reps int, latency, step time.Duration) error {
	if reps < 1 {
		return errors.Errorf("-reps %d: time at least one allreduce", reps)
	}
	if world.Rank() != 0 {
		out = io.Discard
	}
	settings, err := paperSettings()
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "| model | method | adapter params | + head | float32 bytes per step |")
	fmt.Fprintln(out, "|---|---|---|---|---|")
	for _, s := range settings {
		fmt.Fprintf(out, "| %s | %s | %d | %d | %s |\n", s.model, s.method, s.adapter, s.head, mb(4*(s.adapter+s.head)))
	}
	if world.Size() > 1 {
		fmt.Fprintf(out, "\nMeasured: one allreduce (sum, float32) in this job of %d processes, median (min–max) of %d:\n\n", world.Size(), reps)
		fmt.Fprintln(out, "| model | method | bytes | time | bus bandwidth |")
		fmt.Fprintln(out, "|---|---|---|---|---|")
		for _, s := range settings {
			med, lo, hi, err := timeAllreduce(world, s.adapter+s.head, reps)
			if err != nil {
				return err
			}
			bus := 2 * float64(world.Size()-1) / float64(world.Size()) * float64(4*(s.adapter+s.head)) / med.Seconds()
			fmt.Fprintf(out, "| %s | %s | %s | %v (%v–%v) | %.2f GB/s |\n", s.model, s.method, mb(4*(s.adapter+s.head)), rnd(med), rnd(lo), rnd(hi), bus/1e9)
		}
	}
	fmt.Fprintf(out, "\nModelled: ring allreduce of the same bytes across nodes, latency %v per message", latency)
	if step > 0 {
		fmt.Fprintf(out, "; for roberta-base, in brackets, the share of a step of %v compute plus the allreduce (no overlap)", step)
	}
	fmt.Fprintln(out, ":")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| model | method | 8 nodes, 10 Gb/s | 8 nodes, 100 Gb/s | 64 nodes, 10 Gb/s | 64 nodes, 100 Gb/s |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|")
	for _, s := range settings {
		fmt.Fprintf(out, "| %s | %s |", s.model, s.method)
		for _, p := range []int{8, 64} {
			for _, gbps := range []float64{10, 100} {
				t := ringTime(4*(s.adapter+s.head), p, gbps*1e9/8, latency)
				if step > 0 && s.model == "roberta-base" {
					fmt.Fprintf(out, " %v (%.2f%%) |", rnd(t), 100*t.Seconds()/(t+step).Seconds())
				} else {
					fmt.Fprintf(out, " %v |", rnd(t))
				}
			}
		}
		fmt.Fprintln(out)
	}
	return nil
}

// paperSettings counts the trainable parameters of Lily and of the LoRA it
// is compared with, on roberta-base (GLUE: query and value, plus the
// two-label classifier head, which trains too) and on LLaMA3-8B
// (commonsense reasoning; LoRA as in LLM-Adapters: r 32 on q, k, v, up and
// down).
func paperSettings() ([]setting, error) {
	rb := roberta.BaseConfig()
	store, err := layers.NewStore(tensor.Float32)
	if err != nil {
		return nil, err
	}
	if err := roberta.AddClassifier(store, rb, 2, 1); err != nil {
		return nil, err
	}
	head, _ := store.Count()
	l3 := llama.Config{Dim: 4096, HiddenDim: 14336, NLayers: 32, NHeads: 32, NKVHeads: 8, VocabSize: 128256, MaxSeqLen: 8192, NormEps: 1e-5, RopeTheta: 500000}
	qv, qkv := []string{"query", "value"}, []string{"q_proj", "k_proj", "v_proj"}
	rows := []struct {
		model, method string
		adapter       layers.Adapter
		adErr         error
		sites         []layers.Site
		head          int
	}{
		{model: "roberta-base", method: "Lily r=32 stride_A=6 num_B=2, query+value", sites: rb.Sites(), head: head},
		{model: "roberta-base", method: "LoRA r=8, query+value", sites: rb.Sites(), head: head},
		{model: "LLaMA3-8B", method: "Lily r=16 stride_A=8 num_B=4, q+k+v", sites: l3.Sites()},
		{model: "LLaMA3-8B", method: "LoRA r=32, q+k+v+up+down", sites: l3.Sites()},
	}
	rows[0].adapter, rows[0].adErr = layers.NewLily(layers.LilyConfig{R: 32, StrideA: 6, NumB: 2, Scaling: 1, TargetModules: qv})
	rows[1].adapter, rows[1].adErr = layers.NewLoRA(layers.LoRAConfig{R: 8, Alpha: 16, TargetModules: qv})
	rows[2].adapter, rows[2].adErr = layers.NewLily(layers.LilyConfig{R: 16, StrideA: 8, NumB: 4, Scaling: 1, TargetModules: qkv})
	rows[3].adapter, rows[3].adErr = layers.NewLoRA(layers.LoRAConfig{R: 32, Alpha: 64, TargetModules: append(slices.Clone(qkv), "up_proj", "down_proj")})
	var out []setting
	for _, r := range rows {
		if r.adErr != nil {
			return nil, r.adErr
		}
		n, err := layers.CountParams(r.adapter, r.sites)
		if err != nil {
			return nil, err
		}
		out = append(out, setting{model: r.model, method: r.method, adapter: n, head: r.head})
	}
	return out, nil
}

// timeAllreduce times reps allreduces of n float32 on every rank after a
// barrier each, and returns rank 0's median, minimum and maximum.
func timeAllreduce(world *mpi.World, n, reps int) (med, lo, hi time.Duration, err error) {
	buf := make([]float32, n)
	for i := range buf {
		buf[i] = float32(i%7) * 0.25
	}
	var times []time.Duration
	for i := range reps + 2 {
		if err := world.Barrier(); err != nil {
			return 0, 0, 0, err
		}
		start := time.Now()
		if err := world.AllreduceSumFloat32(buf); err != nil {
			return 0, 0, 0, err
		}
		if i >= 2 {
			times = append(times, time.Since(start))
		}
	}
	return medianDur(times), slices.Min(times), slices.Max(times), nil
}

// ringTime is the ring allreduce model for bytes on p nodes with a link of
// bytesPerSec each way.
func ringTime(bytes, p int, bytesPerSec float64, latency time.Duration) time.Duration {
	steps := 2 * (p - 1)
	transfer := float64(steps) / float64(p) * float64(bytes) / bytesPerSec
	return time.Duration(transfer*float64(time.Second)) + time.Duration(steps)*latency
}

// mb formats a byte count in MB (10⁶ bytes).
func mb(b int) string { return fmt.Sprintf("%.2f MB", float64(b)/1e6) }

// rnd rounds a duration for printing.
func rnd(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(100 * time.Nanosecond)
}
