package configsearch_test

import (
	"fmt"

	"github.com/lilygo/lily/configsearch"
	"github.com/lilygo/lily/layers"
)

// Lily shapes for roberta-base's query and value that match LoRA r = 8's
// size within 1%, then successive halving over them with a stand-in for
// training (a real run function fine-tunes for budget steps and returns the
// held-out loss).
func Example() {
	var sites []layers.Site
	for l := 0; l < 12; l++ {
		for _, t := range []string{"query", "value"} {
			path := fmt.Sprintf("roberta.encoder.layer.%d.attention.self.%s", l, t)
			sites = append(sites, layers.Site{Layer: l, Target: t, Path: path, DIn: 768, DOut: 768, Weight: path + ".weight"})
		}
	}
	targets := []string{"query", "value"}
	budget, _ := configsearch.LoRABudget(sites, targets, 8)
	cands, _ := configsearch.Candidates(sites, layers.DefaultLilyConfig(targets...), budget, 0.01, configsearch.Space{MaxR: 64, MaxNumB: 4})
	fmt.Printf("LoRA r 8: %d parameters; %d Lily shapes within 1%%, nearest:\n", budget, len(cands))
	for _, c := range cands[:3] {
		fmt.Printf("  r %d, stride_A %d, num_B %d: %d\n", c.R, c.StrideA, c.NumB, c.Params)
	}
	loss := func(c configsearch.Candidate, steps int) (float64, error) {
		return float64(c.R*c.NumB) / float64(steps), nil // stand-in
	}
	rounds, _ := configsearch.Halving(cands, []int{100, 300, 1000}, 0.5, loss)
	best := rounds[len(rounds)-1].Scores[0].Candidate
	fmt.Printf("%d rounds; best: r %d, stride_A %d, num_B %d\n", len(rounds), best.R, best.StrideA, best.NumB)
	// Output:
	// LoRA r 8: 294912 parameters; 27 Lily shapes within 1%, nearest:
	//   r 38, stride_A 6, num_B 3: 294576
	//   r 38, stride_A 7, num_B 3: 294576
	//   r 38, stride_A 8, num_B 3: 294576
	// 3 rounds; best: r 24, stride_A 2, num_B 2
}
