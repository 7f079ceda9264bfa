// Command porting fine-tunes an existing Gorgonia model with Lily without
// rewriting it, as docs/porting.md describes step by step.
//
// The model is a small multilayer perceptron written the way Gorgonia's own
// examples are written (package before/model). It is trained on task A:
// three interleaved spirals. Task B is related: the same spirals, seen
// rotated. The model does badly on B, so it is ported to Lily — the diff
// between before/model/model.go and after/model/model.go, which is the diff
// docs/porting.md shows — and only the adapter is trained on B, while the
// model's weights stay untouched.
//
//	go run ./examples/porting                  # Lily
//	go run ./examples/porting -adapter lora    # LoRA at a similar budget
//	go run ./examples/porting -peft_layout     # the adapter saved exactly as PEFT saves it
package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/lilygo/lily/adapterfile"
	after "github.com/lilygo/lily/examples/porting/after/model"
	before "github.com/lilygo/lily/examples/porting/before/model"
	"github.com/lilygo/lily/internal/outdir"
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// kindPorting names this command's runs in their output folders' records
// (internal/outdir).
const kindPorting = "porting"

// config is what the flags set.
type config struct {
	StepsA, StepsB int     // training steps on task A (whole model) and B (adapter)
	Batch          int     // examples per step
	Adapter        string  // "lily" or "lora"
	Rotate         float64 // task B's rotation, in degrees
	Dir            string  // where base.gob and adapter/ go
	Overwrite      bool    // replace a finished run or another kind of run in Dir
	PEFTLayout     bool    // save the adapter exactly as PEFT does
	Seed           uint64
}

// result is what run measured.
type result struct {
	AccA, BeforeB    float64 // the original model's test accuracies
	AfterB, AdaptedA float64 // the adapted model's test accuracies
	StillA           float64 // the original model's accuracy on A, after adapting
	FullParams       int     // parameters trained on task A
	AdapterParams    int     // parameters trained on task B
}

func main() {
	c, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err == nil {
		_, err = run(c, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "porting:", err)
		os.Exit(1)
	}
}

// parseFlags reads the flags into a validated configuration; without -out
// it makes a new temporary folder.
func parseFlags(args []string, usage io.Writer) (config, error) {
	c := config{Batch: 64}
	fs := flag.NewFlagSet("porting", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.IntVar(&c.StepsA, "steps-a", 1500, "training steps of the whole model on task A")
	fs.IntVar(&c.StepsB, "steps-b", 300, "training steps of the adapter on task B")
	fs.StringVar(&c.Adapter, "adapter", "lily", "the method the model is ported to: lily or lora")
	fs.Float64Var(&c.Rotate, "rotate", 60, "how far task B's spirals are rotated, in degrees")
	fs.StringVar(&c.Dir, "out", "", "directory for the model (base.gob) and the adapter (adapter/); default: a new temporary directory")
	fs.BoolVar(&c.PEFTLayout, "peft_layout", false, "save the adapter exactly as PEFT does (Lily's shared tensors repeated per layer, no lily_go config section), so PeftModel.from_pretrained loads it without a warning")
	fs.BoolVar(&c.Overwrite, "overwrite", false, "replace -out when it holds a finished run or another kind of run")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the data and of the model's initial weights")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, errors.Errorf("unexpected argument %q (every setting is a flag; see -h)", fs.Arg(0))
	case c.StepsA < 1 || c.StepsB < 1:
		return c, errors.Errorf("-steps-a %d and -steps-b %d must be positive", c.StepsA, c.StepsB)
	case math.IsNaN(c.Rotate) || math.IsInf(c.Rotate, 0):
		return c, errors.Errorf("-rotate %v must be a finite angle in degrees", c.Rotate)
	}
	if _, err := adapter(c.Adapter); err != nil {
		return c, err
	}
	if c.Dir == "" {
		dir, err := os.MkdirTemp("", "porting")
		if err != nil {
			return c, errors.Wrap(err, "creating the output folder")
		}
		c.Dir = dir
	}
	return c, nil
}

// adapter returns the method the model is ported to. Both adapt the two
// hidden layers only (target_modules "fc" matches hidden.0.fc and
// hidden.1.fc); Lily shares one A and one pool of B experts between them.
func adapter(method string) (layers.Adapter, error) {
	switch method {
	case "lily":
		return layers.NewLily(layers.LilyConfig{R: 4, StrideA: 2, NumB: 2, Scaling: 1, TargetModules: []string{"fc"}})
	case "lora":
		return layers.NewLoRA(layers.LoRAConfig{R: 4, Alpha: 4, TargetModules: []string{"fc"}})
	}
	return nil, errors.Errorf("-adapter %q: use lily or lora", method)
}

// run trains on task A, ports, adapts to task B and reports to w. The
// model and the adapter replace c.Dir as a whole at the end.
func run(c config, w io.Writer) (res result, err error) {
	a, err := adapter(c.Adapter)
	if err != nil {
		return res, err
	}
	folder := outdir.Folder{Flag: "-out", Path: c.Dir, Kind: kindPorting, Overwrite: c.Overwrite}
	if err := folder.Check(); err != nil {
		return res, err
	}
	err = folder.Write(true, func(dir string) error {
		res, err = portIn(dir, c, a, w)
		return err
	})
	return res, err
}

// portIn is run with its files in dir.
func portIn(dir string, c config, a layers.Adapter, w io.Writer) (result, error) {
	var res result
	var err error
	rng := rand.New(rand.NewPCG(c.Seed, 2))
	rot := c.Rotate * math.Pi / 180
	trainA, trainAY := spirals(2000, 0, rng)
	testA, testAY := spirals(1000, 0, rng)
	trainB, trainBY := spirals(2000, rot, rng)
	testB, testBY := spirals(1000, rot, rng)
	ckpt := filepath.Join(dir, "base.gob")
	adapterDir := filepath.Join(dir, "adapter")

	fmt.Fprintf(w, "task A: three interleaved spirals; task B: the same spirals rotated by %g°\n", c.Rotate)
	if err := before.Init(ckpt, rng); err != nil {
		return res, err
	}
	if res.FullParams, err = before.Train(ckpt, trainA, trainAY, c.StepsA, c.Batch, 0.01, rng); err != nil {
		return res, errors.Wrap(err, "training on task A")
	}
	if res.AccA, err = before.Accuracy(ckpt, testA, testAY); err != nil {
		return res, err
	}
	if res.BeforeB, err = before.Accuracy(ckpt, testB, testBY); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "the original model: all %s parameters trained on task A for %d steps\n", commas(res.FullParams), c.StepsA)
	fmt.Fprintf(w, "  test accuracy on A: %.3f, on B: %.3f\n", res.AccA, res.BeforeB)

	if res.AdapterParams, err = after.Train(ckpt, a, adapterDir, adapterfile.Options{PEFTLayout: c.PEFTLayout}, trainB, trainBY, c.StepsB, c.Batch, 0.01, rng); err != nil {
		return res, errors.Wrap(err, "adapting to task B")
	}
	if res.AfterB, err = after.Accuracy(ckpt, adapterDir, testB, testBY); err != nil {
		return res, err
	}
	if res.AdaptedA, err = after.Accuracy(ckpt, adapterDir, testA, testAY); err != nil {
		return res, err
	}
	if res.StillA, err = before.Accuracy(ckpt, testA, testAY); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "ported to %s (target_modules [fc]): %s trainable parameters (%.1f%% of %s), trained on task B for %d steps\n",
		c.Adapter, commas(res.AdapterParams), 100*float64(res.AdapterParams)/float64(res.FullParams), commas(res.FullParams), c.StepsB)
	fmt.Fprintf(w, "  test accuracy on B: %.3f → %.3f\n", res.BeforeB, res.AfterB)
	fmt.Fprintf(w, "  the adapter is saved apart, in %s\n", filepath.Join(c.Dir, "adapter"))
	fmt.Fprintf(w, "  test accuracy on A: %.3f with the adapter, %.3f without (the model itself is untouched)\n", res.AdaptedA, res.StillA)
	return res, nil
}

// spirals returns n points [n, 2] of three interleaved spiral arms, turned
// by rot radians, and the arm of each point as its label.
func spirals(n int, rot float64, rng *rand.Rand) (*tensor.Dense, []int) {
	xs := make([]float64, 2*n)
	ys := make([]int, n)
	for i := range ys {
		arm, t := rng.IntN(3), rng.Float64()
		angle := float64(arm)*2*math.Pi/3 + 1.5*math.Pi*t + rot + 0.1*rng.NormFloat64()
		r := 0.1 + t
		xs[2*i], xs[2*i+1] = r*math.Cos(angle), r*math.Sin(angle)
		ys[i] = arm
	}
	return tensor.New(tensor.WithShape(n, 2), tensor.WithBacking(xs)), ys
}

// commas formats n with thousands separators.
func commas(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
