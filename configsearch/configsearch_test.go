package configsearch

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/lilygo/lily/layers"
)

// robertaSites are roberta-base's query and value linears: 12 layers of
// 768→768.
func robertaSites() []layers.Site {
	var sites []layers.Site
	for l := 0; l < 12; l++ {
		for _, t := range []string{"query", "value"} {
			path := fmt.Sprintf("roberta.encoder.layer.%d.attention.self.%s", l, t)
			sites = append(sites, layers.Site{Layer: l, Target: t, Path: path, DIn: 768, DOut: 768, Weight: path + ".weight"})
		}
	}
	return sites
}

// lilyCount is LILY.md's count for one target of L layers:
// n_A·d_in·r + num_B·r·d_out + L·r·num_B, n_A = ceil(L / stride_A).
func lilyCount(L, din, dout, r, stride, numB int) int {
	nA := (L + stride - 1) / stride
	return nA*din*r + numB*r*dout + L*r*numB
}

// Candidates lists exactly the shapes whose count, by the formula of
// LILY.md computed independently, is within the tolerance; the paper's
// roberta-base setting is found at its own size.
func TestCandidatesMatchFormula(t *testing.T) {
	sites := robertaSites()
	base := layers.DefaultLilyConfig("query", "value")
	space := Space{MaxR: 48, MaxNumB: 4}
	for _, tc := range []struct {
		budget int
		tol    float64
	}{{198144, 0}, {198144, 0.02}, {294912, 0.05}} {
		got, err := Candidates(sites, base, tc.budget, tc.tol, space)
		if err != nil {
			t.Fatal(err)
		}
		want := map[Candidate]bool{}
		for stride := 1; stride <= 12; stride++ {
			for numB := 2; numB <= space.MaxNumB; numB++ {
				for r := 1; r <= space.MaxR; r++ {
					n := 2 * lilyCount(12, 768, 768, r, stride, numB)
					if math.Abs(float64(n-tc.budget)) <= tc.tol*float64(tc.budget) {
						want[Candidate{R: r, StrideA: stride, NumB: numB, Params: n}] = true
					}
				}
			}
		}
		if len(got) != len(want) {
			t.Fatalf("budget %d ± %v: %d candidates, the formula gives %d", tc.budget, tc.tol, len(got), len(want))
		}
		for i, c := range got {
			if !want[c] {
				t.Fatalf("budget %d: candidate %+v is not one of the formula's", tc.budget, c)
			}
			if i > 0 && abs(c.Params-tc.budget) < abs(got[i-1].Params-tc.budget) {
				t.Fatalf("budget %d: %+v listed after the farther %+v", tc.budget, c, got[i-1])
			}
		}
		if tc.budget == 198144 && !want[Candidate{R: 32, StrideA: 6, NumB: 2, Params: 198144}] {
			t.Fatal("the paper's r 32, stride_A 6, num_B 2 is missing")
		}
	}
}

// LoRA r = 8 on roberta-base's query and value: 24 · (768·8 + 8·768).
func TestLoRABudget(t *testing.T) {
	n, err := LoRABudget(robertaSites(), []string{"query", "value"}, 8)
	if err != nil {
		t.Fatal(err)
	}
	if n != 294912 {
		t.Fatalf("LoRA r 8 = %d parameters, want 294,912", n)
	}
}

func TestCandidatesErrors(t *testing.T) {
	sites := robertaSites()
	base := layers.DefaultLilyConfig("query", "value")
	for name, f := range map[string]func() error{
		"budget":    func() error { _, err := Candidates(sites, base, 0, 0.1, Space{8, 2}); return err },
		"tolerance": func() error { _, err := Candidates(sites, base, 100, math.NaN(), Space{8, 2}); return err },
		"space":     func() error { _, err := Candidates(sites, base, 100, 0.1, Space{8, 1}); return err },
		"sites":     func() error { _, err := Candidates(nil, base, 100, 0.1, Space{8, 2}); return err },
		"targets": func() error {
			_, err := Candidates(sites, layers.DefaultLilyConfig(), 100, 0.1, Space{8, 2})
			return err
		},
	} {
		if f() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// Halving runs every candidate, then the best half, then the best half of
// those, at growing budgets; a NaN score ranks last; a failing run returns
// the finished rounds with the error.
func TestHalving(t *testing.T) {
	cands := []int{5, 3, 8, 1, 7, 2, 6, 4}
	calls := map[int][]int{}
	score := func(c, budget int) (float64, error) {
		calls[budget] = append(calls[budget], c)
		if c == 1 {
			return math.NaN(), nil // diverged
		}
		return float64(c) / float64(budget), nil
	}
	rounds, err := Halving(cands, []int{1, 2, 4}, 0.5, score)
	if err != nil {
		t.Fatal(err)
	}
	if len(rounds) != 3 || len(calls[1]) != 8 || len(calls[2]) != 4 || len(calls[4]) != 2 {
		t.Fatalf("rounds %d, runs per budget %d/%d/%d, want 3 rounds of 8/4/2", len(rounds), len(calls[1]), len(calls[2]), len(calls[4]))
	}
	if last := rounds[0].Scores[len(rounds[0].Scores)-1]; last.Candidate != 1 {
		t.Fatalf("the NaN candidate ranks %v, want last", last)
	}
	if fmt.Sprint(calls[2]) != "[2 3 4 5]" || rounds[2].Scores[0].Candidate != 2 {
		t.Fatalf("round 2 ran %v, winner %v; want [2 3 4 5] and 2", calls[2], rounds[2].Scores[0].Candidate)
	}
	stop := errors.New("interrupted")
	rounds, err = Halving(cands, []int{1, 2}, 0.5, func(c, budget int) (float64, error) {
		if budget == 2 {
			return 0, stop
		}
		return float64(c), nil
	})
	if !errors.Is(err, stop) || len(rounds) != 1 {
		t.Fatalf("after a failure in round 2: %d rounds, %v", len(rounds), err)
	}
	for _, bad := range []struct {
		budgets []int
		keep    float64
	}{{nil, 0.5}, {[]int{1}, 1}, {[]int{1}, 0}, {[]int{0}, 0.5}} {
		if _, err := Halving(cands, bad.budgets, bad.keep, score); err == nil {
			t.Errorf("budgets %v keep %v: no error", bad.budgets, bad.keep)
		}
	}
}
