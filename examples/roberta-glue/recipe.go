package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// recipe holds the per-task settings of the Lily paper's RoBERTa-base GLUE
// runs (LILY.md): the number of A's (= number of B experts), the scaling,
// the two learning rates, the epochs and the batch size. Tasks the paper did
// not run get settings chosen by analogy, marked by fromPaper = false.
type recipe struct {
	Blocks    int     // A's = B's
	Scaling   float64 // Lily's s
	HeadLR    float64 // classifier head learning rate
	AdapterLR float64 // adapter learning rate
	Epochs    int
	Batch     int
	fromPaper bool
	note      string
}

// recipes maps each GLUE task to its recipe.
var recipes = map[string]recipe{
	"cola": {Blocks: 4, Scaling: 0.01, HeadLR: 5e-3, AdapterLR: 5e-3, Epochs: 100, Batch: 64, fromPaper: true},
	"mrpc": {Blocks: 2, Scaling: 0.1, HeadLR: 5e-3, AdapterLR: 5e-3, Epochs: 100, Batch: 50, fromPaper: true},
	"qnli": {Blocks: 2, Scaling: 0.01, HeadLR: 5e-3, AdapterLR: 5e-3, Epochs: 40, Batch: 32, fromPaper: true},
	"rte":  {Blocks: 3, Scaling: 0.1, HeadLR: 5e-3, AdapterLR: 5e-3, Epochs: 100, Batch: 32, fromPaper: true},
	"sst2": {Blocks: 2, Scaling: 0.01, HeadLR: 1e-2, AdapterLR: 5e-3, Epochs: 40, Batch: 32, fromPaper: true},
	"stsb": {Blocks: 2, Scaling: 0.1, HeadLR: 1e-2, AdapterLR: 5e-3, Epochs: 100, Batch: 64, fromPaper: true},
	"mnli": {Blocks: 2, Scaling: 0.01, HeadLR: 5e-3, AdapterLR: 5e-3, Epochs: 10, Batch: 32, note: "as QNLI, 10 epochs (393k examples)"},
	"qqp":  {Blocks: 2, Scaling: 0.01, HeadLR: 5e-3, AdapterLR: 5e-3, Epochs: 10, Batch: 32, note: "as QNLI, 10 epochs (364k examples)"},
	"wnli": {Blocks: 3, Scaling: 0.1, HeadLR: 5e-3, AdapterLR: 5e-3, Epochs: 100, Batch: 32, note: "as RTE (a small NLI task)"},
}

// strideFor returns the stride_A that gives blocks A's over layers layers,
// ceil(layers/blocks): the paper's 3 A's over RoBERTa-base's 12 layers is
// stride_A 4. A model with fewer layers than the recipe's A's gets one A per
// layer.
func strideFor(layers, blocks int) int {
	if blocks < 1 || layers < 1 {
		return 1
	}
	return (layers + blocks - 1) / blocks
}

// printRecipes writes the recipe table for -h.
func printRecipes(w io.Writer) {
	names := make([]string, 0, len(recipes))
	for n := range recipes {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "  %-5s %-9s %-8s %-8s %-10s %-6s %-5s %s\n", "task", "A's=B's", "scaling", "head_lr", "adapter_lr", "epochs", "batch", "source")
	for _, n := range names {
		r := recipes[n]
		src := "Lily paper (RoBERTa-base)"
		if !r.fromPaper {
			src = "not in the paper: " + r.note
		}
		fmt.Fprintf(w, "  %-5s %-9d %-8g %-8g %-10g %-6d %-5d %s\n", n, r.Blocks, r.Scaling, r.HeadLR, r.AdapterLR, r.Epochs, r.Batch, src)
	}
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
