package glue

import (
	"fmt"
	"strings"
)

// Metric names: the keys of the map returned by [Evaluate] and the values of
// [Task.Metrics] and [Task.Primary].
const (
	// MetricAccuracy is the fraction of predictions equal to the gold label.
	MetricAccuracy = "accuracy"
	// MetricF1 is the F1 score of the positive class (label "1").
	MetricF1 = "f1"
	// MetricAccAndF1 is the mean of accuracy and F1 (MRPC, QQP).
	MetricAccAndF1 = "acc_and_f1"
	// MetricMCC is the Matthews correlation coefficient (CoLA).
	MetricMCC = "mcc"
	// MetricPearson is the Pearson correlation coefficient (STS-B).
	MetricPearson = "pearson"
	// MetricSpearman is the Spearman rank correlation coefficient, with
	// tied values given their average rank (STS-B).
	MetricSpearman = "spearman"
	// MetricCorr is the mean of Pearson and Spearman (STS-B), the single
	// number the GLUE leaderboard averages into the GLUE score.
	MetricCorr = "corr"
)

// Task describes one GLUE task: its files, its labels and its metrics.
// Obtain one with [Lookup] or [Tasks]; the slices of a returned Task are
// copies and may be modified freely.
type Task struct {
	// Name is the canonical lower-case name: cola, sst2, mrpc, stsb, qqp,
	// mnli, qnli, rte or wnli.
	Name string
	// Dir is the task's folder in a standard GLUE directory, e.g. "SST-2".
	Dir string
	// NumLabels is the number of classes, or 1 for the regression task
	// STS-B.
	NumLabels int
	// Labels are the label strings as they appear in the files, in class
	// index order: Example.Label indexes this slice. Nil for STS-B.
	Labels []string
	// Pair reports whether an example has two texts (TextB is used).
	Pair bool
	// Metrics lists the keys [Evaluate] returns for this task.
	Metrics []string
	// Primary is the metric the task is usually ranked by; one of Metrics.
	Primary string

	cols columns
}

// Regression reports whether the task is scored by regression (STS-B), in
// which case the gold value of an example is its Score.
func (t Task) Regression() bool { return t.NumLabels == 1 }

// columns says where a task's fields are.
type columns struct {
	a, b     string   // header names of the text columns; b empty if single
	label    string   // header name of the label (or score) column
	ids      []string // header names that can hold the example ID, in order of preference
	idPair   [2]string
	other    []string  // other columns of the standard files
	headless *headless // format of files without a header, if the task has one
}

// headless is a fixed column layout for a file without a header row.
type headless struct {
	n, a, label int
}

var registry = []Task{
	{
		Name: "cola", Dir: "CoLA", NumLabels: 2, Labels: []string{"0", "1"},
		Metrics: []string{MetricMCC, MetricAccuracy}, Primary: MetricMCC,
		cols: columns{a: "sentence", label: "label", ids: []string{"index", "id"},
			headless: &headless{n: 4, a: 3, label: 1}},
	},
	{
		Name: "sst2", Dir: "SST-2", NumLabels: 2, Labels: []string{"0", "1"},
		Metrics: []string{MetricAccuracy}, Primary: MetricAccuracy,
		cols: columns{a: "sentence", label: "label", ids: []string{"index", "id"}},
	},
	{
		Name: "mrpc", Dir: "MRPC", NumLabels: 2, Labels: []string{"0", "1"}, Pair: true,
		Metrics: []string{MetricAccuracy, MetricF1, MetricAccAndF1}, Primary: MetricAccAndF1,
		cols: columns{a: "#1 String", b: "#2 String", label: "Quality", ids: []string{"index", "id"},
			idPair: [2]string{"#1 ID", "#2 ID"}},
	},
	{
		Name: "stsb", Dir: "STS-B", NumLabels: 1, Pair: true,
		Metrics: []string{MetricPearson, MetricSpearman, MetricCorr}, Primary: MetricPearson,
		cols: columns{a: "sentence1", b: "sentence2", label: "score", ids: []string{"index", "id"},
			other: []string{"genre", "filename", "year", "old_index", "source1", "source2"}},
	},
	{
		Name: "qqp", Dir: "QQP", NumLabels: 2, Labels: []string{"0", "1"}, Pair: true,
		Metrics: []string{MetricAccuracy, MetricF1, MetricAccAndF1}, Primary: MetricAccAndF1,
		cols: columns{a: "question1", b: "question2", label: "is_duplicate", ids: []string{"id", "index"},
			other: []string{"qid1", "qid2"}},
	},
	{
		Name: "mnli", Dir: "MNLI", NumLabels: 3, Labels: []string{"entailment", "neutral", "contradiction"}, Pair: true,
		Metrics: []string{MetricAccuracy}, Primary: MetricAccuracy,
		cols: columns{a: "sentence1", b: "sentence2", label: "gold_label", ids: []string{"index", "id"},
			other: []string{"promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
				"sentence1_parse", "sentence2_parse", "label1", "label2", "label3", "label4", "label5"}},
	},
	{
		Name: "qnli", Dir: "QNLI", NumLabels: 2, Labels: []string{"entailment", "not_entailment"}, Pair: true,
		Metrics: []string{MetricAccuracy}, Primary: MetricAccuracy,
		cols: columns{a: "question", b: "sentence", label: "label", ids: []string{"index", "id"}},
	},
	{
		Name: "rte", Dir: "RTE", NumLabels: 2, Labels: []string{"entailment", "not_entailment"}, Pair: true,
		Metrics: []string{MetricAccuracy}, Primary: MetricAccuracy,
		cols: columns{a: "sentence1", b: "sentence2", label: "label", ids: []string{"index", "id"}},
	},
	{
		Name: "wnli", Dir: "WNLI", NumLabels: 2, Labels: []string{"0", "1"}, Pair: true,
		Metrics: []string{MetricAccuracy}, Primary: MetricAccuracy,
		cols: columns{a: "sentence1", b: "sentence2", label: "label", ids: []string{"index", "id"}},
	},
}

// Tasks returns the nine GLUE tasks in the order of the GLUE paper.
func Tasks() []Task {
	out := make([]Task, len(registry))
	for i, t := range registry {
		out[i] = t.clone()
	}
	return out
}

// Lookup returns the task with the given name. Names are case-insensitive
// and may contain '-' or '_' ("SST-2", "sts_b" and "CoLA" all work).
func Lookup(name string) (Task, error) {
	key := strings.ToLower(name)
	key = strings.NewReplacer("-", "", "_", "", " ", "").Replace(key)
	for _, t := range registry {
		if t.Name == key {
			return t.clone(), nil
		}
	}
	return Task{}, fmt.Errorf("glue: unknown task %q (want one of cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli)", name)
}

func (t Task) clone() Task {
	if t.Labels != nil {
		t.Labels = append([]string(nil), t.Labels...)
	}
	t.Metrics = append([]string(nil), t.Metrics...)
	return t
}

// FileName returns the file name of a split in the task's folder:
// "train", "dev" and "test" give train.tsv, dev.tsv and test.tsv, except
// for MNLI, where "dev" means dev_matched.tsv and "test" means
// test_matched.tsv, and "dev_matched", "dev_mismatched", "test_matched"
// and "test_mismatched" name those files.
func (t Task) FileName(split string) (string, error) {
	s := strings.ToLower(split)
	switch s {
	case "train":
		return "train.tsv", nil
	case "dev", "test":
		if t.Name == "mnli" {
			return s + "_matched.tsv", nil
		}
		return s + ".tsv", nil
	case "dev_matched", "dev_mismatched", "test_matched", "test_mismatched":
		if t.Name == "mnli" {
			return s + ".tsv", nil
		}
	}
	if t.Name == "mnli" {
		return "", fmt.Errorf("glue: unknown split %q of mnli (want train, dev, dev_matched, dev_mismatched, test, test_matched or test_mismatched)", split)
	}
	return "", fmt.Errorf("glue: unknown split %q of %s (want train, dev or test)", split, t.Name)
}
