package atomicfile_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	. "github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/internal/atomicfile/atomictest"
	"github.com/pkg/errors"
)

// setFiles are the files of the test's output set, each holding the set's
// version; sub/c tests a nested folder.
var setFiles = []string{"a.json", "b.bin", filepath.Join("sub", "c.txt")}

// fillVersion returns a fill that writes version v of the set.
func fillVersion(v string) func(dir string) error {
	return func(dir string) error {
		for _, f := range setFiles {
			if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755); err != nil {
				return err
			}
			if err := WriteBytes(filepath.Join(dir, f), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	}
}

// readVersion returns the version of the set in dir, or an error when a
// file is missing or the files disagree.
func readVersion(dir string) (string, error) {
	got := ""
	for _, f := range setFiles {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return "", err
		}
		if got != "" && string(b) != got {
			return "", errors.Errorf("%s holds %q, the set's other files %q", f, b, got)
		}
		got = string(b)
	}
	return got, nil
}

// listDir returns the sorted names in dir.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestWriteDirReplacesTheWholeFolder(t *testing.T) {
	parent := t.TempDir()
	dest := filepath.Join(parent, "out")
	if err := WriteDir(dest, fillVersion("1")); err != nil {
		t.Fatal(err)
	}
	if err := WriteBytes(filepath.Join(dest, "stray"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := WriteDir(dest, fillVersion("2")); err != nil {
		t.Fatal(err)
	}
	if v, err := readVersion(dest); err != nil || v != "2" {
		t.Fatalf("version %q, %v; want 2", v, err)
	}
	if got := listDir(t, dest); strings.Join(got, " ") != "a.json b.bin sub" {
		t.Fatalf("WriteDir kept other entries: %v", got)
	}
	if got := listDir(t, parent); len(got) != 1 {
		t.Fatalf("siblings left beside the folder: %v", got)
	}
	if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("folder mode %v, %v; want 0755", fi.Mode(), err)
	}
}

func TestUpdateDirKeepsOtherEntries(t *testing.T) {
	parent := t.TempDir()
	dest := filepath.Join(parent, "out")
	if err := WriteDir(dest, func(dir string) error {
		return WriteBytes(filepath.Join(dir, "keep"), []byte("k"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := UpdateDir(dest, fillVersion("1")); err != nil {
		t.Fatal(err)
	}
	if err := UpdateDir(dest, fillVersion("2")); err != nil {
		t.Fatal(err)
	}
	if v, err := readVersion(dest); err != nil || v != "2" {
		t.Fatalf("version %q, %v; want 2", v, err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "keep")); err != nil || string(b) != "k" {
		t.Fatalf("the kept entry: %q, %v", b, err)
	}
	if got := listDir(t, parent); len(got) != 1 {
		t.Fatalf("siblings left beside the folder: %v", got)
	}
}

func TestFailedFillLeavesThePreviousFolder(t *testing.T) {
	parent := t.TempDir()
	dest := filepath.Join(parent, "out")
	if err := WriteDir(dest, fillVersion("1")); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	for _, write := range []func(string, func(string) error) error{WriteDir, UpdateDir} {
		err := write(dest, func(dir string) error {
			if err := fillVersion("2")(dir); err != nil {
				return err
			}
			return boom
		})
		if errors.Cause(err) != boom {
			t.Fatalf("the fill's error was lost: %v", err)
		}
		if v, err := readVersion(dest); err != nil || v != "1" {
			t.Fatalf("a failed write changed the folder: %q, %v", v, err)
		}
		if got := listDir(t, parent); len(got) != 1 {
			t.Fatalf("a failed write left %v", got)
		}
	}
}

// checkAfterKill checks what a reader and the next writer find after a
// write of version 2 over version 1 was killed: the set reads as one
// complete version, 1 or 2; after Recover the kept entry (merge) is in the
// folder and no sibling is left; a further write works.
func checkAfterKill(t *testing.T, parent, dest string, merge bool) {
	t.Helper()
	v, err := readVersion(Resolve(dest))
	if err != nil || (v != "1" && v != "2") {
		t.Fatalf("a reader finds version %q, %v", v, err)
	}
	if err := Recover(dest); err != nil {
		t.Fatal(err)
	}
	after, err := readVersion(dest)
	if err != nil || (after != "1" && after != "2") || (v == "2" && after != "2") {
		t.Fatalf("after recovery version %q (%v); a reader had seen %q", after, err, v)
	}
	if merge {
		if b, err := os.ReadFile(filepath.Join(dest, "keep")); err != nil || string(b) != "k" {
			t.Fatalf("the kept entry after recovery: %q, %v", b, err)
		}
	}
	if got := listDir(t, parent); len(got) != 1 {
		t.Fatalf("after recovery the parent holds %v", got)
	}
	write := WriteDir
	if merge {
		write = UpdateDir
	}
	if err := write(dest, fillVersion("3")); err != nil {
		t.Fatal(err)
	}
	if v, err := readVersion(dest); err != nil || v != "3" {
		t.Fatalf("the next write gives %q, %v", v, err)
	}
}

// setUp writes version 1 (with a kept entry for merge) to parent/out.
func setUp(t *testing.T, merge bool) (parent, dest string) {
	parent = t.TempDir()
	dest = filepath.Join(parent, "out")
	if err := WriteDir(dest, fillVersion("1")); err != nil {
		t.Fatal(err)
	}
	if merge {
		if err := WriteBytes(filepath.Join(dest, "keep"), []byte("k")); err != nil {
			t.Fatal(err)
		}
	}
	return parent, dest
}

func TestKilledAtEveryStep(t *testing.T) {
	for _, merge := range []bool{false, true} {
		write := WriteDir
		if merge {
			write = UpdateDir
		}
		var parent, dest string
		steps := atomictest.EveryStep(t,
			func() { parent, dest = setUp(t, merge) },
			func() error { return write(dest, fillVersion("2")) },
			func(int) { checkAfterKill(t, parent, dest, merge) })
		// created, 3 files, filled, synced, committed, (kept), retired,
		// swapped, done.
		want := 10
		if merge {
			want = 11
		}
		if steps != want {
			t.Fatalf("merge %v: a write went through %d steps, want %d", merge, steps, want)
		}
	}
}

// TestKilledProcess kills a real process at every step of an UpdateDir (the
// write with the most steps) with os.Exit, which runs no deferred code, to
// check that StepHook's panics in TestKilledAtEveryStep stop a write as a
// killed process does.
func TestKilledProcess(t *testing.T) {
	if dest := os.Getenv("ATOMICFILE_TEST_DEST"); dest != "" {
		k, _ := strconv.Atoi(os.Getenv("ATOMICFILE_TEST_KILL_AT"))
		n := 0
		StepHook = func(string) {
			if n == k {
				os.Exit(3)
			}
			n++
		}
		if err := UpdateDir(dest, fillVersion("2")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	for k := 0; ; k++ {
		parent, dest := setUp(t, true)
		cmd := exec.Command(os.Args[0], "-test.run=^TestKilledProcess$")
		cmd.Env = append(os.Environ(), "ATOMICFILE_TEST_DEST="+dest, fmt.Sprintf("ATOMICFILE_TEST_KILL_AT=%d", k))
		out, err := cmd.CombinedOutput()
		if err == nil {
			if k != 11 {
				t.Fatalf("the write finished after %d steps, want 11", k)
			}
			return
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Fatalf("step %d: %v\n%s", k, err, out)
		}
		checkAfterKill(t, parent, dest, true)
	}
}

func TestNestedWritesNeedNoSwap(t *testing.T) {
	parent := t.TempDir()
	dest := filepath.Join(parent, "out")
	var steps []string
	StepHook = func(s string) { steps = append(steps, s) }
	defer func() { StepHook = nil }()
	err := WriteDir(dest, func(dir string) error {
		if err := UpdateDir(dir, fillVersion("1")); err != nil {
			return err
		}
		return WriteDir(filepath.Join(dir, "inner"), func(in string) error {
			return WriteBytes(filepath.Join(in, "x"), []byte("x"))
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := readVersion(dest); err != nil || v != "1" {
		t.Fatalf("version %q, %v", v, err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "inner", "x")); err != nil || string(b) != "x" {
		t.Fatalf("inner folder: %q, %v", b, err)
	}
	if got := listDir(t, parent); len(got) != 1 {
		t.Fatalf("nested writes left %v beside the folder", got)
	}
	commits := 0
	for _, s := range steps {
		if s == "committed" {
			commits++
		}
	}
	if commits != 1 || len(steps) != 10 { // created, 4 files, filled, synced, committed, swapped, done
		t.Fatalf("the nested writes swapped on their own: steps %v", steps)
	}
}

func TestResolveFindsTheCommittedFolder(t *testing.T) {
	parent := t.TempDir()
	dest := filepath.Join(parent, "out")
	if got := Resolve(dest); got != dest {
		t.Fatalf("Resolve of a missing folder = %s", got)
	}
	if err := os.Mkdir(filepath.Join(parent, ".out.new"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := Resolve(dest); got != filepath.Join(parent, ".out.new") {
		t.Fatalf("Resolve = %s, want the committed sibling", got)
	}
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := Resolve(dest); got != dest {
		t.Fatalf("Resolve = %s, want the folder itself", got)
	}
}

func TestLeftoversAreRemovedByTheNextWrite(t *testing.T) {
	parent := t.TempDir()
	for _, p := range []string{".f.json.tmp-123", ".out.tmp-9/x", ".out.old/y", ".other.tmp-1"} {
		if err := os.MkdirAll(filepath.Join(parent, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(parent, p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteBytes(filepath.Join(parent, "f.json"), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := WriteDir(filepath.Join(parent, "out"), fillVersion("1")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(listDir(t, parent), " "); got != ".other.tmp-1 f.json out" {
		t.Fatalf("after the writes the folder holds %s; want the other file's leftover only besides f.json and out", got)
	}
}

func TestWriteDirRefusals(t *testing.T) {
	parent := t.TempDir()
	file := filepath.Join(parent, "file")
	if err := WriteBytes(file, nil); err != nil {
		t.Fatal(err)
	}
	nop := func(string) error { return nil }
	if err := WriteDir(file, nop); err == nil || !strings.Contains(err.Error(), "is a file") {
		t.Fatalf("writing a folder over a file: %v", err)
	}
	if err := WriteDir(filepath.Join(file, "sub"), nop); err == nil {
		t.Fatal("writing a folder below a file must fail")
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteDir(filepath.Dir(wd), nop); err == nil || !strings.Contains(err.Error(), "working directory") {
		t.Fatalf("replacing a parent of the working directory: %v", err)
	}
}
