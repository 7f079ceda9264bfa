package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lilygo/lily/adapterfile"
	"github.com/lilygo/lily/graphs/roberta"
	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/internal/atomicfile/atomictest"
	"github.com/lilygo/lily/internal/memcheck"
	"github.com/lilygo/lily/internal/outdir"
	"github.com/lilygo/lily/tensorfile"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
)

// badOuts returns -out values that cannot work, with what the refusal
// says: a file, a folder below a file, a place nobody may write, a folder
// of someone else's files.
func badOuts(t *testing.T) map[string]string {
	root := t.TempDir()
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(root, "mine")
	if err := os.MkdirAll(foreign, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(foreign, "thesis.tex"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	unwritable := "/sys/lily-test/out" // root may write anywhere but in /sys
	if os.Geteuid() != 0 {
		ro := filepath.Join(root, "ro")
		if err := os.Mkdir(ro, 0o555); err != nil {
			t.Fatal(err)
		}
		unwritable = filepath.Join(ro, "out")
	}
	return map[string]string{
		file:                          "is a file",
		filepath.Join(file, "a", "b"): "is a file, not a folder",
		unwritable:                    "cannot write",
		foreign:                       "no lily command",
	}
}

// Every mode refuses an unusable -out before it reads data or trains.
func TestBadOutRefusedBeforeWork(t *testing.T) {
	glueDir, model := fixture(t)
	for out, want := range badOuts(t) {
		c := tinyFinetune("sst2", glueDir, model, "lily", out)
		_, err := finetune(context.Background(), c, io.Discard, runHooks{progress: io.Discard, afterStep: func(int) {
			t.Fatalf("fine-tuning into %s trained", out)
		}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("fine-tuning into %s: %v, want %q", out, err, want)
		}
		p := tinyPretrain(glueDir, out)
		_, err = pretrain(context.Background(), p, map[string]bool{}, io.Discard, runHooks{progress: io.Discard, afterStep: func(int) {
			t.Fatalf("pretraining into %s trained", out)
		}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("pretraining into %s: %v, want %q", out, err, want)
		}
		err = run(context.Background(), []string{"sweep", "-glue_dir", glueDir, "-model", model, "-tasks", "sst2", "-seeds", "1", "-max_steps", "2", "-out", out}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("sweep into %s: %v, want %q", out, err, want)
		}
		_, err = demo(context.Background(), out, false, defaultDemo(1), io.Discard, runHooks{progress: io.Discard})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("demo into %s: %v, want %q", out, err, want)
		}
	}
}

// A finished run, an unfinished pretraining and another kind of run are
// replaced only with -overwrite.
func TestFinishedRunsNeedOverwrite(t *testing.T) {
	glueDir, model := fixture(t)
	out := filepath.Join(t.TempDir(), "run")
	c := tinyFinetune("sst2", glueDir, model, "lora", out)
	c.MaxSteps = 2
	if _, err := finetune(context.Background(), c, io.Discard, runHooks{progress: io.Discard}); err != nil {
		t.Fatalf("%+v", err)
	}
	if _, err := finetune(context.Background(), c, io.Discard, runHooks{progress: io.Discard}); err == nil || !strings.Contains(err.Error(), "finished roberta-glue finetune run") {
		t.Fatalf("a second run into a finished one: %v", err)
	}
	p := tinyPretrain(glueDir, out)
	if _, err := pretrain(context.Background(), p, map[string]bool{}, io.Discard, runHooks{progress: io.Discard}); err == nil || !strings.Contains(err.Error(), "roberta-glue finetune run, not of roberta-glue pretrain") {
		t.Fatalf("pretraining into a fine-tuning run: %v", err)
	}
	c.Overwrite = true
	if _, err := finetune(context.Background(), c, io.Discard, runHooks{progress: io.Discard}); err != nil {
		t.Fatalf("-overwrite: %+v", err)
	}

	// An interrupted pretraining is continued with -resume or replaced with
	// -overwrite, not started afresh by accident.
	pt := filepath.Join(t.TempDir(), "pt")
	p = tinyPretrain(glueDir, pt)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := pretrain(ctx, p, map[string]bool{}, io.Discard, runHooks{progress: io.Discard, afterStep: func(int) { cancel() }}); err != nil {
		t.Fatalf("%+v", err)
	}
	if _, err := pretrain(context.Background(), p, map[string]bool{}, io.Discard, runHooks{progress: io.Discard}); err == nil || !strings.Contains(err.Error(), "continue it with -resume") {
		t.Fatalf("pretraining into an unfinished one: %v", err)
	}
	if err := os.WriteFile(filepath.Join(pt, "note"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p.Overwrite = true
	if _, err := pretrain(context.Background(), p, map[string]bool{}, io.Discard, runHooks{progress: io.Discard}); err != nil {
		t.Fatalf("-overwrite: %+v", err)
	}
	if _, err := os.Stat(filepath.Join(pt, "note")); !os.IsNotExist(err) {
		t.Fatalf("-overwrite kept a file of the replaced folder: %v", err)
	}
}

// Sizes no machine has are refused with the memory they need, not a panic
// or an out-of-memory crash.
func TestAbsurdSizesRefused(t *testing.T) {
	glueDir, model := fixture(t)
	for _, set := range []func(*ftConfig){
		func(c *ftConfig) { c.LilyR = 1 << 30 },
		func(c *ftConfig) { c.LilyNumB = 1 << 40 },
		func(c *ftConfig) { c.Adapter, c.LoraR = "lora", 1<<40 },
		func(c *ftConfig) { c.LilyR, c.LilyNumB = 1<<40, 1<<40 },
		func(c *ftConfig) { c.BatchSize = 1 << 40 },
	} {
		c := tinyFinetune("sst2", glueDir, model, "lily", filepath.Join(t.TempDir(), "out"))
		set(&c)
		_, err := finetune(context.Background(), c, io.Discard, runHooks{progress: io.Discard})
		if err == nil || !strings.Contains(err.Error(), "this machine has") && !strings.Contains(err.Error(), "more than") {
			t.Errorf("%s: %v", describeAdapter(c), err)
		}
	}
	for _, set := range []func(*ptConfig){
		func(c *ptConfig) { c.Hidden, c.Heads, c.Intermediate = 1<<24, 1, 4 },
		func(c *ptConfig) { c.Layers = 1 << 40 },
		func(c *ptConfig) { c.BatchSize = 1 << 40 },
	} {
		c := tinyPretrain(glueDir, filepath.Join(t.TempDir(), "pt"))
		set(&c)
		_, err := pretrain(context.Background(), c, map[string]bool{}, io.Discard, runHooks{progress: io.Discard})
		if err == nil || !strings.Contains(err.Error(), "this machine has") {
			t.Errorf("pretraining %+v: %v", c, err)
		}
	}
}

// The activation estimate reproduces the size graphCache's comment reports
// (4 layers of width 128, 4 heads, intermediate 512, 32 × 128 ids).
func TestEncoderActivations(t *testing.T) {
	c := roberta.BaseConfig()
	c.NumHiddenLayers, c.HiddenSize, c.NumAttentionHeads, c.IntermediateSize = 4, 128, 4, 512
	perLayer := 32*128*(12*128+2*512) + 3*32*4*128*128
	if got, want := encoderActivations(c, 32, 128), float64(2*4*perLayer); got != want {
		t.Fatalf("%v elements, want %v", got, want)
	}
	if mb := 4 * encoderActivations(c, 32, 128) / 1e6; mb < 500 || mb > 600 {
		t.Fatalf("%v MB", mb)
	}
	if got := memcheck.Format(4 * encoderActivations(c, 32, 128)); got != "512 MiB" {
		t.Fatalf("%s", got)
	}
}

// The fine-tuning outputs (adapter, plot, results.json, record) are replaced
// together: killed at every step of writing them, the folder holds one run's
// files, never a new adapter beside an old results.json.
func TestFinetuneOutputsKilledAtEveryStep(t *testing.T) {
	glueDir, model := fixture(t)
	out := filepath.Join(t.TempDir(), "run")
	c := tinyFinetune("sst2", glueDir, model, "lora", out)
	c.MaxSteps = 1
	world, err := train.World()
	if err != nil {
		t.Fatal(err)
	}
	r, err := newFTRun(c, io.Discard, world, runHooks{progress: io.Discard})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	defer r.sm.close()
	run, err := train.Run(context.Background(), r.tc, r)
	if err != nil {
		t.Fatal(err)
	}
	r.record(run)
	// Version v: every trainable value and results.json's steps_done are v.
	save := func(v int) error {
		atomictest.Fill(r.sm.store.Trainable(), float64(v))
		r.res.Steps = v
		_, err := r.finish(time.Now())
		return err
	}
	read := func() (int, error) {
		dir := atomicfile.Resolve(out)
		b, err := os.ReadFile(filepath.Join(dir, resultsFile))
		if err != nil {
			return 0, err
		}
		var res ftResult
		if err := json.Unmarshal(b, &res); err != nil {
			return 0, err
		}
		if rec, ok, err := outdir.ReadRecord(dir); err != nil || !ok || rec.Kind != kindFinetune {
			return 0, errors.Errorf("record %+v, %v, %v", rec, ok, err)
		}
		if _, err := adapterfile.ReadConfig(filepath.Join(dir, adapterDir)); err != nil {
			return 0, err
		}
		f, err := tensorfile.Open(filepath.Join(dir, adapterDir, adapterfile.WeightsName))
		if err != nil {
			return 0, err
		}
		for _, name := range f.Names() {
			vals, _, err := f.Float64(name)
			if err != nil {
				return 0, err
			}
			for _, x := range vals {
				if x != float64(res.Steps) {
					return 0, errors.Errorf("%s holds %v, results.json says version %d", name, x, res.Steps)
				}
			}
		}
		return res.Steps, nil
	}
	atomictest.Versions(t, out, save, read)
}

// Pretraining killed at every step of writing its folder (the run record,
// the checkpoint with the log, the model) leaves a folder that -resume
// continues to the end, or, killed before its first checkpoint, one that
// -resume refuses by saying so.
func TestPretrainKilledAtEveryStep(t *testing.T) {
	glueDir, _ := fixture(t)
	c := tinyPretrain(glueDir, "")
	c.MaxSteps, c.SaveEvery = 2, 1
	var out string
	steps := atomictest.EveryStep(t,
		func() { out = filepath.Join(t.TempDir(), "pt") },
		func() error {
			c.Out = out
			_, err := pretrain(context.Background(), c, map[string]bool{}, io.Discard, runHooks{progress: io.Discard})
			return err
		},
		func(k int) {
			st, err := pretrain(context.Background(), ptConfig{Out: out, Flags: train.Flags{Resume: true}}, map[string]bool{"out": true, "resume": true}, io.Discard, runHooks{progress: io.Discard})
			switch {
			case err != nil && strings.Contains(err.Error(), "nothing to continue"):
				// Killed while writing the finished run: its write was completed.
			case err != nil:
				if !strings.Contains(err.Error(), "no run to continue") && !strings.Contains(err.Error(), "has no "+pretrainLogFile) &&
					!strings.Contains(err.Error(), "holds no checkpoint") {
					t.Fatalf("killed at step %d: -resume fails: %+v", k, err)
				}
				return
			case st.Step != 2 || len(st.Losses) != 2:
				t.Fatalf("killed at step %d: resumed to step %d with %d losses", k, st.Step, len(st.Losses))
			}
			if _, err := roberta.Load(out, roberta.LoadOptions{LMHead: true}); err != nil {
				t.Fatalf("killed at step %d: the resumed run's model: %v", k, err)
			}
			if rec, ok, err := outdir.ReadRecord(out); err != nil || !ok || !rec.Finished {
				t.Fatalf("killed at step %d: record %+v, %v, %v after the resumed run", k, rec, ok, err)
			}
		})
	if steps < 30 {
		t.Fatalf("a pretraining went through %d steps; its three folder writes have more", steps)
	}
	t.Logf("killed at each of %d steps", steps)
}
