package layers

import (
	"strings"

	"github.com/pkg/errors"
)

// Site is one adaptable linear layer y = x·W + b of a model, as a graph
// builder reports it to the adapter.
type Site struct {
	// Layer is the index of the block the linear belongs to.
	Layer int
	// Target is the module's name as Hugging Face names it, such as "query"
	// or "q_proj".
	Target string
	// Path is the full module path, such as
	// "roberta.encoder.layer.3.attention.self.query". It is unique per site
	// and names the adapter's parameters.
	Path string
	// DIn and DOut are the input and output widths.
	DIn, DOut int
	// Weight names the frozen [DIn, DOut] weight in the store; Bias names
	// the [DOut] bias, or is empty.
	Weight, Bias string
}

// validateSites checks widths and that module paths are present and unique.
func validateSites(sites []Site) error {
	seen := map[string]bool{}
	for _, s := range sites {
		if s.Path == "" {
			return errors.Errorf("site %+v has no module path", s)
		}
		if seen[s.Path] {
			return errors.Errorf("two sites share the module path %q", s.Path)
		}
		seen[s.Path] = true
		if s.DIn <= 0 || s.DOut <= 0 {
			return errors.Errorf("site %q has widths %d→%d", s.Path, s.DIn, s.DOut)
		}
	}
	return nil
}

// matchTarget returns the longest entry of targets that names the site, as
// PEFT matches target_modules: the module path equals the target or ends
// with "." + target.
func matchTarget(s Site, targets []string) (string, bool) {
	best := ""
	for _, t := range targets {
		if (s.Path == t || strings.HasSuffix(s.Path, "."+t)) && len(t) > len(best) {
			best = t
		}
	}
	return best, best != ""
}
