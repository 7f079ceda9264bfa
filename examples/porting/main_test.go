package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lilygo/lily/adapterfile"
	"github.com/lilygo/lily/tensorfile"
)

var update = flag.Bool("update", false, "rewrite the diff in docs/porting.md from the two model versions")

// The example end to end on a small budget: porting lifts the accuracy on
// task B far above the original model's, with a fraction of its parameters,
// and leaves the original model as it was. Lily's adapter is saved in PEFT's
// layout (-peft_layout), and the accuracy after adapting is measured with
// the adapter loaded back from that directory.
func TestRun(t *testing.T) {
	for _, method := range []string{"lily", "lora"} {
		t.Run(method, func(t *testing.T) {
			dir := t.TempDir()
			var out bytes.Buffer
			peft := method == "lily"
			res, err := run(config{StepsA: 800, StepsB: 200, Batch: 64, Adapter: method, Rotate: 60, Dir: dir, Seed: 1, PEFTLayout: peft}, &out)
			if err != nil {
				t.Fatalf("%+v", err)
			}
			t.Logf("\n%s", out.String())
			if res.AccA < 0.95 {
				t.Errorf("the original model reaches only %.3f on task A", res.AccA)
			}
			if res.AfterB < 0.9 || res.AfterB < res.BeforeB+0.3 {
				t.Errorf("accuracy on B went from %.3f to %.3f; want at least 0.9 and 0.3 better", res.BeforeB, res.AfterB)
			}
			if res.AdapterParams == 0 || res.AdapterParams > res.FullParams/5 {
				t.Errorf("%d adapter parameters for a model of %d", res.AdapterParams, res.FullParams)
			}
			if res.StillA != res.AccA {
				t.Errorf("the original model's accuracy on A moved from %.3f to %.3f", res.AccA, res.StillA)
			}
			checkLayout(t, filepath.Join(dir, "adapter"), method, peft)
		})
	}
	if _, err := run(config{Adapter: "dora", Dir: t.TempDir()}, new(bytes.Buffer)); err == nil {
		t.Error("an unknown adapter gave no error")
	}
}

// checkLayout checks the saved adapter's layout: in PEFT's, no lily_go
// config section and Lily's A, shared by the two hidden layers, stored under
// each layer's key; otherwise once, under the first layer's.
func checkLayout(t *testing.T, dir, method string, peft bool) {
	t.Helper()
	cfg, err := adapterfile.ReadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if (cfg.Ext == nil) != peft {
		t.Errorf("peft_layout %t: lily_go config section %+v", peft, cfg.Ext)
	}
	f, err := tensorfile.Open(filepath.Join(dir, adapterfile.WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	if method != "lily" {
		return
	}
	want := []string{adapterfile.Prefix + "hidden.0.fc.lily_A.weight"}
	if peft {
		want = append(want, adapterfile.Prefix+"hidden.1.fc.lily_A.weight")
	}
	var got []string
	for _, k := range f.Names() {
		if strings.HasSuffix(k, ".lily_A.weight") {
			got = append(got, k)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("peft_layout %t: lily_A keys %v, want %v", peft, got, want)
	}
}

// docsPath is the porting guide, relative to this package.
const docsPath = "../../docs/porting.md"

// The diff that docs/porting.md shows is exactly the diff between the two
// versions of the example's model. go test -run TestDocsDiff -update
// rewrites it.
func TestDocsDiff(t *testing.T) {
	if _, err := exec.LookPath("diff"); err != nil {
		t.Fatal("this test needs the diff command (Debian package diffutils)")
	}
	cmd := exec.Command("diff", "-u", "--label", "a/model.go", "--label", "b/model.go",
		"before/model/model.go", "after/model/model.go")
	want, err := cmd.Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("diff -u: %v (exit status 1 means the files differ)", err)
	}
	doc, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	const open, fence = "```diff\n", "```\n"
	start := bytes.Index(doc, []byte(open))
	if start < 0 {
		t.Fatalf("%s has no ```diff block", docsPath)
	}
	start += len(open)
	end := bytes.Index(doc[start:], []byte("\n"+fence))
	if end < 0 {
		t.Fatalf("%s: the ```diff block is not closed", docsPath)
	}
	end += start + 1
	if *update {
		fixed := append(append(append([]byte(nil), doc[:start]...), want...), doc[end:]...)
		if err := os.WriteFile(docsPath, fixed, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got := doc[start:end]; !bytes.Equal(got, want) {
		t.Fatalf("the diff in %s differs from diff -u of the example's two models; run go test ./examples/porting -run TestDocsDiff -update\n--- docs:\n%s\n--- diff -u:\n%s",
			docsPath, firstLines(string(got), 20), firstLines(string(want), 20))
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = append(lines[:n], "…\n")
	}
	return strings.Join(lines, "")
}

// Unusable flags are refused before any training, with one line naming the
// flag.
func TestFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-steps-a", "0"}, "-steps-a 0"},
		{[]string{"-steps-b", "-5"}, "-steps-b -5"},
		{[]string{"-rotate", "NaN"}, "-rotate NaN"},
		{[]string{"-rotate", "+Inf"}, "-rotate +Inf"},
		{[]string{"-adapter", "dora"}, `-adapter "dora"`},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-steps-a", "x"}, "invalid value"},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: %v, want one line with %q", tc.args, err, tc.want)
		}
	}
	c, err := parseFlags([]string{"-out", file}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run(c, io.Discard); err == nil || !strings.Contains(err.Error(), "is a file") {
		t.Errorf("-out a file: %v", err)
	}
	if c, err := parseFlags([]string{"-peft_layout", "-out", t.TempDir()}, io.Discard); err != nil || !c.PEFTLayout {
		t.Errorf("-peft_layout: %+v, %v", c, err)
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}
