package glue

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestSubmissionFileNames(t *testing.T) {
	want := map[string]string{"cola": "CoLA.tsv", "sst2": "SST-2.tsv", "mrpc": "MRPC.tsv", "stsb": "STS-B.tsv", "qqp": "QQP.tsv",
		"mnli": "MNLI-m.tsv", "qnli": "QNLI.tsv", "rte": "RTE.tsv", "wnli": "WNLI.tsv"}
	for _, task := range Tasks() {
		got, err := task.SubmissionFile("test")
		if err != nil || got != want[task.Name] {
			t.Errorf("%s: %q, %v; want %q", task.Name, got, err, want[task.Name])
		}
		if _, err := task.SubmissionFile("dev"); err == nil {
			t.Errorf("%s: a submission of the dev split was accepted", task.Name)
		}
	}
	mnli, _ := Lookup("mnli")
	if got, err := mnli.SubmissionFile("test_mismatched"); err != nil || got != "MNLI-mm.tsv" {
		t.Errorf("mnli mismatched: %q, %v", got, err)
	}
	if got, err := mnli.SubmissionFile("test_matched"); err != nil || got != "MNLI-m.tsv" {
		t.Errorf("mnli matched: %q, %v", got, err)
	}
	rte, _ := Lookup("rte")
	if _, err := rte.SubmissionFile("test_mismatched"); err == nil {
		t.Error("rte accepted test_mismatched")
	}
}

func TestPredictionString(t *testing.T) {
	cases := []struct {
		task string
		pred float64
		want string
	}{
		{"rte", 0, "entailment"}, {"rte", 1, "not_entailment"}, {"qnli", 1, "not_entailment"},
		{"mnli", 0, "entailment"}, {"mnli", 1, "neutral"}, {"mnli", 2, "contradiction"},
		{"cola", 1, "1"}, {"sst2", 0, "0"}, {"mrpc", 1, "1"}, {"qqp", 0, "0"}, {"wnli", 1, "1"},
		{"stsb", 2.34567, "2.346"}, {"stsb", 5.7, "5.000"}, {"stsb", -0.2, "0.000"}, {"stsb", 0, "0.000"},
	}
	for _, c := range cases {
		task, _ := Lookup(c.task)
		got, err := task.PredictionString(c.pred)
		if err != nil || got != c.want {
			t.Errorf("%s %v: %q, %v; want %q", c.task, c.pred, got, err, c.want)
		}
	}
	rte, _ := Lookup("rte")
	stsb, _ := Lookup("stsb")
	for _, bad := range []struct {
		task Task
		pred float64
	}{{rte, 2}, {rte, -1}, {rte, 0.5}, {rte, math.NaN()}, {stsb, math.Inf(1)}, {stsb, math.NaN()}} {
		if s, err := bad.task.PredictionString(bad.pred); err == nil {
			t.Errorf("%s %v: accepted as %q", bad.task.Name, bad.pred, s)
		}
	}
}

func TestSubmissionRoundTrip(t *testing.T) {
	rte, _ := Lookup("rte")
	exs := []Example{{ID: "0", Line: 2}, {ID: "1", Line: 3}, {ID: "7", Line: 4}}
	var buf bytes.Buffer
	if err := WriteSubmission(&buf, rte, exs, []float64{1, 0, 1}); err != nil {
		t.Fatal(err)
	}
	if want := "index\tprediction\n0\tnot_entailment\n1\tentailment\n7\tnot_entailment\n"; buf.String() != want {
		t.Fatalf("wrote %q, want %q", buf.String(), want)
	}
	ids, preds, err := ReadSubmission(&buf, rte, "RTE.tsv")
	if err != nil || !reflect.DeepEqual(ids, []string{"0", "1", "7"}) || !reflect.DeepEqual(preds, []string{"not_entailment", "entailment", "not_entailment"}) {
		t.Errorf("read back %v %v %v", ids, preds, err)
	}
	if err := WriteSubmission(&buf, rte, exs, []float64{1}); err == nil {
		t.Error("fewer predictions than examples accepted")
	}
	dup := []Example{{ID: "3", Line: 2}, {ID: "3", Line: 3}}
	if err := WriteSubmission(&bytes.Buffer{}, rte, dup, []float64{0, 1}); err == nil || !strings.Contains(err.Error(), `share the ID "3"`) {
		t.Errorf("duplicate IDs: %v", err)
	}
	for _, bad := range []string{"", "id\tprediction\n", "index\tprediction\n0\tyes\n", "index\tprediction\n0 entailment\n"} {
		if _, _, err := ReadSubmission(strings.NewReader(bad), rte, "x.tsv"); err == nil {
			t.Errorf("%q read without error", bad)
		}
	}
	stsb, _ := Lookup("stsb")
	if _, _, err := ReadSubmission(strings.NewReader("index\tprediction\n0\t5.5\n"), stsb, "x.tsv"); err == nil {
		t.Error("an STS-B score above 5 was read")
	}
}

func TestLoadDiagnostic(t *testing.T) {
	dir := writeGLUE(t, map[string]string{"diagnostic/diagnostic.tsv": "index\tsentence1\tsentence2\n0\tA cat sat.\tA cat is sitting.\n1\tNo dog ran.\tA dog ran.\n"})
	exs, err := LoadDiagnostic(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(exs) != 2 || exs[1].ID != "1" || exs[1].TextA != "No dog ran." || exs[1].TextB != "A dog ran." || exs[1].Labeled() {
		t.Errorf("read %+v", exs)
	}
	if _, err := LoadDiagnostic(t.TempDir()); err == nil {
		t.Error("a GLUE folder without the diagnostic set read without error")
	}
}
