// Command lilybench runs the library's speed comparisons and prints them as
// a Markdown table. Every row times two things in this one process,
// interleaved (A, B, B, A, A, B, …, a garbage collection before each step),
// and reports the median of the per-round ratios A/B with its range, so
// that the load of a shared machine cancels out as far as it can.
//
//	go run ./cmd/lilybench                 # pure-Go BLAS (package gemm)
//	go run -tags openblas ./cmd/lilybench  # OpenBLAS through cgo
//	go run -tags openblas ./cmd/lilybench -run adapters,fused -rounds 9
//
// Experiments (-run, comma-separated; default all):
//
//	gemm      SGEMM on the big and the rank-32 shapes of roberta-base and on
//	          small-model shapes: package gemm vs OpenBLAS with its own
//	          thread pool (openblas build), vs gonum's portable BLAS
//	          (pure-Go build)
//	adapters  Lily vs LoRA on the 24 query/value adapters of roberta-base
//	          alone (8×128 tokens, inputs given, forward and backward)
//	fused     Lily from the fused lilyop ops vs from stock Gorgonia ops
//	layer     one roberta-base encoder layer's training step vs the raw
//	          GEMM time of the matrix products it performs
//	step      a whole roberta-base training step (classifier, cross-entropy,
//	          AdamW, dropout; 8×128 tokens), Lily vs LoRA; its allocations
//	build     building and compiling the 12-layer roberta-base training graph
//	glue      tokens/s of a whole roberta-base + classifier + Lily training
//	          step (16×64 tokens as GLUE, and 8×128): package gemm vs
//	          OpenBLAS (openblas build); Lily vs head-only and package gemm
//	          vs gonum (pure-Go build)
//	llama     (only when asked for, with -llama DIR) a whole training step
//	          of a Hugging Face LLaMA with Lily on q, k, v and bfloat16
//	          frozen weights vs the time of its matrix products run alone
//	          on package gemm: the step's share of its GEMM roofline
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/lilygo/lily/bench"
	"github.com/lilygo/lily/graphs/roberta"
	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/internal/memcheck"
	"github.com/lilygo/lily/internal/outdir"
)

type row struct {
	id, what, a, b string
	t              bench.Timing
	target         string
	met            string
	note           string
}

type runner struct {
	rounds, bigRounds int
	rows              []row
	log               io.Writer
	llamaFlags        llamaFlags
}

func main() {
	only := flag.String("run", "gemm,adapters,fused,layer,step,build,glue", "experiments to run, comma-separated")
	rounds := flag.Int("rounds", 9, "interleaved rounds of the small experiments (adapters, fused, layer)")
	bigRounds := flag.Int("big-rounds", 3, "interleaved rounds of the whole-model experiments (step, build, glue)")
	out := flag.String("o", "", "also write the Markdown report to this file")
	var lf llamaFlags
	flag.StringVar(&lf.dir, "llama", "", "-run llama: a Hugging Face LLaMA folder")
	flag.IntVar(&lf.batch, "llama_batch", 1, "-run llama: sequences per step")
	flag.IntVar(&lf.seq, "llama_seq", 128, "-run llama: tokens per sequence")
	flag.BoolVar(&lf.f32, "llama_f32", false, "-run llama: keep the frozen weights in float32")
	flag.Parse()
	memcheck.LimitHeap()
	if *out != "" {
		if err := outdir.CheckFile("-o", *out); err != nil {
			fmt.Fprintln(os.Stderr, "lilybench:", err)
			os.Exit(1)
		}
	}
	r := &runner{rounds: *rounds, bigRounds: *bigRounds, log: os.Stderr, llamaFlags: lf}
	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		want[strings.TrimSpace(s)] = true
	}
	start := time.Now()
	load0 := loadavg()
	for _, e := range []struct {
		name string
		f    func() error
	}{{"gemm", r.gemm}, {"adapters", r.adapters}, {"fused", r.fused}, {"layer", r.layer}, {"step", r.step}, {"build", r.build}, {"glue", r.glue}, {"llama", r.llama}} {
		if !want[e.name] {
			continue
		}
		fmt.Fprintf(r.log, "== %s (load %s)\n", e.name, loadavg())
		if err := e.f(); err != nil {
			fmt.Fprintf(os.Stderr, "lilybench: %s: %v\n", e.name, err)
			os.Exit(1)
		}
	}
	var sb strings.Builder
	r.report(&sb, start, load0)
	fmt.Print(sb.String())
	if *out != "" {
		err := os.MkdirAll(filepath.Dir(*out), 0o755)
		if err == nil {
			err = atomicfile.WriteBytes(*out, []byte(sb.String()))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "lilybench:", err)
			os.Exit(1)
		}
	}
}

func (r *runner) compare(id, what, a, b string, sa, sb bench.Stepper, warm, rounds int) (bench.Timing, error) {
	t, err := bench.Interleave(sa, sb, warm, rounds)
	if err != nil {
		return t, err
	}
	fmt.Fprintf(r.log, "   %s: %v\n", id, t)
	r.rows = append(r.rows, row{id: id, what: what, a: a, b: b, t: t})
	return t, nil
}

func (r *runner) last() *row { return &r.rows[len(r.rows)-1] }

func (r *runner) adapters() error {
	lily, err := bench.NewAdapterStep(bench.AdapterConfig{Method: bench.PaperLily()})
	if err != nil {
		return err
	}
	defer lily.Close()
	for _, m := range []bench.Method{bench.MatchedLoRA(), bench.LoRARank(32)} {
		lora, err := bench.NewAdapterStep(bench.AdapterConfig{Method: m})
		if err != nil {
			return err
		}
		t, err := r.compare("1a", "24 query/value adapters alone, fwd+bwd, 8×128 tokens",
			fmt.Sprintf("%v (%d params)", bench.PaperLily(), lily.Params), fmt.Sprintf("%v (%d params)", m, lora.Params), lily, lora, 2, r.rounds)
		lora.Close()
		if err != nil {
			return err
		}
		if m.R == 5 {
			r.last().target, r.last().met = "(≤ 1.10 is for the step, 1b)", "—"
			r.last().note = fmt.Sprintf("Lily's rank-32 products do %.1f× LoRA r 5's FLOPs", 32.0/5)
		} else {
			r.last().id = "1a′"
			r.last().note = "same rank: the router and the expert mixing cost"
			_ = t
		}
	}
	return nil
}

func (r *runner) fused() error {
	fused, err := bench.NewAdapterStep(bench.AdapterConfig{Method: bench.PaperLily()})
	if err != nil {
		return err
	}
	defer fused.Close()
	stock, err := bench.NewAdapterStep(bench.AdapterConfig{Method: bench.PaperLily(), Composed: true})
	if err != nil {
		return err
	}
	defer stock.Close()
	t, err := r.compare("2", "Lily on 24 sites, fwd+bwd, 8×128 tokens",
		fmt.Sprintf("fused lilyop ops (%d nodes)", fused.Nodes), fmt.Sprintf("stock Gorgonia ops (%d nodes)", stock.Nodes), fused, stock, 2, r.rounds)
	if err != nil {
		return err
	}
	r.last().target, r.last().met = "≤ 0.67", yes(t.Ratio() <= 0.67)
	r.last().note = "fused: query's and value's x·A as one GEMM per layer (lilyop.MatMulShared), as the model does"
	perSite, err := bench.NewAdapterStep(bench.AdapterConfig{Method: bench.PaperLily(), PerSite: true})
	if err != nil {
		return err
	}
	defer perSite.Close()
	if _, err := r.compare("2′", "Lily on 24 sites, fwd+bwd, 8×128 tokens",
		fmt.Sprintf("fused lilyop ops, x·A site by site (%d nodes)", perSite.Nodes), fmt.Sprintf("stock Gorgonia ops (%d nodes)", stock.Nodes), perSite, stock, 2, r.rounds); err != nil {
		return err
	}
	r.last().note = "the same fused ops without sharing x·A between sites"
	return nil
}

func layerConfig() roberta.Config {
	c := roberta.BaseConfig()
	c.NumHiddenLayers = 1
	c.VocabSize = 1000
	return c
}

func (r *runner) layer() error {
	cfg := layerConfig()
	st, err := bench.NewBaseStore(cfg)
	if err != nil {
		return err
	}
	lily := bench.PaperLily()
	step, err := bench.NewTrainStep(bench.StepConfig{Config: cfg, Store: st, Method: &lily, Batch: 8, Seq: 128})
	if err != nil {
		return err
	}
	defer step.Close()
	list := bench.LayerGEMMs(bench.LayerShape{Batch: 8, Seq: 128, Hidden: cfg.HiddenSize, Heads: cfg.NumAttentionHeads,
		FFN: cfg.IntermediateSize, R: lily.R, NumB: lily.NumB, InputGrad: true})
	gemms := bench.NewGEMMRunner(list)
	gf := bench.TotalFlops(list) / 1e9
	t, err := r.compare("3", "one roberta-base encoder layer, training step (adapter grads + input grad), 8×128 tokens",
		"layer step (Graph.Machine, dropout, AdamW)", fmt.Sprintf("its %d GEMMs (%.1f GFLOP), raw through the same BLAS", len(list), gf), step, gemms, 1, r.rounds)
	if err != nil {
		return err
	}
	r.last().target, r.last().met = "≤ 2", yes(t.Ratio() <= 2)
	r.last().note = fmt.Sprintf("GEMMs alone: %.0f GFLOP/s; layer: %.0f GFLOP/s", gf/t.MedB().Seconds(), gf/t.MedA().Seconds())
	fresh, err := bench.NewTrainStep(bench.StepConfig{Config: cfg, Store: st, Method: &lily, Batch: 8, Seq: 128, NoRecycling: true})
	if err != nil {
		return err
	}
	defer fresh.Close()
	if _, err := r.compare("3‴", "the layer's training step", "ops recycle their outputs (Graph.Machine's default)",
		"every output freshly allocated", step, fresh, 1, r.rounds); err != nil {
		return err
	}
	ba, _, err := bench.Allocs(step)
	if err != nil {
		return err
	}
	bb, _, err := bench.Allocs(fresh)
	if err != nil {
		return err
	}
	r.last().note = fmt.Sprintf("allocated per step: %.0f MB vs %.0f MB", float64(ba)/1e6, float64(bb)/1e6)
	if bench.UseOpenBLASThreads() {
		// The raw GEMMs with OpenBLAS's own threads, against the build's
		// default (single-threaded OpenBLAS, Go splitting large GEMMs).
		own := bench.StepFunc(func() error {
			bench.UseOpenBLASThreads()
			defer bench.UseBLAS(bench.BuildBLAS)
			return gemms.Step()
		})
		bench.UseBLAS(bench.BuildBLAS)
		t2, err := r.compare("3′", "the layer's GEMMs, raw", "OpenBLAS 1 thread, Go splits large GEMMs (the build's default)",
			"OpenBLAS's own thread pool", gemms, own, 1, r.rounds)
		if err != nil {
			return err
		}
		r.last().note = fmt.Sprintf("layer step / best raw GEMMs: %.2f", t.Ratio()*max(1, t2.Ratio()))
		stepOwn := bench.StepFunc(func() error {
			bench.UseOpenBLASThreads()
			defer bench.UseBLAS(bench.BuildBLAS)
			return step.Step()
		})
		if _, err := r.compare("3″", "the layer's training step", "OpenBLAS 1 thread, Go splits large GEMMs (the build's default)",
			"OpenBLAS's own thread pool", step, stepOwn, 1, r.rounds); err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) step() error {
	cfg := roberta.BaseConfig()
	st, err := bench.NewBaseStore(cfg)
	if err != nil {
		return err
	}
	lily, lora := bench.PaperLily(), bench.MatchedLoRA()
	a, err := bench.NewTrainStep(bench.StepConfig{Config: cfg, Store: st, Method: &lily, Batch: 8, Seq: 128, Classifier: true})
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := bench.NewTrainStep(bench.StepConfig{Config: cfg, Store: st, Method: &lora, Batch: 8, Seq: 128, Classifier: true})
	if err != nil {
		return err
	}
	defer b.Close()
	t, err := r.compare("1b", "whole roberta-base training step (classifier, cross-entropy, AdamW, dropout), 8×128 tokens",
		lily.String(), lora.String(), a, b, 2, r.bigRounds)
	if err != nil {
		return err
	}
	r.last().target, r.last().met = "≤ 1.10", yes(t.Ratio() <= 1.10)
	r.last().note = fmt.Sprintf("%.0f / %.0f tokens/s", float64(a.Tokens)/t.MedA().Seconds(), float64(b.Tokens)/t.MedB().Seconds())
	ba, oa, err := bench.Allocs(a)
	if err != nil {
		return err
	}
	bb, ob, err := bench.Allocs(b)
	if err != nil {
		return err
	}
	r.rows = append(r.rows, row{id: "4b", what: "bytes allocated per training step (runtime.MemStats), same step",
		a: fmt.Sprintf("Lily: %.0f MB, %d objects", float64(ba)/1e6, oa), b: fmt.Sprintf("LoRA r 5: %.0f MB, %d objects", float64(bb)/1e6, ob),
		t: bench.Timing{Ratios: []float64{float64(ba) / float64(bb)}}, note: "ratio of bytes; one step each"})
	return nil
}

func (r *runner) build() error {
	cfg := roberta.BaseConfig()
	st, err := bench.NewBaseStore(cfg)
	if err != nil {
		return err
	}
	lily := bench.PaperLily()
	var step *bench.TrainStep
	mk := func() error {
		if step != nil {
			step.Close()
		}
		var err error
		step, err = bench.NewTrainStep(bench.StepConfig{Config: cfg, Store: st, Method: &lily, Batch: 8, Seq: 128, Classifier: true, NoOptimizer: true})
		return err
	}
	var build, compile []time.Duration
	run := bench.StepFunc(func() error { return step.Step() })
	buildStep := bench.StepFunc(func() error {
		if err := mk(); err != nil {
			return err
		}
		build = append(build, step.BuildTime)
		compile = append(compile, step.CompileTime)
		return nil
	})
	if err := mk(); err != nil {
		return err
	}
	t, err := r.compare("4a", "12-layer roberta-base training graph, 8×128 tokens, Lily + classifier",
		"Build + Graph.Machine (differentiate, compile)", "one training step of that graph", buildStep, run, 0, r.bigRounds)
	if err != nil {
		return err
	}
	step.Close()
	r.last().target, r.last().met = "≤ 2 s", yes(t.MedA() <= 2*time.Second)
	r.last().note = fmt.Sprintf("build %v + compile %v (medians), %d nodes", med(build), med(compile), step.Nodes)
	return nil
}

func (r *runner) glue() error {
	cfg := roberta.BaseConfig()
	st, err := bench.NewBaseStore(cfg)
	if err != nil {
		return err
	}
	lily := bench.PaperLily()
	for _, shape := range [][2]int{{16, 64}, {8, 128}} {
		batch, seq := shape[0], shape[1]
		s, err := bench.NewTrainStep(bench.StepConfig{Config: cfg, Store: st, Method: &lily, Batch: batch, Seq: seq, Classifier: true})
		if err != nil {
			return err
		}
		defer s.Close()
		id := "5"
		if batch != 16 {
			id = "5′"
		}
		what := fmt.Sprintf("whole training step: roberta-base + classifier + %v, %d×%d tokens, AdamW, dropout", lily, batch, seq)
		if bench.BuildBLAS == "openblas" {
			t, err := r.compare(id, what, "package gemm (pure Go)", "OpenBLAS, same process", withBLAS("gemm", s), s, 1, r.bigRounds)
			if err != nil {
				return err
			}
			r.last().target, r.last().met = "≤ 1.25", yes(t.Ratio() <= 1.25)
			r.last().note = fmt.Sprintf("%.0f tokens/s (gemm), %.0f tokens/s (OpenBLAS)", float64(s.Tokens)/t.MedA().Seconds(), float64(s.Tokens)/t.MedB().Seconds())
			continue
		}
		t, err := r.compare(id, what, "package gemm", "gonum's portable BLAS, same process", s, withBLAS("gonum", s), 1, r.bigRounds)
		if err != nil {
			return err
		}
		r.last().note = fmt.Sprintf("%.0f tokens/s (gemm), %.0f tokens/s (gonum)", float64(s.Tokens)/t.MedA().Seconds(), float64(s.Tokens)/t.MedB().Seconds())
		if batch != 16 {
			continue
		}
		head, err := bench.NewTrainStep(bench.StepConfig{Config: cfg, Store: st, Batch: batch, Seq: seq, Classifier: true})
		if err != nil {
			return err
		}
		defer head.Close()
		t, err = r.compare("5″", what, "Lily", "classifier head only, frozen encoder", s, head, 1, r.bigRounds)
		if err != nil {
			return err
		}
		r.last().note = fmt.Sprintf("%.0f tokens/s (Lily), %.0f tokens/s (head only)", float64(s.Tokens)/t.MedA().Seconds(), float64(head.Tokens)/t.MedB().Seconds())
	}
	return nil
}

// withBLAS is s run with Gorgonia switched to the named BLAS (bench.UseBLAS)
// for the step, and back to the build's afterwards.
func withBLAS(name string, s bench.Stepper) bench.Stepper {
	return bench.StepFunc(func() error {
		bench.UseBLAS(name)
		defer bench.UseBLAS(bench.BuildBLAS)
		return s.Step()
	})
}

// gemm times single SGEMMs: package gemm against OpenBLAS with its own
// thread pool and against OpenBLAS as the openblas build runs it (one
// thread, large products split across goroutines), or, in the pure-Go
// build, against gonum's portable BLAS.
func (r *runner) gemm() error {
	bases := [][2]string{{"gonum", "gonum's portable BLAS"}}
	if bench.UseOpenBLASThreads() {
		bases = [][2]string{{"openblas-pool", "OpenBLAS, its own pool of GOMAXPROCS threads"},
			{bench.BuildBLAS, "OpenBLAS on one thread, Go splitting large products (the openblas build's set-up)"}}
	}
	bench.UseBLAS(bench.BuildBLAS)
	for _, g := range bench.SGEMMShapes() {
		run := bench.NewGEMMRunner([]bench.Gemm{g})
		// Enough calls per step for about 20 ms at 100 GFLOP/s.
		reps := max(1, int(2e9/g.Flops()))
		step := func(blas string) bench.Stepper {
			return bench.StepFunc(func() error {
				if blas == "openblas-pool" {
					bench.UseOpenBLASThreads()
				} else {
					bench.UseBLAS(blas)
				}
				defer bench.UseBLAS(bench.BuildBLAS)
				for range reps {
					if err := run.Step(); err != nil {
						return err
					}
				}
				return nil
			})
		}
		for i, base := range bases {
			t, err := r.compare("G", "SGEMM "+g.String(), "package gemm", base[1], step("gemm"), step(base[0]), 1, r.rounds)
			if err != nil {
				return err
			}
			if i > 0 {
				r.last().id = "G′"
			}
			gf := func(d time.Duration) float64 { return g.Flops() * float64(reps) / d.Seconds() / 1e9 }
			r.last().note = fmt.Sprintf("%.0f vs %.0f GFLOP/s; %d calls a step", gf(t.MedA()), gf(t.MedB()), reps)
			if base[0] != "gonum" {
				r.last().target, r.last().met = "≤ 1.25", yes(t.Ratio() <= 1.25)
			}
		}
	}
	return nil
}

func med(d []time.Duration) time.Duration {
	t := bench.Timing{A: d}
	return t.MedA().Round(time.Millisecond)
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func (r *runner) report(w io.Writer, start time.Time, load0 string) {
	fmt.Fprintf(w, "BLAS: %s · GOMAXPROCS %d · %s · load average %s at start, %s at end · %v\n\n",
		bench.BuildBLAS, runtime.GOMAXPROCS(0), runtime.Version(), load0, loadavg(), time.Since(start).Round(time.Second))
	if out, err := exec.Command("sh", "-c", "lscpu | grep -E 'Model name|^CPU\\(s\\)'").Output(); err == nil {
		fmt.Fprintf(w, "```\n%s```\n\n", out)
	}
	fmt.Fprintln(w, "| # | what | A | B | median A | median B | A/B wall (median, range) | A/B CPU | target | met | note |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, x := range r.rows {
		lo, hi := x.t.Spread()
		ma, mb := "", ""
		if len(x.t.A) > 0 {
			ma, mb = round(x.t.MedA()), round(x.t.MedB())
		}
		rng := ""
		if len(x.t.Ratios) > 1 {
			rng = fmt.Sprintf(" (%.2f–%.2f, n=%d)", lo, hi, len(x.t.Ratios))
		}
		cpu := ""
		if len(x.t.CPURatios) > 0 {
			cpu = fmt.Sprintf("%.3f", x.t.CPURatio())
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %.3f%s | %s | %s | %s | %s |\n", x.id, x.what, x.a, x.b, ma, mb, x.t.Ratio(), rng, cpu, x.target, x.met, x.note)
	}
}

func round(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(100 * time.Microsecond).String()
	}
}
