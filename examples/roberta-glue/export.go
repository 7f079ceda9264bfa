package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"

	"github.com/lilygo/lily/glue"
	"github.com/lilygo/lily/graphs/roberta"
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
)

// exportResult is what export reports.
type exportResult struct {
	Method     string `json:"method"`
	Calibrated int    `json:"calibration_examples,omitempty"` // Lily: training examples the mixing was averaged over
	DevChecked int    `json:"dev_examples,omitempty"`         // 0 without -glue_dir
	// MaxDelta is the largest |Δ logit| on the dev split between the merged
	// model and the adapter as it was trained.
	MaxDelta float64 `json:"max_abs_delta_logit"`
	// MaxDeltaFrozen is, for a calibrated Lily, the largest |Δ logit|
	// between the merged model and the adapter with the frozen mixing: the
	// merge's own rounding, while MaxDelta also holds the calibration's
	// approximation.
	MaxDeltaFrozen float64 `json:"max_abs_delta_logit_frozen,omitempty"`
	// Adapter and Merged are the dev metrics of the adapter as trained and
	// of the merged model.
	Adapter map[string]float64 `json:"dev_metrics_adapter,omitempty"`
	Merged  map[string]float64 `json:"dev_metrics_merged,omitempty"`
}

// runExport merges the adapter into the encoder's weights and writes a
// Hugging Face RobertaForSequenceClassification directory: the weights with
// the head, config.json with the task's labels, the tokenizer and the task
// record.
func runExport(c useConfig, w io.Writer) (*exportResult, error) {
	t, err := loadTrained(c)
	if err != nil {
		return nil, err
	}
	defer t.close()
	ad := t.sm.adapter
	res := &exportResult{Method: ad.Method()}
	lily, isLily := ad.(*layers.Lily)
	routed := isLily && !lily.Config().Uniform && len(lily.FrozenMixing()) == 0
	if routed && !c.Calibrate {
		return nil, errors.Errorf("the Lily adapter in %s routes every input to its own mixture of experts (%s routing), which no single merged weight reproduces; "+
			"add -calibrate -glue_dir G to freeze each site's mixing at its mean over the %s training data and merge that", c.Adapter, lily.Config().Routing, t.task.Name)
	}
	var dev []example
	var data taskData
	if c.GlueDir != "" {
		if data, err = loadTaskData(t.ftConfig(), t.task); err != nil {
			return nil, err
		}
		if dev, err = encodeExamples(t.tok, t.task, data.eval, t.c.MaxLen); err != nil {
			return nil, err
		}
		res.DevChecked = len(dev)
	}
	before, err := t.sm.logits(dev, t.c.BatchSize, t.c.MaxLen, nil)
	if err != nil {
		return nil, err
	}
	frozen := before
	if routed {
		if res.Calibrated, err = t.calibrate(lily, data.train); err != nil {
			return nil, err
		}
		if frozen, err = t.sm.logits(dev, t.c.BatchSize, t.c.MaxLen, nil); err != nil {
			return nil, err
		}
	}
	if _, isNone := ad.(layers.None); !isNone {
		if err := layers.Merge(t.sm.store, ad, t.ck.Config.Sites()); err != nil {
			return nil, errors.Wrapf(err, "merging the adapter of %s", c.Adapter)
		}
		t.sm.graphs.closeAll() // graphs built before the merge still add the adapter
	}
	merged, err := t.sm.logits(dev, t.c.BatchSize, t.c.MaxLen, nil)
	if err != nil {
		return nil, err
	}
	res.MaxDelta = maxAbsDiff(merged, before)
	if routed {
		res.MaxDeltaFrozen = maxAbsDiff(merged, frozen)
	}
	if len(dev) > 0 {
		golds := make([]float64, len(dev))
		for i, e := range dev {
			golds[i] = e.gold
		}
		if res.Adapter, err = glue.Evaluate(t.task.Name, t.sm.decide(before), golds); err != nil {
			return nil, err
		}
		if res.Merged, err = glue.Evaluate(t.task.Name, t.sm.decide(merged), golds); err != nil {
			return nil, err
		}
	}
	if err := t.c.folder().Write(true, t.writeMerged); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "merged the %s adapter of %s into %s and wrote %s\n", res.Method, c.Adapter, c.Model, c.Out)
	if res.Calibrated > 0 {
		fmt.Fprintf(w, "Lily's mixing frozen at its mean over %d %s training examples\n", res.Calibrated, t.task.Name)
	}
	if res.DevChecked == 0 {
		fmt.Fprintln(w, "no -glue_dir: the merged model was not compared with the adapter")
		return res, nil
	}
	fmt.Fprintf(w, "max |Δ logit| on %s %s (%d examples): %.3g against the adapter as trained", t.task.Name, data.evalSplit, res.DevChecked, res.MaxDelta)
	if routed {
		fmt.Fprintf(w, ", %.3g against the adapter with the frozen mixing", res.MaxDeltaFrozen)
	}
	fmt.Fprintf(w, "\n%s %s: adapter %.4f, merged %.4f\n", t.task.Name, t.task.Primary, res.Adapter[t.task.Primary], res.Merged[t.task.Primary])
	return res, nil
}

// calibrate freezes every Lily site's mixing at its mean over up to
// -calibrate_examples evenly spaced training examples, run in evaluation
// batches as the adapter routes them, and returns how many it used.
func (t *trained) calibrate(lily *layers.Lily, trainSet []glue.Example) (int, error) {
	n := len(trainSet)
	if k := t.c.CalibrateExamples; k > 0 && k < n {
		n = k
	}
	pick := make([]glue.Example, n)
	for i := range pick {
		pick[i] = trainSet[i*len(trainSet)/n]
	}
	exs, err := t.texts(pick)
	if err != nil {
		return 0, err
	}
	var cal layers.MixingCalibrator
	if _, err := t.sm.logits(exs, t.c.BatchSize, t.c.MaxLen, cal.Observe); err != nil {
		return 0, err
	}
	if err := lily.FreezeMixing(cal.Mean()); err != nil {
		return 0, err
	}
	t.sm.graphs.closeAll() // rebuilt with the frozen mixing in place of the routers
	return n, nil
}

// writeMerged writes the store's encoder and head, a config.json naming the
// task's labels, the tokenizer and the task record to dir.
func (t *trained) writeMerged(dir string) error {
	cfg := t.ck.Config
	extra := map[string]json.RawMessage{}
	for k, v := range cfg.Extra {
		extra[k] = v
	}
	labels := t.task.Labels
	if t.task.Regression() {
		labels = []string{"LABEL_0"}
	}
	id2label, label2id := map[string]string{}, map[string]int{}
	for i, l := range labels {
		id2label[fmt.Sprint(i)], label2id[l] = l, i
	}
	problem := "single_label_classification"
	if t.task.Regression() {
		problem = "regression"
	}
	for k, v := range map[string]any{"id2label": id2label, "label2id": label2id, "finetuning_task": t.task.Name,
		"problem_type": problem, "architectures": []string{"RobertaForSequenceClassification"}} {
		b, err := json.Marshal(v)
		if err != nil {
			return errors.Wrapf(err, "encoding %s", k)
		}
		extra[k] = b
	}
	cfg.Extra = extra
	if err := roberta.Save(dir, t.sm.store, cfg); err != nil {
		return err
	}
	if err := t.tok.Save(dir); err != nil {
		return errors.Wrapf(err, "writing the tokenizer to %s", dir)
	}
	rec := taskRecord{Task: t.task.Name, Labels: t.task.Labels, NumLabels: t.task.NumLabels, MaxLen: t.c.MaxLen, BatchSize: t.c.BatchSize,
		Seed: t.c.Seed, EvalSplit: t.rec.EvalSplit, Model: t.c.Model}
	return rec.write(dir)
}

// maxAbsDiff returns the largest |a − b| over rows of equal shape.
func maxAbsDiff(a, b [][]float64) float64 {
	var m float64
	for i := range a {
		for j := range a[i] {
			m = math.Max(m, math.Abs(a[i][j]-b[i][j]))
		}
	}
	return m
}
