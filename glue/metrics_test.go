package glue

import (
	"math"
	"strings"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

func TestClassificationMetrics(t *testing.T) {
	cases := []struct {
		name         string
		preds, golds []int
		acc, f1, mcc float64
	}{
		// TP=2 FP=1 FN=1 TN=0: F1 = 4/6; MCC = (0·2 − 1·1)/√(3·3·1·1).
		{"mixed", []int{1, 0, 1, 1}, []int{1, 1, 1, 0}, 0.5, 2.0 / 3, -1.0 / 3},
		// TP=2 FP=1 TN=2 FN=1: MCC = (4 − 1)/√(3·3·3·3).
		{"balanced", []int{1, 1, 0, 0, 1, 0}, []int{1, 0, 0, 0, 1, 1}, 4.0 / 6, 2.0 / 3, 1.0 / 3},
		{"perfect", []int{0, 1, 1, 0}, []int{0, 1, 1, 0}, 1, 1, 1},
		{"inverted", []int{1, 0, 0, 1}, []int{0, 1, 1, 0}, 0, 0, -1},
		// Degenerate: all predictions one class → MCC 0, not NaN.
		{"all predicted positive", []int{1, 1, 1, 1}, []int{1, 0, 1, 0}, 0.5, 2.0 / 3, 0},
		{"all predicted negative", []int{0, 0, 0, 0}, []int{1, 0, 1, 0}, 0.5, 0, 0},
		// No positive predictions and no positive golds: F1 = 0, MCC = 0.
		{"no positives at all", []int{0, 0, 0}, []int{0, 0, 0}, 1, 0, 0},
		// All golds one class.
		{"golds one class", []int{1, 0, 1}, []int{1, 1, 1}, 2.0 / 3, 0.8, 0},
		{"single example", []int{1}, []int{1}, 1, 1, 0},
	}
	for _, c := range cases {
		acc, err1 := Accuracy(c.preds, c.golds)
		f1, err2 := F1(c.preds, c.golds, 1)
		mcc, err3 := MatthewsCorr(c.preds, c.golds)
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("%s: errors %v %v %v", c.name, err1, err2, err3)
		}
		if !near(acc, c.acc) || !near(f1, c.f1) || !near(mcc, c.mcc) {
			t.Errorf("%s: acc %v f1 %v mcc %v, want %v %v %v", c.name, acc, f1, mcc, c.acc, c.f1, c.mcc)
		}
	}
	// Multi-class MCC (Gorodkin): s=4, c=2, t=p=(2,1,1): (2·4 − 6)/(16 − 6) = 0.2.
	if mcc, _ := MatthewsCorr([]int{0, 2, 1, 0}, []int{0, 1, 2, 0}); !near(mcc, 0.2) {
		t.Errorf("3-class MCC = %v, want 0.2", mcc)
	}
	// F1 of another positive class.
	if f1, _ := F1([]int{2, 2, 0}, []int{2, 0, 0}, 2); !near(f1, 2.0/3) {
		t.Errorf("F1 of class 2 = %v", f1)
	}
	for name, f := range map[string]func(a, b []int) (float64, error){
		"Accuracy":     Accuracy,
		"F1":           func(a, b []int) (float64, error) { return F1(a, b, 1) },
		"MatthewsCorr": MatthewsCorr,
	} {
		if _, err := f([]int{1, 0}, []int{1}); err == nil {
			t.Errorf("%s: no error on length mismatch", name)
		}
		if _, err := f(nil, nil); err == nil {
			t.Errorf("%s: no error on empty input", name)
		}
	}
}

func TestCorrelations(t *testing.T) {
	cases := []struct {
		name              string
		x, y              []float64
		pearson, spearman float64
	}{
		// dx = (−1,0,1), dy = (−4/3,−1/3,5/3): r = 3/√(2·14/3) = √(27/28).
		{"linear-ish", []float64{1, 2, 3}, []float64{1, 2, 4}, math.Sqrt(27.0 / 28), 1},
		// Ranks x = (1, 2.5, 2.5, 4), y = (1, 3, 2, 4): ρ = 4.5/√(4.5·5) = √0.9.
		// Pearson: dx = (−1,0,0,1), dy = (−1.5,0.5,−0.5,1.5): 3/√(2·5).
		{"ties", []float64{1, 2, 2, 3}, []float64{1, 3, 2, 4}, 3 / math.Sqrt(10), math.Sqrt(0.9)},
		// dx = (−1.5,−0.5,0.5,1.5), dy = (−24,−17,2,39): 104/√(5·2390).
		{"monotone", []float64{1, 2, 3, 4}, []float64{1, 8, 27, 64}, 104 / math.Sqrt(5*2390), 1},
		{"anti", []float64{3, 2, 1}, []float64{0.5, 1, 1.5}, -1, -1},
		// Constant predictions: undefined, reported as 0.
		{"constant x", []float64{2.5, 2.5, 2.5}, []float64{1, 2, 3}, 0, 0},
		{"constant y", []float64{1, 2, 3}, []float64{4, 4, 4}, 0, 0},
		{"single pair", []float64{1}, []float64{2}, 0, 0},
		// Scale invariance at extreme magnitudes.
		{"huge", []float64{1e300, 2e300, 3e300}, []float64{1e-300, 2e-300, 4e-300}, math.Sqrt(27.0 / 28), 1},
	}
	for _, c := range cases {
		p, err1 := Pearson(c.x, c.y)
		s, err2 := Spearman(c.x, c.y)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v %v", c.name, err1, err2)
		}
		if math.Abs(p-c.pearson) > 1e-9 || math.Abs(s-c.spearman) > 1e-12 {
			t.Errorf("%s: pearson %v spearman %v, want %v %v", c.name, p, s, c.pearson, c.spearman)
		}
	}
	if r := ranks([]float64{3, 1, 3, 2, 3}); !equalFloats(r, []float64{4, 1, 4, 2, 4}) {
		t.Errorf("ranks = %v", r)
	}
	for _, f := range []func(x, y []float64) (float64, error){Pearson, Spearman} {
		if _, err := f([]float64{1, 2}, []float64{1}); err == nil {
			t.Error("no error on length mismatch")
		}
		if _, err := f(nil, nil); err == nil {
			t.Error("no error on empty input")
		}
		if _, err := f([]float64{1, math.NaN()}, []float64{1, 2}); err == nil {
			t.Error("no error on NaN")
		}
		if _, err := f([]float64{1, 2}, []float64{math.Inf(1), 2}); err == nil {
			t.Error("no error on Inf")
		}
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestEvaluate(t *testing.T) {
	cases := []struct {
		task         string
		preds, golds []float64
		want         map[string]float64
	}{
		{"CoLA", []float64{1, 1, 0, 0, 1, 0}, []float64{1, 0, 0, 0, 1, 1}, map[string]float64{"mcc": 1.0 / 3, "accuracy": 4.0 / 6}},
		{"cola", []float64{1, 1, 1}, []float64{1, 0, 1}, map[string]float64{"mcc": 0, "accuracy": 2.0 / 3}},
		{"sst2", []float64{1, 0, 1, 1}, []float64{1, 1, 1, 0}, map[string]float64{"accuracy": 0.5}},
		{"mrpc", []float64{1, 0, 1, 1}, []float64{1, 1, 1, 0}, map[string]float64{"accuracy": 0.5, "f1": 2.0 / 3, "acc_and_f1": 7.0 / 12}},
		{"qqp", []float64{0, 0, 0, 0}, []float64{1, 0, 1, 0}, map[string]float64{"accuracy": 0.5, "f1": 0, "acc_and_f1": 0.25}},
		{"mnli", []float64{0, 1, 2, 2}, []float64{0, 1, 2, 1}, map[string]float64{"accuracy": 0.75}},
		{"qnli", []float64{0, 1}, []float64{1, 1}, map[string]float64{"accuracy": 0.5}},
		{"rte", []float64{0}, []float64{0}, map[string]float64{"accuracy": 1}},
		{"wnli", []float64{0, 0}, []float64{1, 1}, map[string]float64{"accuracy": 0}},
		{"stsb", []float64{1, 2, 2, 3}, []float64{1, 3, 2, 4}, map[string]float64{
			"pearson": 3 / math.Sqrt(10), "spearman": math.Sqrt(0.9), "corr": (3/math.Sqrt(10) + math.Sqrt(0.9)) / 2}},
		{"STS-B", []float64{2.5, 2.5, 2.5}, []float64{1, 2, 3}, map[string]float64{"pearson": 0, "spearman": 0, "corr": 0}},
	}
	for _, c := range cases {
		got, err := Evaluate(c.task, c.preds, c.golds)
		if err != nil {
			t.Fatalf("%s: %v", c.task, err)
		}
		if len(got) != len(c.want) {
			t.Errorf("%s: got %v, want %v", c.task, got, c.want)
		}
		for k, w := range c.want {
			if g, ok := got[k]; !ok || math.IsNaN(g) || math.Abs(g-w) > 1e-12 {
				t.Errorf("%s: %s = %v, want %v", c.task, k, g, w)
			}
		}
		task, _ := Lookup(c.task)
		for _, m := range task.Metrics {
			if _, ok := got[m]; !ok {
				t.Errorf("%s: metric %s missing", c.task, m)
			}
		}
	}
	bad := []struct {
		task         string
		preds, golds []float64
		msg          string
	}{
		{"sst2", []float64{1, 0}, []float64{1}, "2 predictions but 1 gold values"},
		{"stsb", []float64{1}, []float64{1, 2}, "1 predictions but 2 gold values"},
		{"sst2", nil, nil, "no predictions"},
		{"sst2", []float64{2}, []float64{1}, "prediction 0 is 2"},
		{"sst2", []float64{0.5}, []float64{1}, "prediction 0 is 0.5"},
		{"rte", []float64{1}, []float64{-1}, "gold 0 is -1"},
		{"mnli", []float64{3}, []float64{1}, "not a mnli class index in [0, 3)"},
		{"cola", []float64{math.NaN()}, []float64{1}, "prediction 0 is NaN"},
		{"stsb", []float64{1, math.NaN()}, []float64{1, 2}, "NaN"},
		{"squad", []float64{1}, []float64{1}, "unknown task"},
	}
	for _, c := range bad {
		_, err := Evaluate(c.task, c.preds, c.golds)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s %v %v: err = %v, want %q", c.task, c.preds, c.golds, err, c.msg)
		}
	}
}

func TestGolds(t *testing.T) {
	exs := []Example{{Label: 1}, {Label: 0}}
	if g, err := Golds("rte", exs); err != nil || !equalFloats(g, []float64{1, 0}) {
		t.Errorf("Golds = %v, %v", g, err)
	}
	if g, err := Golds("stsb", []Example{{Score: 3.2}, {Score: 0}}); err != nil || !equalFloats(g, []float64{3.2, 0}) {
		t.Errorf("Golds stsb = %v, %v", g, err)
	}
	if _, err := Golds("rte", []Example{{Label: -1, ID: "9", Line: 11}}); err == nil || !strings.Contains(err.Error(), "line 11") {
		t.Errorf("unlabeled: err = %v", err)
	}
}
