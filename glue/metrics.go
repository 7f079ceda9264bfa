package glue

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"gonum.org/v1/gonum/stat"
)

func checkLens(n, m int) error {
	if n != m {
		return fmt.Errorf("glue: %d predictions but %d gold values", n, m)
	}
	if n == 0 {
		return errors.New("glue: no predictions to evaluate")
	}
	return nil
}

// Accuracy returns the fraction of preds equal to golds. It fails if the
// lengths differ or are zero.
func Accuracy(preds, golds []int) (float64, error) {
	if err := checkLens(len(preds), len(golds)); err != nil {
		return 0, err
	}
	ok := 0
	for i, p := range preds {
		if p == golds[i] {
			ok++
		}
	}
	return float64(ok) / float64(len(preds)), nil
}

// F1 returns the F1 score of class positive: 2TP / (2TP + FP + FN). It is
// 0, not NaN, when there are no true positives (in particular when nothing
// is predicted positive, or no gold label is positive). It fails if the
// lengths differ or are zero.
func F1(preds, golds []int, positive int) (float64, error) {
	if err := checkLens(len(preds), len(golds)); err != nil {
		return 0, err
	}
	var tp, fp, fn int
	for i, p := range preds {
		g := golds[i]
		switch {
		case p == positive && g == positive:
			tp++
		case p == positive:
			fp++
		case g == positive:
			fn++
		}
	}
	if tp == 0 {
		return 0, nil
	}
	return 2 * float64(tp) / float64(2*tp+fp+fn), nil
}

// MatthewsCorr returns the Matthews correlation coefficient of preds and
// golds. For two classes it is (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN));
// for more it is the multi-class generalisation (Gorodkin's R_K, as in
// scikit-learn). When the denominator is zero — all predictions in one
// class, or all gold labels in one class — it is 0 by convention, not
// NaN. It fails if the lengths differ or are zero.
func MatthewsCorr(preds, golds []int) (float64, error) {
	if err := checkLens(len(preds), len(golds)); err != nil {
		return 0, err
	}
	predN := map[int]float64{}
	goldN := map[int]float64{}
	var correct float64
	for i, p := range preds {
		predN[p]++
		goldN[golds[i]]++
		if p == golds[i] {
			correct++
		}
	}
	s := float64(len(preds))
	var tp, pp, tt float64 // Σ t_k p_k, Σ p_k², Σ t_k²
	for k, p := range predN {
		tp += p * goldN[k]
		pp += p * p
	}
	for _, t := range goldN {
		tt += t * t
	}
	cov := correct*s - tp
	den := math.Sqrt(s*s-pp) * math.Sqrt(s*s-tt)
	if den == 0 {
		return 0, nil
	}
	return clamp(cov / den), nil
}

func clamp(r float64) float64 {
	return math.Max(-1, math.Min(1, r))
}

func checkFinite(what string, x []float64) error {
	for i, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("glue: %s[%d] is %v", what, i, v)
		}
	}
	return nil
}

// Pearson returns the Pearson correlation coefficient of x and y. If x or
// y is constant the coefficient is undefined; Pearson then returns 0 (not
// NaN), which scores constant predictions as uninformative. It fails if
// the lengths differ or are zero, or a value is NaN or infinite.
func Pearson(x, y []float64) (float64, error) {
	if err := checkLens(len(x), len(y)); err != nil {
		return 0, err
	}
	if err := checkFinite("x", x); err != nil {
		return 0, err
	}
	if err := checkFinite("y", y); err != nil {
		return 0, err
	}
	return pearson(x, y), nil
}

func pearson(x, y []float64) float64 {
	// Correlation is scale-invariant; scaling to max |v| = 1 keeps the sums
	// of squares from overflowing or underflowing for extreme inputs.
	xs, okx := normalized(x)
	ys, oky := normalized(y)
	if !okx || !oky {
		return 0 // a constant input
	}
	r := stat.Correlation(xs, ys, nil)
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return 0
	}
	return clamp(r)
}

// normalized returns x divided by its largest magnitude, and false if x is
// constant.
func normalized(x []float64) ([]float64, bool) {
	m := 0.0
	constant := true
	for _, v := range x {
		m = math.Max(m, math.Abs(v))
		if v != x[0] {
			constant = false
		}
	}
	if constant {
		return nil, false
	}
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = v / m
	}
	return out, true
}

// Spearman returns the Spearman rank correlation of x and y: the Pearson
// correlation of their ranks, tied values receiving the average of the
// ranks they span (as scipy.stats.spearmanr does). Like [Pearson] it is 0
// when x or y is constant, and it fails on mismatched or zero lengths and
// on NaN or infinite values.
func Spearman(x, y []float64) (float64, error) {
	if err := checkLens(len(x), len(y)); err != nil {
		return 0, err
	}
	if err := checkFinite("x", x); err != nil {
		return 0, err
	}
	if err := checkFinite("y", y); err != nil {
		return 0, err
	}
	return pearson(ranks(x), ranks(y)), nil
}

// ranks returns the 1-based ranks of x, ties getting their average rank.
func ranks(x []float64) []float64 {
	idx := make([]int, len(x))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return x[idx[a]] < x[idx[b]] })
	r := make([]float64, len(x))
	for i := 0; i < len(idx); {
		j := i + 1
		for j < len(idx) && x[idx[j]] == x[idx[i]] {
			j++
		}
		avg := float64(i+1+j) / 2 // mean of ranks i+1 … j
		for k := i; k < j; k++ {
			r[idx[k]] = avg
		}
		i = j
	}
	return r
}

// Evaluate computes the GLUE metrics of a task (the keys in
// [Task.Metrics]) from predictions and gold values of the same length. For
// classification tasks both hold class indices (0 … NumLabels−1, as
// float64; anything else is an error, including the -1 of an unlabeled
// example); for STS-B they hold scores. F1 is that of label "1" (MRPC:
// paraphrase, QQP: duplicate). Degenerate inputs give 0 rather than NaN;
// see [MatthewsCorr], [F1] and [Pearson].
func Evaluate(task string, preds, golds []float64) (map[string]float64, error) {
	t, err := Lookup(task)
	if err != nil {
		return nil, err
	}
	if err := checkLens(len(preds), len(golds)); err != nil {
		return nil, fmt.Errorf("%w (task %s)", err, t.Name)
	}
	out := map[string]float64{}
	if t.Regression() {
		p, err := Pearson(preds, golds)
		if err != nil {
			return nil, err
		}
		s, _ := Spearman(preds, golds) // same checks as Pearson
		out[MetricPearson], out[MetricSpearman], out[MetricCorr] = p, s, (p+s)/2
		return out, nil
	}
	pi, err := classes(t, "prediction", preds)
	if err != nil {
		return nil, err
	}
	gi, err := classes(t, "gold", golds)
	if err != nil {
		return nil, err
	}
	acc, _ := Accuracy(pi, gi)
	for _, m := range t.Metrics {
		switch m {
		case MetricAccuracy:
			out[m] = acc
		case MetricF1:
			out[m], _ = F1(pi, gi, 1)
		case MetricAccAndF1:
			f1, _ := F1(pi, gi, 1)
			out[m] = (acc + f1) / 2
		case MetricMCC:
			out[m], _ = MatthewsCorr(pi, gi)
		}
	}
	return out, nil
}

func classes(t Task, what string, v []float64) ([]int, error) {
	out := make([]int, len(v))
	for i, x := range v {
		if x != math.Trunc(x) || x < 0 || x >= float64(t.NumLabels) {
			return nil, fmt.Errorf("glue: %s %d is %v, not a %s class index in [0, %d)", what, i, x, t.Name, t.NumLabels)
		}
		out[i] = int(x)
	}
	return out, nil
}

// Golds returns the gold values of examples in the form [Evaluate] takes:
// the class index, or for STS-B the score. It fails if an example has no
// label.
func Golds(task string, examples []Example) ([]float64, error) {
	t, err := Lookup(task)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(examples))
	for i, e := range examples {
		if !e.Labeled() {
			return nil, fmt.Errorf("glue: example %d (ID %q, line %d) has no label", i, e.ID, e.Line)
		}
		if t.Regression() {
			out[i] = e.Score
		} else {
			out[i] = float64(e.Label)
		}
	}
	return out, nil
}
