// Package outdir is what the commands share about their output folders:
// checking an -out flag before any work is done, refusing to replace a
// folder that a different kind of run or a finished run wrote unless told
// to (-overwrite, as Hugging Face Trainer's overwrite_output_dir), and the
// record, written with a run's results, that says which run wrote a folder.
package outdir

import (
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/pkg/errors"
)

// RecordFile is the name of the record in a command's output folder.
const RecordFile = "lily_run.json"

// Record is RecordFile: the kind of run that wrote the folder (such as
// "roberta-glue finetune") and whether it ran to its end.
type Record struct {
	Kind     string `json:"kind"`
	Finished bool   `json:"finished"`
}

// Folder is the output folder of a run.
type Folder struct {
	Flag      string // the flag that names it, for messages, e.g. "-out"
	Path      string
	Kind      string // the kind of run that writes it
	Overwrite bool   // replace a finished run or another kind of run
	// Resumable runs (-resume) are not replaced unfinished either without
	// Overwrite: they hold checkpoints to continue from.
	Resumable bool
}

// Check validates the folder before any work: the path must be a folder
// or a place where one can be made, writable; an existing non-empty folder
// must hold an unfinished run of the same kind (for a Resumable kind: no
// run), or, with Overwrite, any run a lily command recorded. A folder
// without a record is never replaced.
// Check first finishes a write of the folder that a killed run left
// half-way (atomicfile.Recover).
func (f Folder) Check() error {
	if f.Path == "" {
		return errors.Errorf("%s is empty; give a folder", f.Flag)
	}
	if err := writablePlace(f.Flag, f.Path); err != nil {
		return err
	}
	if err := atomicfile.Recover(f.Path); err != nil {
		return errors.Wrapf(err, "%s %s", f.Flag, f.Path)
	}
	entries, err := os.ReadDir(f.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return errors.Wrapf(err, "%s %s", f.Flag, f.Path)
	case len(entries) == 0:
		return nil
	}
	rec, ok, err := ReadRecord(f.Path)
	switch {
	case err != nil:
		return errors.Wrapf(err, "%s %s", f.Flag, f.Path)
	case !ok:
		return errors.Errorf("%s %s is not empty and has no %s, so no lily command (of this version) wrote it; give a new or empty folder, or remove it first", f.Flag, f.Path, RecordFile)
	case f.Overwrite:
		return nil
	case rec.Kind != f.Kind:
		return errors.Errorf("%s %s holds the output of a %s run, not of %s; give another folder, or add -overwrite to replace it", f.Flag, f.Path, rec.Kind, f.Kind)
	case rec.Finished:
		return errors.Errorf("%s %s holds a finished %s run; give another folder, or add -overwrite to replace it", f.Flag, f.Path, f.Kind)
	case f.Resumable:
		return errors.Errorf("%s %s holds an unfinished %s run; continue it with -resume, or add -overwrite to replace it", f.Flag, f.Path, f.Kind)
	}
	return nil
}

// CheckFile validates a flag that names an output file, before any work:
// not a folder, and in a folder that exists or can be made, where this
// process can write.
func CheckFile(flag, path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return errors.Errorf("%s %s is a folder; give a file path", flag, path)
	}
	return writablePlace(flag, filepath.Dir(path))
}

// writablePlace checks that path is a folder, or can become one, in a place
// this process can write to: path itself when it exists, and the folder
// that holds it (atomic writes put their temporary folder beside it).
func writablePlace(flag, path string) error {
	fi, err := os.Stat(path)
	switch {
	case err == nil && !fi.IsDir():
		return errors.Errorf("%s %s is a file; give a folder", flag, path)
	case err == nil:
		if err := probe(path); err != nil {
			return errors.Errorf("%s %s: cannot write in it (%v); give a folder you can write to", flag, path, err)
		}
	case !missing(err):
		return errors.Wrapf(err, "%s %s", flag, path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return errors.Wrapf(err, "%s %s", flag, path)
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		switch {
		case err == nil && !fi.IsDir():
			return errors.Errorf("%s %s: %s is a file, not a folder", flag, path, dir)
		case err == nil:
			if err := probe(dir); err != nil {
				return errors.Errorf("%s %s: cannot write in %s (%v); give a folder you can write to", flag, path, dir, err)
			}
			return nil
		case !missing(err):
			return errors.Wrapf(err, "%s %s", flag, path)
		}
		if filepath.Dir(dir) == dir {
			return errors.Errorf("%s %s: no folder of it exists", flag, path)
		}
	}
}

// missing reports whether err says that a path does not exist (or that a
// file stands where a folder of it would be).
func missing(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// probe creates and removes a temporary file in dir.
func probe(dir string) error {
	f, err := os.CreateTemp(dir, ".lily-probe-*")
	if err != nil {
		return errors.Cause(err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// ReadRecord reads the record of folder dir; ok is false when it has none.
func ReadRecord(dir string) (rec Record, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, RecordFile))
	if errors.Is(err, os.ErrNotExist) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, errors.Wrap(err, "reading the run record")
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.Kind == "" {
		return rec, false, errors.Errorf("%s is not a run record (want {\"kind\": ..., \"finished\": ...})", filepath.Join(dir, RecordFile))
	}
	return rec, true, nil
}

// writeRecord writes the record of a run of kind into dir.
func writeRecord(dir, kind string, finished bool) error {
	b, err := json.MarshalIndent(Record{Kind: kind, Finished: finished}, "", "  ")
	if err != nil {
		return errors.Wrap(err, "encoding the run record")
	}
	return atomicfile.WriteBytes(filepath.Join(dir, RecordFile), append(b, '\n'))
}

// Write replaces the folder as a whole (atomicfile.WriteDir) with what fill
// writes into the temporary folder it is given and the run's record, which
// says whether the run finished: a run's results, all or nothing.
func (f Folder) Write(finished bool, fill func(dir string) error) error {
	return atomicfile.WriteDir(f.Path, f.withRecord(finished, fill))
}

// Update is Write that keeps the entries of the folder that fill does not
// write (atomicfile.UpdateDir): for a run that adds to its folder as it
// goes, such as a sweep's summary beside its runs' folders.
func (f Folder) Update(finished bool, fill func(dir string) error) error {
	return atomicfile.UpdateDir(f.Path, f.withRecord(finished, fill))
}

// withRecord returns fill followed by writing the record.
func (f Folder) withRecord(finished bool, fill func(dir string) error) func(dir string) error {
	return func(dir string) error {
		if fill != nil {
			if err := fill(dir); err != nil {
				return err
			}
		}
		return writeRecord(dir, f.Kind, finished)
	}
}

// Claim replaces the folder with one that holds only the record of an
// unfinished run of its kind: what a run that fills its folder as it goes
// (pretraining, sweeps) writes first, after Check.
func (f Folder) Claim() error { return f.Write(false, nil) }

// Begin checks the folder of a resumable run before any work and takes it
// over: a new run needs what Check accepts and then claims the folder (an
// unfinished record, so that checkpoints can be written into it); a resumed
// run (-resume) needs an unfinished run of this kind there, whose
// interrupted last write is finished first.
func (f Folder) Begin(resume bool) error {
	if !resume {
		if err := f.Check(); err != nil {
			return err
		}
		return f.Claim()
	}
	if f.Overwrite {
		return errors.New("-resume continues the run in " + f.Flag + " and -overwrite replaces it; give one of them")
	}
	if err := atomicfile.Recover(f.Path); err != nil {
		return errors.Wrapf(err, "-resume: %s %s", f.Flag, f.Path)
	}
	rec, ok, err := ReadRecord(f.Path)
	switch {
	case err != nil:
		return errors.Wrapf(err, "-resume: %s %s", f.Flag, f.Path)
	case !ok:
		return errors.Errorf("-resume: %s %s holds no run to continue; start one without -resume", f.Flag, f.Path)
	case rec.Kind != f.Kind:
		return errors.Errorf("-resume: %s %s holds a %s run, not a %s run", f.Flag, f.Path, rec.Kind, f.Kind)
	case rec.Finished:
		return errors.Errorf("-resume: %s %s holds a finished %s run; there is nothing to continue", f.Flag, f.Path, f.Kind)
	}
	return nil
}

// End writes the run's outputs: a finished run replaces the folder as a
// whole (its checkpoints go with it), an interrupted one updates it, keeping
// the checkpoint that -resume continues from.
func (f Folder) End(finished bool, fill func(dir string) error) error {
	if finished {
		return f.Write(true, fill)
	}
	return f.Update(false, fill)
}

// Admit checks the folder of a resumable run before any work: a resumed
// run takes it over at once (Begin(true)); a new one is only checked here
// and claimed with Begin(false) once its model and data are loaded, so
// that a run that fails to start leaves no unfinished run behind.
func (f Folder) Admit(resume bool) error {
	if resume {
		return f.Begin(true)
	}
	return f.Check()
}
