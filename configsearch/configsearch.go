// Package configsearch finds the Lily configurations that fit a parameter
// budget and picks the best of them by successive halving.
//
// The paper leaves two of Lily's choices without guidance: which layers
// share a down-projection A (stride_A) and how many up-projection experts
// B to keep (num_B). At a fixed trainable-parameter budget — typically the
// size of the LoRA adapter Lily is compared with — the rank r follows from
// those two, so the space of fair comparisons is small enough to list.
// Candidates lists it from the model's sites alone (shapes, no
// allocation); Halving runs a training-and-evaluation function of the
// caller's on every candidate with a small budget, keeps the best part,
// and repeats with larger budgets.
package configsearch

import (
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
)

// Candidate is one Lily shape and the number of trainable parameters it
// has on the sites it was counted for (shared tensors counted once).
type Candidate struct {
	R       int `json:"r"`
	StrideA int `json:"stride_A"`
	NumB    int `json:"num_B"`
	Params  int `json:"params"`
}

// Config is base with c's shape.
func (c Candidate) Config(base layers.LilyConfig) layers.LilyConfig {
	base.R, base.StrideA, base.NumB = c.R, c.StrideA, c.NumB
	return base
}

// Space bounds the enumeration: ranks 1..MaxR and 2..MaxNumB experts (Lily
// needs two for its router to learn anything, as PEFT requires); stride_A
// runs over every value that gives a different sharing of A.
type Space struct {
	MaxR, MaxNumB int
}

// LoRABudget is the number of trainable parameters of a LoRA adapter of
// rank r on the sites base's target modules select: the budget of "Lily
// matched to LoRA r = k".
func LoRABudget(sites []layers.Site, targets []string, r int) (int, error) {
	lora, err := layers.NewLoRA(layers.LoRAConfig{R: r, Alpha: float64(r), TargetModules: targets})
	if err != nil {
		return 0, errors.Wrap(err, "configsearch.LoRABudget")
	}
	n, err := layers.CountParams(lora, sites)
	return n, errors.Wrap(err, "configsearch.LoRABudget")
}

// Candidates lists every (r, stride_A, num_B) in space whose Lily adapter
// (base's other settings, such as target modules) has within tolerance·budget
// of budget trainable parameters on sites, nearest to the budget first
// (then by rank, experts and stride). Strides that share A the same way as
// a smaller one (beyond the longest group of layers) are left out.
func Candidates(sites []layers.Site, base layers.LilyConfig, budget int, tolerance float64, space Space) ([]Candidate, error) {
	switch {
	case budget < 1:
		return nil, errors.Errorf("configsearch.Candidates: budget %d; give a positive number of parameters", budget)
	case tolerance < 0 || math.IsNaN(tolerance) || math.IsInf(tolerance, 0):
		return nil, errors.Errorf("configsearch.Candidates: tolerance %v; give a fraction ≥ 0 (0.05 is within 5%%)", tolerance)
	case space.MaxR < 1 || space.MaxNumB < 2:
		return nil, errors.Errorf("configsearch.Candidates: space %+v; MaxR must be ≥ 1 and MaxNumB ≥ 2", space)
	case len(sites) == 0:
		return nil, errors.New("configsearch.Candidates: no sites")
	}
	strides, err := distinctStrides(sites, base)
	if err != nil {
		return nil, err
	}
	slack := tolerance * float64(budget)
	var out []Candidate
	for _, stride := range strides {
		for numB := 2; numB <= space.MaxNumB; numB++ {
			for r := 1; r <= space.MaxR; r++ {
				c := Candidate{R: r, StrideA: stride, NumB: numB}
				lily, err := layers.NewLily(c.Config(base))
				if err != nil {
					return nil, errors.Wrapf(err, "configsearch.Candidates: r %d, stride_A %d, num_B %d", r, stride, numB)
				}
				if c.Params, err = layers.CountParams(lily, sites); err != nil {
					return nil, errors.Wrapf(err, "configsearch.Candidates: r %d, stride_A %d, num_B %d", r, stride, numB)
				}
				if float64(c.Params) > float64(budget)+slack {
					break // the count grows with r
				}
				if math.Abs(float64(c.Params-budget)) <= slack {
					out = append(out, c)
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		da, db := abs(a.Params-budget), abs(b.Params-budget)
		if da != db {
			return da < db
		}
		if a.R != b.R {
			return a.R > b.R
		}
		if a.NumB != b.NumB {
			return a.NumB < b.NumB
		}
		return a.StrideA < b.StrideA
	})
	return out, nil
}

// distinctStrides returns the stride_A values 1, 2, … that lay out A
// differently: once a stride covers the longest group of sites with one A,
// larger strides lay out the same parameters.
func distinctStrides(sites []layers.Site, base layers.LilyConfig) ([]int, error) {
	var strides []int
	var last string
	for stride := 1; stride <= len(sites); stride++ {
		cfg := base
		cfg.R, cfg.StrideA, cfg.NumB = 1, stride, 2
		lily, err := layers.NewLily(cfg)
		if err != nil {
			return nil, errors.Wrap(err, "configsearch.Candidates")
		}
		specs, err := lily.Layout(sites)
		if err != nil {
			return nil, errors.Wrap(err, "configsearch.Candidates")
		}
		names := make([]string, len(specs))
		for i, s := range specs {
			names[i] = s.Name
		}
		slices.Sort(names)
		sig := strings.Join(names, "\n")
		if sig == last {
			break
		}
		last = sig
		strides = append(strides, stride)
	}
	return strides, nil
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
