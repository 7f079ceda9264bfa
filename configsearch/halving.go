package configsearch

import (
	"math"
	"sort"

	"github.com/pkg/errors"
)

// Scored is one candidate's result in one round.
type Scored[C any] struct {
	Candidate C       `json:"candidate"`
	Score     float64 `json:"score"`
}

// Round is one rung of successive halving: the budget every candidate in
// it got and their scores, best first.
type Round[C any] struct {
	Budget int         `json:"budget"`
	Scores []Scored[C] `json:"scores"`
}

// Halving runs successive halving: every candidate is run with budgets[0]
// (steps, examples — whatever run counts), the best ceil(keep·n) of them
// with budgets[1], and so on; the first entry of the last round's scores is
// the winner. run returns a score where lower is better (a held-out loss or
// perplexity; negate an accuracy); a NaN score ranks last. Ties keep the
// candidates' order. When run fails, Halving returns the rounds finished so
// far and the error (a Ctrl-C keeps what finished).
func Halving[C any](cands []C, budgets []int, keep float64, run func(c C, budget int) (float64, error)) ([]Round[C], error) {
	switch {
	case len(cands) == 0:
		return nil, errors.New("configsearch.Halving: no candidates")
	case len(budgets) == 0:
		return nil, errors.New("configsearch.Halving: no budgets; give one per round, e.g. 100, 300, 1000 steps")
	case !(keep > 0 && keep < 1):
		return nil, errors.Errorf("configsearch.Halving: keep %v; give the fraction kept each round, in (0, 1) (0.5 halves)", keep)
	}
	var rounds []Round[C]
	alive := cands
	for i, budget := range budgets {
		if budget < 1 {
			return rounds, errors.Errorf("configsearch.Halving: budget %d of round %d; budgets must be positive", budget, i+1)
		}
		if i > 0 {
			alive = alive[:max(1, int(math.Ceil(keep*float64(len(alive)))))]
		}
		round := Round[C]{Budget: budget}
		for _, c := range alive {
			s, err := run(c, budget)
			if err != nil {
				return rounds, errors.Wrapf(err, "configsearch.Halving: round %d (budget %d)", i+1, budget)
			}
			round.Scores = append(round.Scores, Scored[C]{Candidate: c, Score: s})
		}
		sort.SliceStable(round.Scores, func(a, b int) bool {
			sa, sb := round.Scores[a].Score, round.Scores[b].Score
			if math.IsNaN(sb) {
				return !math.IsNaN(sa)
			}
			return sa < sb
		})
		rounds = append(rounds, round)
		alive = alive[:0:0]
		for _, s := range round.Scores {
			alive = append(alive, s.Candidate)
		}
	}
	return rounds, nil
}
