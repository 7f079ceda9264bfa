package atomicfile

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/pkg/errors"
)

// A folder write goes through recognisable siblings of the destination
// /p/out, in the destination's parent folder:
//
//	/p/.out.tmp-123  being filled; incomplete, removed by the next writer
//	/p/.out.new      complete and synced; replaces out as a whole
//	/p/.out.merge    complete and synced; out's other entries move into it
//	/p/.out.old      the previous out, being removed
//
// The rename of .tmp-123 to .new or .merge is the commit point. Before it
// the destination is untouched; after it the next writer (Recover) finishes
// the swap. At every instant /p/out is either the complete previous folder
// or the complete new one, except between the two renames of the swap, when
// it is absent and Resolve points readers to the committed sibling.
const (
	tmpMark   = ".tmp-"
	newMark   = ".new"
	mergeMark = ".merge"
	oldMark   = ".old"
)

// StepHook, when not nil, is called with the name of every step of a folder
// write as it is reached. Tests set it to stop the writer there, as a killed
// process would stop; it is nil otherwise.
var StepHook func(step string)

// step reports a reached step to StepHook.
func step(name string) {
	if StepHook != nil {
		StepHook(name)
	}
}

// active holds the temporary folders being filled by this process. A folder
// write into one of them (or below) needs no swap of its own: the enclosing
// write makes it atomic.
var active = struct {
	sync.Mutex
	dirs map[string]bool
}{dirs: map[string]bool{}}

// WriteDir replaces the folder dest as a whole with what fill writes into
// the temporary folder it is given: after WriteDir returns, dest holds
// exactly what fill wrote; if the process dies at any point, dest holds the
// complete previous folder or the complete new one (see Resolve). dest's
// parent is created if needed. Writes to one destination must not run
// concurrently.
func WriteDir(dest string, fill func(dir string) error) error {
	return writeDir(dest, fill, false)
}

// UpdateDir is WriteDir that keeps the entries of an existing dest that fill
// does not write: the entries fill writes replace their namesakes, all
// together, and the others stay. Use it for a set of files that shares its
// folder with other things, such as a model's files beside a tokenizer.
func UpdateDir(dest string, fill func(dir string) error) error {
	return writeDir(dest, fill, true)
}

// writeDir is WriteDir (merge false) or UpdateDir (merge true).
func writeDir(dest string, fill func(dir string) error, merge bool) error {
	dest, err := destination(dest)
	if err != nil {
		return err
	}
	if inActive(dest) {
		return fillInPlace(dest, fill, merge)
	}
	if err := Recover(dest); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dest), "."+filepath.Base(dest)+tmpMark+"*")
	if err != nil {
		return errors.Wrapf(err, "writing %s", dest)
	}
	step("created " + filepath.Base(tmp))
	if err := fillActive(tmp, fill); err != nil {
		os.RemoveAll(tmp)
		return errors.Wrapf(err, "writing %s", dest)
	}
	step("filled")
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return errors.Wrapf(err, "writing %s", dest)
	}
	if err := syncTree(tmp); err != nil {
		os.RemoveAll(tmp)
		return errors.Wrapf(err, "syncing %s", dest)
	}
	step("synced")
	commit := sibling(dest, newMark)
	if merge {
		commit = sibling(dest, mergeMark)
	}
	if err := os.Rename(tmp, commit); err != nil {
		os.RemoveAll(tmp)
		return errors.Wrapf(err, "writing %s", dest)
	}
	syncDir(filepath.Dir(dest))
	step("committed")
	return finish(dest, commit, merge)
}

// destination returns dest made absolute, with a symbolic link followed,
// after checking that it can be a folder: not a file, not the working
// directory or one of its parents, its parent created.
func destination(dest string) (string, error) {
	if dest == "" {
		return "", errors.New("atomicfile: empty folder path")
	}
	abs, err := filepath.Abs(dest)
	if err != nil {
		return "", errors.Wrapf(err, "writing %s", dest)
	}
	if fi, err := os.Lstat(abs); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if abs, err = filepath.EvalSymlinks(abs); err != nil {
			return "", errors.Wrapf(err, "writing %s", dest)
		}
	}
	if fi, err := os.Stat(abs); err == nil && !fi.IsDir() {
		return "", errors.Errorf("writing %s: it is a file, not a folder", dest)
	}
	if filepath.Dir(abs) == abs {
		return "", errors.Errorf("writing %s: cannot replace a root folder", dest)
	}
	if wd, err := os.Getwd(); err == nil && within(wd, abs) {
		return "", errors.Errorf("writing %s: it holds the working directory %s; write to a folder below it", dest, wd)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return "", errors.Wrapf(err, "writing %s", dest)
	}
	return abs, nil
}

// within reports whether path is dir or lies below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// inActive reports whether dest is, or lies in, a temporary folder this
// process is filling.
func inActive(dest string) bool {
	active.Lock()
	defer active.Unlock()
	for d := dest; ; d = filepath.Dir(d) {
		if active.dirs[d] {
			return true
		}
		if filepath.Dir(d) == d {
			return false
		}
	}
}

// fillActive runs fill on tmp, marked as a temporary folder meanwhile.
func fillActive(tmp string, fill func(dir string) error) error {
	active.Lock()
	active.dirs[tmp] = true
	active.Unlock()
	defer func() {
		active.Lock()
		delete(active.dirs, tmp)
		active.Unlock()
	}()
	return fill(tmp)
}

// fillInPlace writes a folder inside an enclosing write's temporary folder.
func fillInPlace(dest string, fill func(dir string) error, merge bool) error {
	if !merge {
		if err := os.RemoveAll(dest); err != nil {
			return errors.Wrapf(err, "writing %s", dest)
		}
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return errors.Wrapf(err, "writing %s", dest)
	}
	return errors.Wrapf(fill(dest), "writing %s", dest)
}

// sibling is the marked sibling of dest.
func sibling(dest, mark string) string {
	return filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+mark)
}

// exists reports whether path exists (a broken link counts).
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// finish completes the swap of a committed folder into dest: for a merge,
// moves dest's entries that the commit lacks into it; then retires dest to
// its .old sibling, renames the commit to dest and removes the old folder.
// Every step can be repeated, so Recover calls it to finish a killed write.
func finish(dest, commit string, merge bool) error {
	wrap := func(err error) error { return errors.Wrapf(err, "replacing %s", dest) }
	old := sibling(dest, oldMark)
	if exists(dest) {
		if merge {
			entries, err := os.ReadDir(dest)
			if err != nil {
				return wrap(err)
			}
			for _, e := range entries {
				to := filepath.Join(commit, e.Name())
				if exists(to) {
					continue
				}
				if err := os.Rename(filepath.Join(dest, e.Name()), to); err != nil {
					return wrap(err)
				}
				step("kept " + e.Name())
			}
			syncDir(commit)
		}
		if err := os.RemoveAll(old); err != nil {
			return wrap(err)
		}
		if err := os.Rename(dest, old); err != nil {
			return wrap(err)
		}
		step("retired")
	}
	if err := os.Rename(commit, dest); err != nil {
		return wrap(err)
	}
	syncDir(filepath.Dir(dest))
	step("swapped")
	if err := os.RemoveAll(old); err != nil {
		return wrap(err)
	}
	step("done")
	return nil
}

// Recover brings the folder dest back to a complete version after a write
// that was killed: a committed new version is swapped in, a retired old one
// with nothing to replace it is put back, and temporary and old siblings are
// removed. Every folder write calls it first; call it before listing a
// folder's entries that an interrupted UpdateDir may have moved (loaders
// that only read a written set use Resolve instead).
func Recover(dest string) error {
	dest, err := filepath.Abs(dest)
	if err != nil {
		return errors.Wrapf(err, "recovering %s", dest)
	}
	for _, c := range []struct {
		mark  string
		merge bool
	}{{newMark, false}, {mergeMark, true}} {
		if commit := sibling(dest, c.mark); exists(commit) {
			if err := finish(dest, commit, c.merge); err != nil {
				return errors.Wrap(err, "finishing an interrupted write")
			}
		}
	}
	old := sibling(dest, oldMark)
	if !exists(dest) && exists(old) {
		if err := os.Rename(old, dest); err != nil {
			return errors.Wrapf(err, "restoring %s", dest)
		}
	}
	if err := os.RemoveAll(old); err != nil {
		return errors.Wrapf(err, "recovering %s", dest)
	}
	return removeTemps(dest)
}

// removeTemps removes the temporary siblings that killed writes of path (a
// file or a folder) left behind.
func removeTemps(path string) error {
	pattern := filepath.Join(filepath.Dir(path), "."+escapeGlob(filepath.Base(path))+tmpMark+"*")
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return errors.Wrapf(err, "cleaning up beside %s", path)
	}
	for _, m := range matches {
		if err := os.RemoveAll(m); err != nil {
			return errors.Wrapf(err, "removing the leftover %s", m)
		}
	}
	return nil
}

// escapeGlob quotes the characters filepath.Match treats specially.
func escapeGlob(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}

// Resolve returns the path a reader should read the folder dest from: dest
// itself, or, when a write was killed between the two renames of its swap,
// the complete version waiting beside it. It changes nothing on disk.
func Resolve(dest string) string {
	if exists(dest) {
		return dest
	}
	for _, mark := range []string{newMark, mergeMark, oldMark} {
		if p := sibling(filepath.Clean(dest), mark); exists(p) {
			return p
		}
	}
	return dest
}

// syncTree flushes every file and folder under root to disk.
func syncTree(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir():
			syncDir(path)
		case d.Type().IsRegular():
			return syncPath(path)
		}
		return nil
	})
}

// syncDir flushes a folder's entries to disk where the file system can.
// Some file systems cannot sync folders; the renames are in place already,
// so that failure is ignored.
func syncDir(dir string) { syncPath(dir) }

// syncPath flushes a file, or a folder's entries, to disk.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
