package outdir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// unwritable returns a folder path this process cannot create: below a
// read-only folder, or below /sys for root, who may write anywhere else.
func unwritable(t *testing.T) string {
	if os.Geteuid() == 0 {
		return "/sys/lily-outdir-test/out"
	}
	ro := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(ro, "out")
}

func TestCheck(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(root, "foreign")
	if err := os.MkdirAll(foreign, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(foreign, "notes.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	record := func(name, kind string, finished bool) string {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := writeRecord(dir, kind, finished); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	finished := record("finished", "train", true)
	unfinished := record("unfinished", "train", false)
	other := record("other", "sweep", false)
	empty := filepath.Join(root, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path      string
		overwrite bool
		want      string // part of the error; "" for none
	}{
		{"", false, "is empty"},
		{file, false, "is a file; give a folder"},
		{filepath.Join(file, "sub", "out"), false, file + " is a file, not a folder"},
		{unwritable(t), false, "cannot write"},
		{foreign, false, "no lily command"},
		{foreign, true, "no lily command"},
		{finished, false, "finished train run"},
		{finished, true, ""},
		{other, false, "output of a sweep run"},
		{other, true, ""},
		{unfinished, false, ""},
		{empty, false, ""},
		{filepath.Join(root, "new", "deeper"), false, ""},
	} {
		err := Folder{Flag: "-out", Path: c.path, Kind: "train", Overwrite: c.overwrite}.Check()
		resumable := Folder{Flag: "-out", Path: c.path, Kind: "train", Overwrite: c.overwrite, Resumable: true}.Check()
		if c.path == unfinished && !c.overwrite {
			if resumable == nil || !strings.Contains(resumable.Error(), "continue it with -resume") {
				t.Errorf("an unfinished resumable run: %v", resumable)
			}
		} else if (resumable == nil) != (err == nil) {
			t.Errorf("%s (overwrite %v): %v without Resumable, %v with", c.path, c.overwrite, err, resumable)
		}
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s (overwrite %v): %v", c.path, c.overwrite, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s (overwrite %v): error %v, want one saying %q", c.path, c.overwrite, err, c.want)
		}
	}
}

func TestCheckFile(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "report.md")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		file:                                 "",
		filepath.Join(root, "new", "r.md"):   "",
		root:                                 "is a folder",
		filepath.Join(file, "r.md"):          "is a file",
		filepath.Join(unwritable(t), "r.md"): "cannot write",
	} {
		err := CheckFile("-o", path)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", path, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %v, want %q", path, err, want)
		}
	}
}

// A folder whose last write was killed between the two renames of its swap
// is checked as the write left it: here a finished run.
func TestCheckSeesAnInterruptedWrite(t *testing.T) {
	root := t.TempDir()
	committed := filepath.Join(root, ".out.new")
	if err := os.Mkdir(committed, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeRecord(committed, "train", true); err != nil {
		t.Fatal(err)
	}
	err := Folder{Flag: "-out", Path: filepath.Join(root, "out"), Kind: "train"}.Check()
	if err == nil || !strings.Contains(err.Error(), "finished") {
		t.Fatalf("error %v, want the finished run refused", err)
	}
}

func TestClaim(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeRecord(dir, "train", true); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f := Folder{Flag: "-out", Path: dir, Kind: "sweep", Overwrite: true}
	if err := f.Check(); err != nil {
		t.Fatal(err)
	}
	if err := f.Claim(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != RecordFile {
		t.Fatalf("a claimed folder holds %v", entries)
	}
	rec, ok, err := ReadRecord(dir)
	if err != nil || !ok || rec != (Record{Kind: "sweep"}) {
		t.Fatalf("record %+v, %v, %v", rec, ok, err)
	}
}

func TestWriteAndUpdate(t *testing.T) {
	f := Folder{Flag: "-out", Path: filepath.Join(t.TempDir(), "out"), Kind: "train"}
	write := func(name string) func(string) error {
		return func(dir string) error { return os.WriteFile(filepath.Join(dir, name), nil, 0o644) }
	}
	entries := func() string {
		es, _ := os.ReadDir(f.Path)
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		return strings.Join(names, " ")
	}
	record := func() Record {
		rec, ok, err := ReadRecord(f.Path)
		if err != nil || !ok {
			t.Fatalf("record: %v, %v", ok, err)
		}
		return rec
	}
	if err := f.Write(true, write("a")); err != nil {
		t.Fatal(err)
	}
	if got := entries(); got != "a "+RecordFile || !record().Finished {
		t.Fatalf("after Write: %s, %+v", got, record())
	}
	if err := f.Update(false, write("b")); err != nil {
		t.Fatal(err)
	}
	if got := entries(); got != "a b "+RecordFile || record().Finished {
		t.Fatalf("after Update: %s, %+v", got, record())
	}
	if err := f.Write(true, write("c")); err != nil {
		t.Fatal(err)
	}
	if got := entries(); got != "c "+RecordFile {
		t.Fatalf("after the second Write: %s", got)
	}
}

// Begin takes over a folder for a new run and accepts only an unfinished
// run of its kind to resume; End keeps a checkpoint beside an interrupted
// run's outputs and drops it with a finished run's.
func TestBeginAndEnd(t *testing.T) {
	root := t.TempDir()
	f := Folder{Flag: "-out", Path: filepath.Join(root, "run"), Kind: "k", Resumable: true}
	if err := f.Begin(true); err == nil || !strings.Contains(err.Error(), "no run to continue") {
		t.Errorf("resuming a missing run: %v", err)
	}
	if err := f.Begin(false); err != nil {
		t.Fatal(err)
	}
	if rec, ok, err := ReadRecord(f.Path); err != nil || !ok || rec.Kind != "k" || rec.Finished {
		t.Fatalf("claimed record %+v %v %v", rec, ok, err)
	}
	if err := f.Begin(false); err == nil || !strings.Contains(err.Error(), "-resume") {
		t.Errorf("a new run over an unfinished one: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(f.Path, "checkpoint"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string) func(string) error {
		return func(dir string) error { return os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644) }
	}
	if err := f.End(false, write("a")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "checkpoint"} {
		if _, err := os.Stat(filepath.Join(f.Path, name)); err != nil {
			t.Errorf("after an interrupted end: %v", err)
		}
	}
	if err := f.Begin(true); err != nil {
		t.Errorf("resuming an unfinished run: %v", err)
	}
	other := f
	other.Kind = "other"
	if err := other.Begin(true); err == nil || !strings.Contains(err.Error(), "not a other run") {
		t.Errorf("resuming another kind: %v", err)
	}
	over := f
	over.Overwrite = true
	if err := over.Begin(true); err == nil || !strings.Contains(err.Error(), "give one of them") {
		t.Errorf("-resume with -overwrite: %v", err)
	}
	if err := f.End(true, write("b")); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(f.Path)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "b,"+RecordFile {
		t.Errorf("after a finished end the folder holds %v", names)
	}
	if err := f.Begin(true); err == nil || !strings.Contains(err.Error(), "finished") {
		t.Errorf("resuming a finished run: %v", err)
	}
}
