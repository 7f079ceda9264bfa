package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/lilygo/lily/graphs/roberta"
	"github.com/lilygo/lily/internal/outdir"
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
)

// demoSettings sizes the synthetic demo; tests shrink it.
type demoSettings struct {
	trainN, devN int      // synthetic examples
	pretrain     ptConfig // the tiny encoder and its pretraining
	finetune     ftConfig // shared by the three methods (adapter fields set per method)
}

// defaultDemo is the demo run without flags: 250 pretraining steps and three
// fine-tuning runs of 800 steps, a few minutes in all on 2 cores. Fixed step
// counts (not a time budget) keep its numbers independent of the machine's
// load.
// The rates were chosen on the synthetic task: a head rate of 1e-2 kept all
// methods near chance for hundreds of steps, and an adapter rate of 1.5e-2
// (or Lily scaling 2) diverged.
func defaultDemo(seed uint64) demoSettings {
	return demoSettings{
		trainN: 4000, devN: 600,
		pretrain: ptConfig{Merges: 300, MaxLen: 32, Hidden: 64, Layers: 4, Heads: 4, Intermediate: 256, Dropout: 0.1,
			BatchSize: 32, LR: 3e-3, WarmupRatio: 0.06, WeightDecay: 0.01, MaxSteps: 250, Seed: seed},
		finetune: ftConfig{Task: "sst2", LilyR: 8, LilyStrideA: 2, LilyNumB: 2, LilyScaling: 1, LilyTargets: "query,value", LilyRouting: "batch",
			LoraTargets: "query,value", MaxSteps: 800, BatchSize: 32, MaxLen: 32, HeadLR: 2e-3, AdapterLR: 7e-3, WarmupRatio: 0.06,
			Seed: seed, EvalEvery: 400},
	}
}

// demoRow is one line of the demo's table.
type demoRow struct {
	method          string
	adapterParams   int
	trainableParams int
	best            float64
	bestStep        int
	seconds         float64
}

// demo runs the synthetic comparison in out (a new temporary folder when
// empty; overwrite replaces a finished demo or another run there) and
// prints the table.
func demo(ctx context.Context, out string, overwrite bool, s demoSettings, w io.Writer, hooks runHooks) ([]demoRow, error) {
	start := time.Now()
	if out == "" {
		var err error
		if out, err = os.MkdirTemp("", "roberta-glue-demo-"); err != nil {
			return nil, errors.Wrap(err, "creating the demo folder")
		}
	}
	folder := outdir.Folder{Flag: "-out", Path: out, Kind: kindDemo, Overwrite: overwrite}
	if err := folder.Check(); err != nil {
		return nil, err
	}
	if err := folder.Claim(); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, `== roberta-glue demo on SYNTHETIC data ==
This default run uses no real data and no real checkpoint. It writes a made-up
GLUE-format sentiment task (negation, intensifiers, "but" clauses), pretrains a
tiny encoder on its train split, then compares Lily, LoRA and head-only
fine-tuning. Numbers from it say nothing about GLUE. Files go to %s.

`, out)
	glueDir := filepath.Join(out, "synthetic-glue")
	if err := writeSynthGLUE(glueDir, s.trainN, s.devN, s.finetune.Seed); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "wrote %d train and %d dev sentences to %s/SST-2\n\n== 1. pretraining a tiny encoder (masked-language modelling) ==\n", s.trainN, s.devN, glueDir)
	pc := s.pretrain
	pc.GlueDir, pc.Out = glueDir, filepath.Join(out, "pretrained")
	if _, err := pretrain(ctx, pc, map[string]bool{}, w, hooks); err != nil {
		return nil, errors.Wrap(err, "demo pretraining")
	}
	if ctx.Err() != nil {
		return nil, errors.New("demo interrupted during pretraining")
	}

	fc := s.finetune
	fc.GlueDir, fc.Model = glueDir, pc.Out
	mc, err := roberta.ReadConfig(filepath.Join(pc.Out, roberta.ConfigFile))
	if err != nil {
		return nil, err
	}
	if fc.LoraR, err = matchLoRARank(fc, mc.Sites()); err != nil {
		return nil, err
	}
	fc.LoraAlpha = float64(fc.LoraR)
	var rows []demoRow
	for i, method := range []string{"lily", "lora", "none"} {
		fmt.Fprintf(w, "\n== %d. fine-tuning: %s ==\n", i+2, method)
		c := fc
		c.Adapter, c.Out = method, filepath.Join(out, "finetune-"+method)
		res, err := finetune(ctx, c, w, hooks)
		if err != nil {
			return nil, errors.Wrapf(err, "demo fine-tuning with %s", method)
		}
		row := demoRow{method: method, adapterParams: res.AdapterParams, trainableParams: res.TrainableParams, seconds: res.WallSeconds}
		if res.Best != nil {
			row.best, row.bestStep = res.Best.Value, res.Best.Step
		}
		rows = append(rows, row)
		if res.Interrupted {
			break
		}
	}
	if ctx.Err() == nil {
		if err := folder.Update(true, nil); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(w, "\n== results on the SYNTHETIC dev set (%d sentences), %d steps each ==\n", s.devN, fc.MaxSteps)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "method\tadapter params\ttrainable (with head)\tbest dev accuracy\tat step\ttime (s)\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.4f\t%d\t%.0f\t\n", r.method, r.adapterParams, r.trainableParams, r.best, r.bestStep, r.seconds)
	}
	if err := tw.Flush(); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, `
Lily: r %d, stride_A %d, num_B %d (shared A's and B experts, a router per layer); LoRA: r %d
(alpha = r), chosen so that both adapt query and value with as nearly the same
number of parameters as integer ranks allow.
Whole demo: %.0f s. Results, plots and adapters are in %s.

This was SYNTHETIC data. For real GLUE data and a real checkpoint:
  go run ./examples/roberta-glue pretrain -glue_dir ../shared/data/glue -out runs/pretrain   # 30 min
  go run ./examples/roberta-glue -task sst2 -glue_dir ../shared/data/glue -model runs/pretrain -adapter lily
or point -model at a Hugging Face roberta-base directory (config.json, model.safetensors,
vocab.json, merges.txt). 'go run ./examples/roberta-glue -h' lists every flag.
`, fc.LilyR, fc.LilyStrideA, fc.LilyNumB, fc.LoraR, time.Since(start).Seconds(), out)
	return rows, nil
}

// matchLoRARank returns the LoRA rank whose parameter count on the same
// targets is nearest to the Lily adapter's count c describes.
func matchLoRARank(c ftConfig, sites []layers.Site) (int, error) {
	c.Adapter = "lily"
	lily, err := newAdapter(c)
	if err != nil {
		return 0, err
	}
	target, err := layers.CountParams(lily, sites)
	if err != nil {
		return 0, err
	}
	bestR, bestDiff := 0, 0
	for r := 1; r <= 4*c.LilyR; r++ {
		c.Adapter, c.LoraR, c.LoraAlpha = "lora", r, float64(r)
		lora, err := newAdapter(c)
		if err != nil {
			return 0, err
		}
		n, err := layers.CountParams(lora, sites)
		if err != nil {
			return 0, err
		}
		if d := abs(n - target); bestR == 0 || d < bestDiff {
			bestR, bestDiff = r, d
		}
	}
	return bestR, nil
}

// abs is |x|.
func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
