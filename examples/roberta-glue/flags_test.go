package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/lilygo/lily/graphs/roberta"
	"github.com/lilygo/lily/layers"
	"github.com/lilygo/lily/train"
)

func TestRecipeDefaults(t *testing.T) {
	c, set, err := parseFinetune([]string{"-task", "RTE", "-glue_dir", "g", "-model", "m"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !set["task"] || set["epochs"] {
		t.Errorf("explicit flags %v", set)
	}
	// LILY.md: RTE uses 3 A's = 3 B's, s = 0.1, both rates 5e-3, 100 epochs, batch 32.
	want := ftConfig{Task: "rte", GlueDir: "g", Model: "m", Adapter: "lily", LilyR: 32, LilyNumB: 3, LilyScaling: 0.1,
		LilyTargets: "query,value", LilyRouting: "batch", LoraR: 8, LoraAlpha: 8, LoraTargets: "query,value",
		Epochs: 100, BatchSize: 32, HeadLR: 5e-3, AdapterLR: 5e-3, WarmupRatio: 0.06, Seed: 42, Out: "runs/rte-lily",
		Flags:      train.Flags{GradAccum: 1},
		FromRecipe: []string{"adapter_lr", "batch_size", "epochs", "head_lr", "lily_num_B", "lily_scaling", "lily_stride_A"}}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	if c.recipeBlocks() != 3 {
		t.Errorf("RTE recipe has %d A's", c.recipeBlocks())
	}

	// SST-2's head rate differs from its adapter rate; STS-B uses batch 64.
	for task, w := range map[string][2]float64{"sst2": {1e-2, 5e-3}, "stsb": {1e-2, 5e-3}, "cola": {5e-3, 5e-3}} {
		c, _, err := parseFinetune([]string{"-task", task, "-glue_dir", "g", "-model", "m"}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.HeadLR != w[0] || c.AdapterLR != w[1] {
			t.Errorf("%s: rates %v %v, want %v", task, c.HeadLR, c.AdapterLR, w)
		}
	}

	// An explicit flag wins over the recipe, even when it is the zero value.
	c, _, err = parseFinetune([]string{"-task", "mrpc", "-glue_dir", "g", "-model", "m", "-lily_scaling", "0", "-batch_size", "8",
		"-lily_stride_A", "5", "-adapter", "lora", "-out", "o"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.LilyScaling != 0 || c.BatchSize != 8 || c.LilyStrideA != 5 || c.Epochs != 100 || c.Out != "o" {
		t.Errorf("explicit flags lost: %+v", c)
	}
	for _, f := range []string{"lily_scaling", "batch_size", "lily_stride_A"} {
		for _, r := range c.FromRecipe {
			if r == f {
				t.Errorf("%s listed as from the recipe", f)
			}
		}
	}
}

// The recipe's A count becomes stride_A = ceil(layers / A's); on
// RoBERTa-base that must reproduce LILY.md's parameter counts, computed there
// from the shapes alone.
func TestStrideReproducesPaperCounts(t *testing.T) {
	sites := roberta.BaseConfig().Sites()
	for _, tc := range []struct{ blocks, want int }{{2, 198144}, {3, 297216}} {
		lily, err := layers.NewLily(layers.LilyConfig{R: 32, StrideA: strideFor(12, tc.blocks), NumB: tc.blocks, Scaling: 1, TargetModules: []string{"query", "value"}})
		if err != nil {
			t.Fatal(err)
		}
		n, err := layers.CountParams(lily, sites)
		if err != nil {
			t.Fatal(err)
		}
		if n != tc.want {
			t.Errorf("%d A's: %d parameters, LILY.md says %d", tc.blocks, n, tc.want)
		}
	}
	for _, tc := range []struct{ layers, blocks, want int }{{12, 4, 3}, {4, 3, 2}, {2, 3, 1}, {4, 2, 2}, {1, 1, 1}} {
		if got := strideFor(tc.layers, tc.blocks); got != tc.want {
			t.Errorf("strideFor(%d, %d) = %d, want %d", tc.layers, tc.blocks, got, tc.want)
		}
	}
}

func TestFlagErrors(t *testing.T) {
	base := []string{"-glue_dir", "g", "-model", "m"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-task", "rte", "-model", "m"}, "-glue_dir is required"},
		{[]string{"-task", "rte", "-glue_dir", "g"}, "-model is required"},
		{append([]string{"-task", "nope"}, base...), "unknown task"},
		{append([]string{"-task", "rte", "-adapter", "dora"}, base...), "-adapter"},
		{append([]string{"-task", "rte", "-lily_routing", "expert"}, base...), "routing"},
		{append([]string{"-task", "rte", "-warmup_ratio", "1"}, base...), "-warmup_ratio"},
		{append([]string{"-task", "rte", "-lily_target_modules", " , "}, base...), "target_modules"},
		{append([]string{"-task", "rte", "-max_len", "4"}, base...), "-max_len"},
		{append([]string{"-task", "rte", "extra"}, base...), "unexpected argument"},
		{[]string{"-lily_r", "x"}, "invalid value"},
	} {
		var out bytes.Buffer
		_, _, err := parseFinetune(tc.args, &out)
		if err == nil || !strings.Contains(err.Error()+out.String(), tc.want) {
			t.Errorf("%v: error %v, want one mentioning %q", tc.args, err, tc.want)
		}
	}
	// Without -task only the demo's flags are accepted.
	err := run(context.Background(), []string{"-max_steps", "5", "-adapter", "lora"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-adapter, -max_steps only apply to fine-tuning") {
		t.Errorf("demo with fine-tuning flags: %v", err)
	}
}

func TestHelpExplainsEverything(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, io.Discard, &out); err != flag.ErrHelp {
		t.Fatalf("-h returned %v", err)
	}
	help := out.String()
	for _, s := range []string{"Five modes", "sweep -h", "search -h", "SYNTHETIC", "pretrain", "-task rte", "recipe", "ceil(layers / A's)",
		"rte   3         0.1", "sst2  2         0.01     0.01", "not in the paper", "QNLI", "dev_mismatched", "(default 0.06)"} {
		if !strings.Contains(help, s) {
			t.Errorf("-h lacks %q", s)
		}
	}
	var c ftConfig
	newFinetuneFlags(&c, io.Discard).VisitAll(func(f *flag.Flag) {
		if !strings.Contains(help, "-"+f.Name) {
			t.Errorf("-h does not explain -%s", f.Name)
		}
	})

	out.Reset()
	if err := run(context.Background(), []string{"pretrain", "-h"}, io.Discard, &out); err != flag.ErrHelp {
		t.Fatalf("pretrain -h returned %v", err)
	}
	for _, s := range []string{"TRAIN split", "-resume", "-minutes", "30 minutes", "<mask> last", "(default 30)", "15%"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("pretrain -h lacks %q", s)
		}
	}
	var pc ptConfig
	newPretrainFlags(&pc, io.Discard).VisitAll(func(f *flag.Flag) {
		if !strings.Contains(out.String(), "-"+f.Name) {
			t.Errorf("pretrain -h does not explain -%s", f.Name)
		}
	})
}

func TestPretrainFlags(t *testing.T) {
	c, _, err := parsePretrain([]string{"-glue_dir", "g", "-hidden", "96", "-heads", "3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Intermediate != 4*96 || c.Layers != defaultPretrain.Layers || c.Minutes != 30 || c.MaxSteps != 0 {
		t.Errorf("defaults: %+v", c)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "-glue_dir"},
		{[]string{"-glue_dir", "g", "-hidden", "100", "-heads", "3"}, "divisible"},
		{[]string{"-glue_dir", "g", "-minutes", "3", "-max_steps", "9"}, "not both"},
		{[]string{"-resume", "-hidden", "64"}, "cannot change on -resume"},
		{[]string{"-glue_dir", "g", "-dropout", "1"}, "-dropout"},
		{[]string{"-glue_dir", "g", "x"}, "unexpected argument"},
	} {
		if _, _, err := parsePretrain(tc.args, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one mentioning %q", tc.args, err, tc.want)
		}
	}
	if c, _, err := parsePretrain([]string{"-text", "t", "-max_steps", "9"}, io.Discard); err != nil || c.MaxSteps != 9 || c.Minutes != 0 {
		t.Errorf("-max_steps does not replace the time budget: %+v, %v", c, err)
	}
	if _, _, err := parsePretrain([]string{"-resume", "-out", "o", "-glue_dir", "g", "-save_every", "5"}, io.Discard); err != nil {
		t.Errorf("allowed -resume overrides refused: %v", err)
	}
}

// The demo's LoRA rank is the one whose count is nearest Lily's, checked
// against the formulas of LILY.md written out here.
func TestMatchLoRARank(t *testing.T) {
	cfg := roberta.DefaultConfig()
	cfg.HiddenSize, cfg.NumHiddenLayers, cfg.NumAttentionHeads, cfg.IntermediateSize = 64, 4, 4, 256
	c := defaultDemo(1).finetune
	r, err := matchLoRARank(c, cfg.Sites())
	if err != nil {
		t.Fatal(err)
	}
	const d, L, targets = 64, 4, 2
	nA := (L + c.LilyStrideA - 1) / c.LilyStrideA
	lily := targets * (nA*d*c.LilyR + c.LilyNumB*c.LilyR*d + L*c.LilyR*c.LilyNumB)
	lora := func(r int) int { return targets * L * 2 * d * r }
	for other := 1; other < 64; other++ {
		if abs(lora(other)-lily) < abs(lora(r)-lily) {
			t.Errorf("rank %d (%d params) is nearer Lily's %d than the chosen %d (%d)", other, lora(other), lily, r, lora(r))
		}
	}
}
