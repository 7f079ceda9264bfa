// Package resumetest checks, in the commands' tests, that a run killed
// after a checkpoint and resumed gives the uninterrupted run's outputs: it
// kills a process at an injected point with SIGKILL (no timing involved),
// and compares two output folders file by file, JSON files value by value
// apart from the keys that measure time.
package resumetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// KillEnv names the environment variable that tells a command run by a
// test to kill itself with SIGKILL after its N-th optimiser step (counted
// over all the training runs of the process).
const KillEnv = "LILY_TEST_KILL_AFTER_STEP"

// KillHook returns the train.Config.AfterStep of a process started with
// KillEnv set to N: it kills the process with SIGKILL, as the kernel's OOM
// killer or a scheduler's pre-emption would, right after its N-th optimiser
// step (and that step's checkpoint, if one falls there). It returns nil
// when KillEnv is not set.
func KillHook() func(steps int) {
	var at int
	if _, err := fmt.Sscan(os.Getenv(KillEnv), &at); err != nil || at < 1 {
		return nil
	}
	done := 0
	return func(int) {
		if done++; done == at {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
}

// Timings are the keys of results files that measure time or the
// process's history rather than the result.
var Timings = []string{"wall_seconds", "train_seconds", "eval_seconds", "seconds", "train_tokens_per_second",
	"tokens_per_second", "resumed_from", "elapsed_seconds", "mean_seconds_per_run", "total_seconds",
	"mean_wall_seconds", "mean_train_tokens_per_second"}

// SameOutputs fails t unless the folders want and got hold the same files
// with the same bytes, except JSON files, which must hold the same values
// once every key listed in ignore is removed at any depth. Where got's
// files name the folder got, want's name want.
func SameOutputs(t testing.TB, want, got string, ignore ...string) {
	t.Helper()
	wf, gf := files(t, want), files(t, got)
	if !slices.Equal(wf, gf) {
		t.Fatalf("the outputs differ in their files:\n uninterrupted %v\n resumed       %v", wf, gf)
	}
	for _, name := range wf {
		a, err := os.ReadFile(filepath.Join(want, name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(got, name))
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte(got), []byte(want))
		if strings.HasSuffix(name, ".json") {
			va, vb := decode(t, name, a, ignore), decode(t, name, b, ignore)
			if where := difference("", va, vb); where != "" {
				t.Errorf("%s differs at %s", name, where)
			}
			continue
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs (%d and %d bytes)", name, len(a), len(b))
		}
	}
}

// files lists the regular files under dir, relative to it, sorted.
func files(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		out = append(out, rel)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// decode parses a JSON file without the ignored keys; numbers stay exact.
func decode(t testing.TB, name string, b []byte, ignore []string) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return drop(v, ignore)
}

// drop removes the ignored keys from every object in v.
func drop(v any, ignore []string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if slices.Contains(ignore, k) {
				delete(x, k)
			} else {
				x[k] = drop(e, ignore)
			}
		}
	case []any:
		for i, e := range x {
			x[i] = drop(e, ignore)
		}
	}
	return v
}

// difference returns the path in two decoded JSON values where they first
// differ, with both values, or "" when they are equal.
func difference(path string, a, b any) string {
	ma, okA := a.(map[string]any)
	mb, okB := b.(map[string]any)
	if okA && okB {
		keys := make([]string, 0, len(ma))
		for k := range ma {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if d := difference(path+"."+k, ma[k], mb[k]); d != "" {
				return d
			}
		}
		for k := range mb {
			if _, ok := ma[k]; !ok {
				return fmt.Sprintf("%s.%s: only in the resumed run", path, k)
			}
		}
		return ""
	}
	la, okA := a.([]any)
	lb, okB := b.([]any)
	if okA && okB && len(la) == len(lb) {
		for i := range la {
			if d := difference(fmt.Sprintf("%s[%d]", path, i), la[i], lb[i]); d != "" {
				return d
			}
		}
		return ""
	}
	if !reflect.DeepEqual(a, b) {
		sa, _ := json.Marshal(a)
		sb, _ := json.Marshal(b)
		return fmt.Sprintf("%s: uninterrupted %.300s, resumed %.300s", path, sa, sb)
	}
	return ""
}

// RunKilled runs the test named test of this test binary again in a child
// process, with the environment variable argsEnv holding args (joined by
// ArgsSep) for the child's branch of the test to run the command with, and
// KillEnv set to killAt; it fails t unless the child was killed by SIGKILL.
// The child's branch sets its command's step hook to KillHook() and runs
// the command with ChildArgs(argsEnv).
func RunKilled(t testing.TB, test, argsEnv string, args []string, killAt int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), argsEnv+"="+strings.Join(args, ArgsSep), fmt.Sprintf("%s=%d", KillEnv, killAt))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the run to kill after step %d was not killed (%v); stderr:\n%s", killAt, err, stderr.String())
	}
}

// ArgsSep separates the arguments in RunKilled's environment variable.
const ArgsSep = "\x1f"

// ChildArgs returns the arguments RunKilled passed in argsEnv; ok is false
// in a process RunKilled did not start.
func ChildArgs(argsEnv string) (args []string, ok bool) {
	v := os.Getenv(argsEnv)
	if v == "" {
		return nil, false
	}
	return strings.Split(v, ArgsSep), true
}
