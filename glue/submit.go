package glue

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The diagnostic set AX is scored with an MNLI model: its file holds
// sentence pairs without labels, and its predictions are MNLI labels.
const (
	// DiagnosticDir is the diagnostic set's folder in a GLUE directory, as
	// GLUE's download script lays it out (glue_data/diagnostic).
	DiagnosticDir = "diagnostic"
	// DiagnosticFileName is the diagnostic set's file in DiagnosticDir
	// (columns index, sentence1, sentence2).
	DiagnosticFileName = "diagnostic.tsv"
	// DiagnosticSubmission is the submission file name of the diagnostic set.
	DiagnosticSubmission = "AX.tsv"
)

// submissionHeader is the first line of every GLUE submission file.
const submissionHeader = "index\tprediction"

// SubmissionFile returns the file name the GLUE benchmark server expects for
// the predictions on a test split: the task's folder name with .tsv
// (CoLA.tsv, SST-2.tsv, MRPC.tsv, STS-B.tsv, QQP.tsv, QNLI.tsv, RTE.tsv,
// WNLI.tsv), and for MNLI MNLI-m.tsv ("test" or "test_matched") and
// MNLI-mm.tsv ("test_mismatched"). The diagnostic set's is
// [DiagnosticSubmission].
func (t Task) SubmissionFile(split string) (string, error) {
	switch s := strings.ToLower(split); {
	case t.Name == "mnli" && (s == "test" || s == "test_matched"):
		return "MNLI-m.tsv", nil
	case t.Name == "mnli" && s == "test_mismatched":
		return "MNLI-mm.tsv", nil
	case t.Name != "mnli" && s == "test":
		return t.Dir + ".tsv", nil
	}
	if t.Name == "mnli" {
		return "", fmt.Errorf("glue: mnli has no test split %q to submit (want test, test_matched or test_mismatched)", split)
	}
	return "", fmt.Errorf("glue: %s has no test split %q to submit (want test)", t.Name, split)
}

// PredictionString returns a prediction as the GLUE server expects it: the
// label string of class index pred (Task.Labels: "entailment" or
// "not_entailment" for RTE and QNLI, MNLI's three labels, "0" or "1"
// otherwise), or for STS-B the score clipped to [0, 5] with three decimals.
// A class index out of range or a non-finite score is an error.
func (t Task) PredictionString(pred float64) (string, error) {
	if math.IsNaN(pred) || math.IsInf(pred, 0) {
		return "", fmt.Errorf("glue: %s prediction %v is not a finite number", t.Name, pred)
	}
	if t.Regression() {
		return strconv.FormatFloat(math.Min(5, math.Max(0, pred)), 'f', 3, 64), nil
	}
	i := int(pred)
	if float64(i) != pred || i < 0 || i >= len(t.Labels) {
		return "", fmt.Errorf("glue: %s prediction %v is not a class index in [0, %d)", t.Name, pred, len(t.Labels))
	}
	return t.Labels[i], nil
}

// WriteSubmission writes predictions in the GLUE server's format: a header
// "index\tprediction", then one line per example with its ID and
// [Task.PredictionString] of its prediction. preds are class indices (or
// STS-B scores) in the order of examples; every example needs a distinct,
// non-empty ID without tabs or newlines.
func WriteSubmission(w io.Writer, t Task, examples []Example, preds []float64) error {
	if len(examples) != len(preds) {
		return fmt.Errorf("glue: %d examples but %d predictions", len(examples), len(preds))
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, submissionHeader)
	seen := make(map[string]int, len(examples))
	for i, e := range examples {
		if e.ID == "" || strings.ContainsAny(e.ID, "\t\r\n") {
			return fmt.Errorf("glue: example %d (line %d) has the ID %q, which a submission file cannot hold", i, e.Line, e.ID)
		}
		if j, dup := seen[e.ID]; dup {
			return fmt.Errorf("glue: examples %d and %d (lines %d and %d) share the ID %q", j, i, examples[j].Line, e.Line, e.ID)
		}
		seen[e.ID] = i
		s, err := t.PredictionString(preds[i])
		if err != nil {
			return fmt.Errorf("example %q: %w", e.ID, err)
		}
		fmt.Fprintf(bw, "%s\t%s\n", e.ID, s)
	}
	return bw.Flush()
}

// ReadSubmission reads a submission file as [WriteSubmission] writes it and
// returns its IDs and prediction strings, checking the header and that
// every line has two fields and every prediction is one the task allows.
func ReadSubmission(r io.Reader, t Task, name string) (ids, preds []string, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := sc.Text()
		if line == 1 {
			if s != submissionHeader {
				return nil, nil, &ParseError{File: name, Line: line, Msg: fmt.Sprintf("header %q, want %q", clip(s), submissionHeader)}
			}
			continue
		}
		f := strings.Split(s, "\t")
		if len(f) != 2 || f[0] == "" {
			return nil, nil, &ParseError{File: name, Line: line, Msg: fmt.Sprintf("%q is not an index and a prediction separated by one tab", clip(s))}
		}
		if t.Regression() {
			x, err := strconv.ParseFloat(f[1], 64)
			if err != nil || x < 0 || x > 5 {
				return nil, nil, &ParseError{File: name, Line: line, Msg: fmt.Sprintf("score %q is not a number in [0, 5]", f[1])}
			}
		} else if t.labelIndex(f[1]) < 0 {
			return nil, nil, &ParseError{File: name, Line: line, Msg: fmt.Sprintf("unknown %s label %q (want one of %q)", t.Name, f[1], t.Labels)}
		}
		ids, preds = append(ids, f[0]), append(preds, f[1])
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("glue: reading %s: %w", name, err)
	}
	if line == 0 {
		return nil, nil, &ParseError{File: name, Line: 1, Msg: "empty file, want a submission header"}
	}
	return ids, preds, nil
}

// LoadDiagnostic reads the diagnostic set AX from
// <glueDir>/diagnostic/diagnostic.tsv (columns index, sentence1, sentence2)
// as unlabeled MNLI examples.
func LoadDiagnostic(glueDir string) ([]Example, error) {
	p := filepath.Join(glueDir, DiagnosticDir, DiagnosticFileName)
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("glue: %w", err)
	}
	defer f.Close()
	t, _ := Lookup("mnli")
	return parse(f, t, p, false)
}
