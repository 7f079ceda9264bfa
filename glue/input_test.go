package glue

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestParseJSONL(t *testing.T) {
	in := `{"sentence1": "A man sleeps.", "sentence2": "A man is awake.", "id": 17}
{"text": "It rains.", "text_pair": "It is wet.", "label": "ignored"}
{"index": "x9", "sentence1": "", "sentence2": "Only the second."}
`
	exs, err := ParseJSONL(strings.NewReader(in), "rte", "in.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	want := []Example{{ID: "17", TextA: "A man sleeps.", TextB: "A man is awake.", Label: -1, Line: 1},
		{ID: "1", TextA: "It rains.", TextB: "It is wet.", Label: -1, Line: 2},
		{ID: "x9", TextA: "", TextB: "Only the second.", Label: -1, Line: 3}}
	if len(exs) != len(want) {
		t.Fatalf("read %+v", exs)
	}
	for i := range want {
		if exs[i] != want[i] {
			t.Errorf("example %d: %+v, want %+v", i, exs[i], want[i])
		}
	}
	single, err := ParseJSONL(strings.NewReader(`{"sentence": "fine ."}`+"\n"), "sst2", "s.jsonl")
	if err != nil || len(single) != 1 || single[0].TextA != "fine ." {
		t.Errorf("sst2: %+v, %v", single, err)
	}
	for _, c := range []struct{ task, in, msg string }{
		{"rte", `{"sentence1": "only one"}`, `want a string field ["sentence2" "text_pair"]`},
		{"sst2", `{"question": "wrong field"}`, `want a string field ["sentence" "text"]`},
		{"sst2", `["not", "an object"]`, "not a JSON object"},
		{"sst2", `{"sentence": 3}`, `field "sentence" is 3, want a string`},
		{"sst2", `{"sentence": "  "}`, "empty text"},
		{"sst2", `{"sentence": "ok", "id": [1]}`, `field "id"`},
		{"sst2", "{\"sentence\": \"ok\"}\n\n", "in.jsonl:2: not a JSON object"},
		{"sst2", "", "empty input"},
	} {
		_, err := ParseJSONL(strings.NewReader(c.in), c.task, "in.jsonl")
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s %q: error %v, want a ParseError with %q", c.task, c.in, err, c.msg)
		}
	}
}

func TestParseLines(t *testing.T) {
	exs, err := ParseLines(strings.NewReader("\ufeffA cat.\tA pet.\r\nRain.\tWet.\n"), "mnli", "-")
	if err != nil {
		t.Fatal(err)
	}
	if len(exs) != 2 || exs[0].TextA != "A cat." || exs[0].TextB != "A pet." || exs[1].ID != "1" || exs[1].Line != 2 {
		t.Errorf("read %+v", exs)
	}
	one, err := ParseLines(strings.NewReader("a\tb c"), "sst2", "-")
	if err != nil || len(one) != 1 || one[0].TextA != "a\tb c" {
		t.Errorf("single-sentence lines keep tabs: %+v, %v", one, err)
	}
	if _, err := ParseLines(strings.NewReader("no tab here\n"), "rte", "-"); err == nil || !strings.Contains(err.Error(), "-:1: 1 tab-separated fields") {
		t.Errorf("pair without a tab: %v", err)
	}
}

func TestPredictSoftmax(t *testing.T) {
	mnli, _ := Lookup("mnli")
	// logits 0, ln 2, ln 5 (shifted by 100): probabilities 1/8, 2/8, 5/8.
	p, err := mnli.Predict(Example{ID: "3", TextA: "a", TextB: "b"}, []float64{100, 100 + math.Log(2), 100 + math.Log(5)})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"entailment": 1.0 / 8, "neutral": 2.0 / 8, "contradiction": 5.0 / 8}
	for k, v := range want {
		if math.Abs(p.Probabilities[k]-v) > 1e-12 {
			t.Errorf("P(%s) = %v, want %v", k, p.Probabilities[k], v)
		}
	}
	if p.Label != "contradiction" || p.Score != nil || p.ID != "3" {
		t.Errorf("prediction %+v", p)
	}
	tie, _ := mnli.Predict(Example{}, []float64{1, 1, 0})
	if tie.Label != "entailment" {
		t.Errorf("a tie went to %q, want the first label", tie.Label)
	}
	stsb, _ := Lookup("stsb")
	s, err := stsb.Predict(Example{ID: "0"}, []float64{6.5})
	if err != nil || s.Score == nil || *s.Score != 5 || s.Probabilities != nil {
		t.Errorf("stsb: %+v, %v", s, err)
	}
	if _, err := mnli.Predict(Example{}, []float64{1, 2}); err == nil {
		t.Error("two logits for three labels accepted")
	}
	if _, err := mnli.Predict(Example{}, []float64{1, math.NaN(), 0}); err == nil {
		t.Error("a NaN logit accepted")
	}
	var buf bytes.Buffer
	if err := WritePredictions(&buf, []Prediction{p, s}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %q", len(lines), buf.String())
	}
	var back Prediction
	if err := json.Unmarshal([]byte(lines[1]), &back); err != nil || back.Score == nil || *back.Score != 5 || back.Label != "" {
		t.Errorf("line 2 %q read back as %+v, %v", lines[1], back, err)
	}
}
