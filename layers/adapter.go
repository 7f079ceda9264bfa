package layers

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
)

// Adapter is a parameter-efficient fine-tuning method that graph builders
// call at every adaptable linear layer. Lily, LoRA and None implement it, so
// every comparison is the same graph with a different adapter.
type Adapter interface {
	// Method names the method: "lily", "lora" or "none".
	Method() string
	// Layout decides which sites the adapter adapts and which parameters
	// (names, shapes, initialisation) it needs for them, without allocating
	// anything. It remembers the layout for Apply and may be called again
	// with the same sites.
	Layout(sites []Site) ([]ParamSpec, error)
	// Apply returns the site's output for input x [..., DIn], frozen weight
	// w [DIn, DOut] and optional bias b [DOut] (nil for none): x·w + b plus
	// the adapter's contribution when the site is adapted.
	Apply(g *Graph, site Site, x, w, b *G.Node) (*G.Node, error)
}

// Attach lays out adapter a over sites and adds its parameters to the store
// as trainable tensors, initialised from rng.
func Attach(s *Store, a Adapter, sites []Site, rng *rand.Rand) error {
	specs, err := a.Layout(sites)
	if err != nil {
		return errors.Wrapf(err, "attaching %s adapter", a.Method())
	}
	for _, spec := range specs {
		if _, err := s.New(spec, true, rng); err != nil {
			return errors.Wrapf(err, "attaching %s adapter", a.Method())
		}
	}
	return nil
}

// CountParams returns the number of trainable parameters adapter a needs on
// sites, from shapes alone (shared tensors counted once).
func CountParams(a Adapter, sites []Site) (int, error) {
	specs, err := a.Layout(sites)
	if err != nil {
		return 0, errors.Wrapf(err, "counting %s adapter", a.Method())
	}
	n, err := CountSpecs(specs)
	return n, errors.Wrapf(err, "counting %s adapter", a.Method())
}

// CountSpecs returns the number of elements of the parameters specs
// describe, or an error when it overflows an int.
func CountSpecs(specs []ParamSpec) (int, error) {
	n := 0
	for _, s := range specs {
		k, err := Elements(s.Shape)
		if err == nil && n > math.MaxInt-k {
			err = errors.Errorf("more than %d parameters", math.MaxInt)
		}
		if err != nil {
			return 0, errors.Wrap(err, s.Name)
		}
		n += k
	}
	return n, nil
}

// SpecsSize is the number of elements of the parameters specs describe, in
// float64 so that the shapes of absurd settings add up without overflow:
// for memory estimates made before anything is allocated.
func SpecsSize(specs []ParamSpec) float64 {
	n := 0.0
	for _, s := range specs {
		k := 1.0
		for _, d := range s.Shape {
			k *= float64(d)
		}
		n += k
	}
	return n
}

// Summary formats parameter counts the way PEFT's print_trainable_parameters
// does: "trainable params: 198,144 || all params: 124,843,776 || trainable%: 0.1587".
func Summary(trainable, total int) string {
	pct := 0.0
	if total > 0 {
		pct = 100 * float64(trainable) / float64(total)
	}
	return fmt.Sprintf("trainable params: %s || all params: %s || trainable%%: %.4f", commas(trainable), commas(total), pct)
}

func commas(n int) string {
	s := fmt.Sprint(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := ""
	for len(s) > 3 {
		out = "," + s[len(s)-3:] + out
		s = s[:len(s)-3]
	}
	out = s + out
	if neg {
		out = "-" + out
	}
	return out
}

// Base returns x·w + b (b may be nil): the frozen linear without adapter.
func Base(x, w, b *G.Node) (*G.Node, error) {
	y, err := lilyop.MatMul(x, w)
	if err != nil || b == nil {
		return y, err
	}
	return lilyop.AddBias(y, b)
}

// None is the adapter that adapts nothing: only extra modules such as a
// classifier head are trained.
type None struct{}

// Method returns "none".
func (None) Method() string { return "none" }

// Layout needs no parameters.
func (None) Layout(sites []Site) ([]ParamSpec, error) { return nil, validateSites(sites) }

// Apply returns the frozen linear.
func (None) Apply(_ *Graph, _ Site, x, w, b *G.Node) (*G.Node, error) { return Base(x, w, b) }

// Linear applies the linear layer of site to x: it binds the site's frozen
// weight and bias from the store and lets adapter a (nil means None) compute
// the output.
func Linear(g *Graph, a Adapter, site Site, x *G.Node) (*G.Node, error) {
	w, b, err := linearParams(g, site, x)
	if err != nil {
		return nil, err
	}
	if a == nil {
		a = None{}
	}
	y, err := a.Apply(g, site, x, w, b)
	return y, errors.Wrapf(err, "linear %s (%s)", site.Path, a.Method())
}

// linearParams binds the site's frozen weight and bias (nil without one)
// and checks them and x against the site's widths.
func linearParams(g *Graph, site Site, x *G.Node) (w, b *G.Node, err error) {
	w, err = g.Param(site.Weight)
	if err != nil {
		return nil, nil, errors.Wrapf(err, "linear %s", site.Path)
	}
	if s := w.Shape(); len(s) != 2 || s[0] != site.DIn || s[1] != site.DOut {
		return nil, nil, errors.Errorf("linear %s: weight %q has shape %v, the site says [%d, %d]", site.Path, site.Weight, s, site.DIn, site.DOut)
	}
	if x.Dims() < 2 || x.Shape()[x.Dims()-1] != site.DIn {
		return nil, nil, errors.Errorf("linear %s: input shape %v, want [..., %d]", site.Path, x.Shape(), site.DIn)
	}
	if site.Bias != "" {
		if b, err = g.Float(site.Bias); err != nil {
			return nil, nil, errors.Wrapf(err, "linear %s", site.Path)
		}
	}
	return w, b, nil
}
