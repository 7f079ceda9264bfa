// Package atomicfile writes files and folders so that what is on disk is
// always one complete version, the previous or the new one, even when the
// process is killed at any instant.
//
// A file (Write) goes to a temporary file in the same folder, is synced, and
// is renamed over the destination only when everything succeeded. A folder
// (WriteDir, UpdateDir) is a set of files written together: it is filled in
// a temporary sibling folder, synced, and swapped in with renames; a write
// killed half-way is finished or undone by the next write of the same
// destination (Recover), and readers find the complete version meanwhile
// (Resolve). Temporary files and folders that killed writes left behind are
// removed by the next write of the same destination.
package atomicfile

import (
	"bufio"
	"io"
	"os"
	"path/filepath"

	"github.com/pkg/errors"
)

// Write creates or replaces path with what fill writes. On any error the
// temporary file is removed and an existing file at path is left untouched;
// temporary files of earlier writes of path that were killed are removed.
func Write(path string, fill func(w io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	if err := removeTemps(path); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return errors.Wrapf(err, "writing %s", path)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err = fill(bw); err != nil {
		return errors.Wrapf(err, "writing %s", path)
	}
	if err = bw.Flush(); err != nil {
		return errors.Wrapf(err, "writing %s", path)
	}
	if err = tmp.Sync(); err != nil {
		return errors.Wrapf(err, "syncing %s", path)
	}
	if err = tmp.Close(); err != nil {
		return errors.Wrapf(err, "closing %s", path)
	}
	if err = os.Chmod(tmp.Name(), 0o644); err != nil {
		return errors.Wrapf(err, "writing %s", path)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return errors.Wrapf(err, "renaming into %s", path)
	}
	syncDir(dir) // make the rename durable
	step("wrote " + filepath.Base(path))
	return nil
}

// WriteBytes atomically replaces path with data.
func WriteBytes(path string, data []byte) error {
	return Write(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}
