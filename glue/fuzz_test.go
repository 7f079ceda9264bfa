package glue

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var fuzzTasks = []string{"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}

// FuzzParse feeds arbitrary bytes to the parser as a file of one of the
// tasks: it must return examples or a *ParseError, never panic, and the
// examples it returns must be well formed (a pair with one empty text is
// data, as in real QQP).
func FuzzParse(f *testing.F) {
	seeds := map[string]string{
		"mrpc": mrpcTrain, "stsb": stsbTrain, "qqp": qqpTrain, "mnli": mnliMatched, "wnli": wnliTrain,
		"rte":  "index\tsentence1\tsentence2\tlabel\n0\t\"a\tb\t\tentailment\n",
		"sst2": "sentence\tlabel\r\n\" x\t1\r\ny\t0",
		"cola": "gj04\t1\t\tGood.\ngj04\t0\t*\tBad bad.\n",
		"qnli": "index\tquestion\tsentence\n0\tWhy?\tBecause.\n",
	}
	for i, task := range fuzzTasks {
		f.Add([]byte(seeds[task]), uint8(i))
	}
	// A QQP row with an empty question: data, as in the real file.
	f.Add([]byte("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t2\t3\t\tWhy?\t0\n"), uint8(4))
	// The first lines of the real files, if present.
	dir := filepath.Join("..", "..", "shared", "data", "glue")
	for _, s := range []struct {
		path string
		task uint8
	}{{"CoLA/train.tsv", 0}, {"CoLA/test.tsv", 0}, {"SST-2/dev.tsv", 1}, {"QNLI/dev.tsv", 6}, {"RTE/dev.tsv", 7}} {
		if b, err := os.ReadFile(filepath.Join(dir, s.path)); err == nil {
			f.Add(b[:min(len(b), 2000)], s.task)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		task, _ := Lookup(fuzzTasks[int(which)%len(fuzzTasks)])
		exs, err := Parse(bytes.NewReader(data), task.Name, "fuzz.tsv")
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != "fuzz.tsv" || pe.Line < 1 {
				t.Fatalf("error %v is not a ParseError with a line", err)
			}
			return
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		prev := 0
		for _, e := range exs {
			if e.Line <= prev || e.Line > lines {
				t.Fatalf("line %d after %d in a %d-line file", e.Line, prev, lines)
			}
			prev = e.Line
			// A single sentence is never blank; one text of a pair may be
			// (QQP has empty questions), both may not.
			blankA, blankB := strings.TrimSpace(e.TextA) == "", strings.TrimSpace(e.TextB) == ""
			if (!task.Pair && (blankA || e.TextB != "")) || (task.Pair && blankA && blankB) {
				t.Fatalf("bad texts %q, %q", e.TextA, e.TextB)
			}
			if strings.ContainsAny(e.TextA+e.TextB, "\t\n") {
				t.Fatalf("text with a tab or newline: %q, %q", e.TextA, e.TextB)
			}
			if e.Label < -1 || e.Label >= task.NumLabels {
				t.Fatalf("label %d", e.Label)
			}
			if e.Score < 0 || e.Score > 5 || (!task.Regression() && e.Score != 0) {
				t.Fatalf("score %v", e.Score)
			}
		}
	})
}
