package main

import (
	"fmt"
	"io"

	"github.com/lilygo/lily/train"
)

// evalResult is what eval prints, and writes to -out.
type evalResult struct {
	Config       useConfig          `json:"config"` // task, batch size, max_len and seed resolved
	EvalSplit    string             `json:"eval_split"`
	EvalExamples int                `json:"eval_examples"`
	Metrics      map[string]float64 `json:"metrics"`
	Mismatched   map[string]float64 `json:"metrics_mismatched,omitempty"` // MNLI dev_mismatched
	Primary      string             `json:"primary_metric"`
}

// runEval evaluates a fine-tuned model on its task's dev split (the held-out
// part of it for a task without train.tsv) with the fine-tuning run's
// settings, so that the metrics equal the run's best evaluation.
func runEval(c useConfig, w io.Writer) (*evalResult, error) {
	t, err := loadTrained(c)
	if err != nil {
		return nil, err
	}
	defer t.close()
	data, err := loadTaskData(t.ftConfig(), t.task)
	if err != nil {
		return nil, err
	}
	fc := t.ftConfig()
	res := &evalResult{Config: t.c, EvalSplit: data.evalSplit, EvalExamples: len(data.eval), Primary: t.task.Primary}
	exs, err := encodeExamples(t.tok, t.task, data.eval, fc.MaxLen)
	if err != nil {
		return nil, err
	}
	if res.Metrics, err = evaluate(t.sm, t.task, exs, fc); err != nil {
		return nil, err
	}
	if data.mismatched != nil {
		mm, err := encodeExamples(t.tok, t.task, data.mismatched, fc.MaxLen)
		if err != nil {
			return nil, err
		}
		if res.Mismatched, err = evaluate(t.sm, t.task, mm, fc); err != nil {
			return nil, err
		}
	}
	if data.note != "" {
		fmt.Fprintf(w, "NOTE: %s\n", data.note)
	}
	fmt.Fprintf(w, "%s %s (%d examples, batch %d, max_len %d): %s\n", t.task.Name, res.EvalSplit, res.EvalExamples, fc.BatchSize, fc.MaxLen,
		formatMetrics(evalRecord{Metrics: res.Metrics, Mismatched: res.Mismatched}))
	if c.Out != "" {
		if err := train.WriteJSON(c.Out, res); err != nil {
			return nil, err
		}
		fmt.Fprintf(w, "wrote %s\n", c.Out)
	}
	return res, nil
}
