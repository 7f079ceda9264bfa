package train

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func TestScheduleMatchesHuggingFace(t *testing.T) {
	s, err := NewSchedule(100, 0.06)
	if err != nil {
		t.Fatal(err)
	}
	// get_linear_schedule_with_warmup(num_warmup_steps=6, num_training_steps=100)
	want := map[int]float64{0: 0, 3: 0.5, 6: 1, 53: 47.0 / 94, 99: 1.0 / 94, 100: 0}
	for step, f := range want {
		if got := s.Factor(step); math.Abs(got-f) > 1e-15 {
			t.Errorf("step %d: factor %v, want %v", step, got, f)
		}
	}
	if _, err := NewSchedule(0, 0.1); err == nil {
		t.Error("0 steps accepted")
	}
	if _, err := NewSchedule(10, 1); err == nil {
		t.Error("warm-up ratio 1 accepted")
	}
}

func TestStepUsesScheduleAndGroups(t *testing.T) {
	g := G.NewGraph()
	w := G.NewVector(g, tensor.Float64, G.WithShape(2), G.WithName("w"), G.WithValue(tensor.New(tensor.WithBacking([]float64{1, 2}))))
	loss := G.Must(G.Sum(G.Must(G.Square(w))))
	if _, err := G.Grad(loss, w); err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(g, G.BindDualValues(w))
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	gr := NewGroup("w", nil, 0.1, 0)
	gr.Nodes = G.Nodes{w}
	s, _ := NewSchedule(10, 0.5) // warm-up 5 steps: factor 0.2 at step 1
	if err := Step([]*Group{gr}, s, 1); err != nil {
		t.Fatal(err)
	}
	if lr := gr.Opt.LearnRate(); math.Abs(lr-0.02) > 1e-15 {
		t.Errorf("rate %v, want 0.02", lr)
	}
	// The first AdamW step moves each weight by lr against its gradient's sign.
	got := w.Value().Data().([]float64)
	if math.Abs(got[0]-0.98) > 1e-6 || math.Abs(got[1]-1.98) > 1e-6 {
		t.Errorf("weights after one step: %v", got)
	}
}

func TestCheckLoss(t *testing.T) {
	if CheckLoss(1.5, 3) != nil {
		t.Error("finite loss rejected")
	}
	err := CheckLoss(math.NaN(), 7)
	if err == nil || !strings.Contains(err.Error(), "step 7") || !strings.Contains(err.Error(), "learning rate") {
		t.Errorf("NaN loss: %v", err)
	}
}

func TestOutputs(t *testing.T) {
	dir := t.TempDir()
	if err := WriteJSON(filepath.Join(dir, "r.json"), map[string]float64{"acc": 0.5}); err != nil {
		t.Fatal(err)
	}
	var back map[string]float64
	b, _ := os.ReadFile(filepath.Join(dir, "r.json"))
	if err := json.Unmarshal(b, &back); err != nil || back["acc"] != 0.5 {
		t.Fatalf("round trip: %v %v", back, err)
	}
	png := filepath.Join(dir, "p.png")
	if err := Plot(png, "t", "step", "loss", Series{"a", []float64{0, 1, 2}, []float64{3, 2, 1}}, Series{"b", []float64{0, 1}, []float64{1, 1}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(png); !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatal("not a PNG")
	}
	if err := Plot(png, "t", "x", "y", Series{"bad", []float64{1}, nil}); err == nil {
		t.Fatal("mismatched series accepted")
	}
	bars := filepath.Join(dir, "b.png")
	if err := BarChart(bars, "t", "acc", []string{"sst2", "rte"}, Bars{"lily", []float64{0.8, 0.6}}, Bars{"lora", []float64{0.7, 0.5}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(bars); !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatal("bar chart: not a PNG")
	}
	if err := BarChart(bars, "t", "acc", []string{"sst2", "rte"}, Bars{"short", []float64{0.8}}); err == nil {
		t.Fatal("a series with too few values accepted")
	}
}

func TestProgress(t *testing.T) {
	var buf bytes.Buffer
	p := NewProgress(3, "train", &buf)
	for i := 0; i < 3; i++ {
		p.Step("train", 0.5, 1e-3)
	}
	p.Finish()
	if !strings.Contains(buf.String(), "3/3") {
		t.Errorf("progress output %q", buf.String())
	}
}
