package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/lilygo/lily/glue"
	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/pkg/errors"
)

// stdio is the -input value for standard input and the -out value for
// standard output.
const stdio = "-"

// runPredict writes a fine-tuned model's predictions: with -input, JSON
// Lines for the given examples; otherwise the task's GLUE submission files.
func runPredict(c useConfig, stdin io.Reader, w io.Writer) error {
	t, err := loadTrained(c)
	if err != nil {
		return err
	}
	defer t.close()
	if c.Input != "" {
		return t.predictInput(stdin, w)
	}
	return t.predictTest(w)
}

// submission is one submission file to write: examples and the split they
// came from.
type submission struct {
	file  string
	split string
	exs   []glue.Example
}

// predictTest writes the submission file of every test split of the task
// (and AX for MNLI, when the diagnostic set is there) into -out, keeping the
// files of other tasks there.
func (t *trained) predictTest(w io.Writer) error {
	splits := []string{"test"}
	if t.task.Name == "mnli" {
		splits = []string{"test_matched", "test_mismatched"}
	}
	var subs []submission
	for _, split := range splits {
		exs, err := glue.Load(t.c.GlueDir, t.task.Name, split)
		if err != nil {
			return err
		}
		file, err := t.task.SubmissionFile(split)
		if err != nil {
			return err
		}
		subs = append(subs, submission{file: file, split: split, exs: exs})
	}
	if t.task.Name == "mnli" {
		diag := filepath.Join(t.c.GlueDir, glue.DiagnosticDir, glue.DiagnosticFileName)
		if _, err := os.Stat(diag); err == nil {
			exs, err := glue.LoadDiagnostic(t.c.GlueDir)
			if err != nil {
				return err
			}
			subs = append(subs, submission{file: glue.DiagnosticSubmission, split: "diagnostic", exs: exs})
		} else {
			fmt.Fprintf(w, "NOTE: no %s, so no %s (the GLUE server wants it with the MNLI files)\n", diag, glue.DiagnosticSubmission)
		}
	}
	preds := make([][]float64, len(subs))
	for i, s := range subs {
		enc, err := t.texts(s.exs)
		if err != nil {
			return err
		}
		if preds[i], err = t.sm.predict(enc, t.c.BatchSize, t.c.MaxLen); err != nil {
			return err
		}
	}
	// A submission folder collects the files of every task, so it is
	// updated (other tasks' files kept) and its record stays unfinished:
	// the next task's predict adds to it without -overwrite.
	err := t.c.folder().Update(false, func(dir string) error {
		for i, s := range subs {
			path := filepath.Join(dir, s.file)
			if err := atomicfile.Write(path, func(f io.Writer) error { return glue.WriteSubmission(f, t.task, s.exs, preds[i]) }); err != nil {
				return errors.Wrapf(err, "writing %s", s.file)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, s := range subs {
		fmt.Fprintf(w, "wrote %s: %d predictions for %s %s\n", filepath.Join(t.c.Out, s.file), len(preds[i]), t.task.Name, s.split)
	}
	return nil
}

// readInput reads -input: standard input lines, a .jsonl file, or a TSV
// file with the task's columns.
func (t *trained) readInput(stdin io.Reader) ([]glue.Example, error) {
	if t.c.Input == stdio {
		return glue.ParseLines(stdin, t.task.Name, "standard input")
	}
	f, err := os.Open(t.c.Input)
	if err != nil {
		return nil, errors.Wrap(err, "predict -input")
	}
	defer f.Close()
	switch strings.ToLower(filepath.Ext(t.c.Input)) {
	case ".jsonl", ".json":
		return glue.ParseJSONL(f, t.task.Name, t.c.Input)
	}
	return glue.Parse(f, t.task.Name, t.c.Input)
}

// predictInput writes JSON Lines with the label and class probabilities (or
// the score) of every example of -input.
func (t *trained) predictInput(stdin io.Reader, w io.Writer) error {
	exs, err := t.readInput(stdin)
	if err != nil {
		return err
	}
	enc, err := t.texts(exs)
	if err != nil {
		return err
	}
	logits, err := t.sm.logits(enc, t.c.BatchSize, t.c.MaxLen, nil)
	if err != nil {
		return err
	}
	preds := make([]glue.Prediction, len(exs))
	for i, e := range exs {
		if preds[i], err = t.task.Predict(e, logits[i]); err != nil {
			return err
		}
	}
	if t.c.Out == "" || t.c.Out == stdio {
		return glue.WritePredictions(w, preds)
	}
	if err := atomicfile.Write(t.c.Out, func(f io.Writer) error { return glue.WritePredictions(f, preds) }); err != nil {
		return errors.Wrapf(err, "writing %s", t.c.Out)
	}
	fmt.Fprintf(w, "wrote %s: %d predictions\n", t.c.Out, len(preds))
	return nil
}
