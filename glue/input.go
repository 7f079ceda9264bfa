package glue

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Generic JSONL field names, accepted besides a task's own column names.
const (
	// FieldText is the first (or only) text of a JSONL record.
	FieldText = "text"
	// FieldTextPair is the second text of a pair task's JSONL record.
	FieldTextPair = "text_pair"
	// FieldID is a JSONL record's optional ID (also accepted: "index").
	FieldID = "id"
)

// TextFields returns the JSONL field names that hold a task's texts: its TSV
// column names (e.g. "sentence"; "sentence1" and "sentence2" for RTE) and
// the generic ones, "text" and (for a pair) "text_pair". The second slice
// is empty for single-sentence tasks.
func (t Task) TextFields() (a, b []string) {
	a = []string{t.cols.a, FieldText}
	if t.Pair {
		b = []string{t.cols.b, FieldTextPair}
	}
	return a, b
}

// ParseJSONL reads one JSON object per line, each holding a task's texts
// under the names [Task.TextFields] lists and optionally an "id" (or
// "index", a string or number); other fields are ignored. Examples come
// back unlabeled, with the ID (or the zero-based line position) and the
// 1-based line. A line that is not an object or lacks the texts is a
// *[ParseError]; blank lines are errors too, as in the TSV reader.
func ParseJSONL(r io.Reader, task, name string) ([]Example, error) {
	t, err := Lookup(task)
	if err != nil {
		return nil, err
	}
	fa, fb := t.TextFields()
	var out []Example
	err = eachLine(r, name, func(line int, s string) error {
		bad := func(format string, args ...any) error {
			return &ParseError{File: name, Line: line, Msg: fmt.Sprintf(format, args...)}
		}
		var rec map[string]json.RawMessage
		if err := json.Unmarshal([]byte(s), &rec); err != nil || rec == nil {
			return bad("not a JSON object: %q", clip(s))
		}
		ex := Example{Line: line, Label: -1, ID: strconv.Itoa(len(out))}
		var ok bool
		if ex.TextA, ok, err = stringField(rec, fa); err != nil {
			return bad("%v", err)
		} else if !ok {
			return bad("no text: want a string field %q", fa)
		}
		if t.Pair {
			if ex.TextB, ok, err = stringField(rec, fb); err != nil {
				return bad("%v", err)
			} else if !ok {
				return bad("no second text: %s is a pair task, want a string field %q", t.Name, fb)
			}
		}
		if err := checkTexts(t, ex); err != nil {
			return bad("%v", err)
		}
		for _, k := range []string{FieldID, "index"} {
			if raw, has := rec[k]; has {
				if ex.ID, err = idString(raw); err != nil {
					return bad("field %q: %v", k, err)
				}
				break
			}
		}
		out = append(out, ex)
		return nil
	})
	return out, err
}

// ParseLines reads one example per line: the text, or for a pair task the
// two texts separated by one tab. IDs are the zero-based line positions.
func ParseLines(r io.Reader, task, name string) ([]Example, error) {
	t, err := Lookup(task)
	if err != nil {
		return nil, err
	}
	var out []Example
	err = eachLine(r, name, func(line int, s string) error {
		ex := Example{Line: line, Label: -1, ID: strconv.Itoa(len(out)), TextA: s}
		if t.Pair {
			f := strings.Split(s, "\t")
			if len(f) != 2 {
				return &ParseError{File: name, Line: line, Msg: fmt.Sprintf("%d tab-separated fields; %s is a pair task, want the two texts separated by one tab", len(f), t.Name)}
			}
			ex.TextA, ex.TextB = f[0], f[1]
		}
		if err := checkTexts(t, ex); err != nil {
			return &ParseError{File: name, Line: line, Msg: err.Error()}
		}
		out = append(out, ex)
		return nil
	})
	return out, err
}

// eachLine calls f with every line of r (1-based number, terminator
// removed, a UTF-8 byte order mark dropped from the first) and fails on an
// empty input.
func eachLine(r io.Reader, name string, f func(line int, s string) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	line := 0
	for {
		s, err := br.ReadString('\n')
		if err != nil && err != io.EOF {
			return fmt.Errorf("glue: reading %s after line %d: %w", name, line, err)
		}
		if err == io.EOF && s == "" {
			break
		}
		line++
		s = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
		if line == 1 {
			s = strings.TrimPrefix(s, "\uFEFF")
		}
		if ferr := f(line, s); ferr != nil {
			return ferr
		}
	}
	if line == 0 {
		return &ParseError{File: name, Line: 1, Msg: "empty input, want one example per line"}
	}
	return nil
}

// checkTexts refuses a blank text of a single-sentence task and two blank
// texts of a pair, as the TSV reader does.
func checkTexts(t Task, ex Example) error {
	blankA := strings.TrimSpace(ex.TextA) == ""
	switch {
	case !t.Pair && blankA:
		return fmt.Errorf("empty text")
	case t.Pair && blankA && strings.TrimSpace(ex.TextB) == "":
		return fmt.Errorf("both texts empty")
	}
	return nil
}

// stringField returns the first of the named fields that rec holds; it must
// be a JSON string.
func stringField(rec map[string]json.RawMessage, names []string) (string, bool, error) {
	for _, n := range names {
		raw, ok := rec[n]
		if !ok {
			continue
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false, fmt.Errorf("field %q is %s, want a string", n, clip(string(raw)))
		}
		return s, true, nil
	}
	return "", false, nil
}

// idString reads an ID given as a JSON string or number.
func idString(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String(), nil
	}
	return "", fmt.Errorf("%s is neither a string nor a number", clip(string(raw)))
}

// Prediction is a model's output for one example, as a JSONL record.
type Prediction struct {
	// ID is the example's ID.
	ID string `json:"id"`
	// Text and TextPair are the example's texts.
	Text     string `json:"text"`
	TextPair string `json:"text_pair,omitempty"`
	// Label is the predicted label string (classification tasks).
	Label string `json:"label,omitempty"`
	// Probabilities maps every label string to its softmax probability
	// (classification tasks).
	Probabilities map[string]float64 `json:"probabilities,omitempty"`
	// Score is the STS-B similarity clipped to [0, 5] (regression only).
	Score *float64 `json:"score,omitempty"`
}

// Predict turns a model's outputs for one example into a Prediction:
// NumLabels logits give the softmax probabilities and the most probable
// label (the first on ties), STS-B's one output its clipped score.
func (t Task) Predict(e Example, logits []float64) (Prediction, error) {
	p := Prediction{ID: e.ID, Text: e.TextA, TextPair: e.TextB}
	if len(logits) != t.NumLabels {
		return p, fmt.Errorf("glue: %s needs %d outputs per example, got %d", t.Name, t.NumLabels, len(logits))
	}
	for _, x := range logits {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return p, fmt.Errorf("glue: example %q has a non-finite output %v", e.ID, logits)
		}
	}
	if t.Regression() {
		s := math.Min(5, math.Max(0, logits[0]))
		p.Score = &s
		return p, nil
	}
	best := 0
	for i, x := range logits {
		if x > logits[best] {
			best = i
		}
	}
	var z float64
	for _, x := range logits {
		z += math.Exp(x - logits[best])
	}
	p.Label = t.Labels[best]
	p.Probabilities = make(map[string]float64, len(logits))
	for i, x := range logits {
		p.Probabilities[t.Labels[i]] = math.Exp(x-logits[best]) / z
	}
	return p, nil
}

// WritePredictions writes predictions as JSON Lines, one object per line.
func WritePredictions(w io.Writer, preds []Prediction) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for _, p := range preds {
		if err := enc.Encode(p); err != nil {
			return fmt.Errorf("glue: encoding prediction %q: %w", p.ID, err)
		}
	}
	return bw.Flush()
}
