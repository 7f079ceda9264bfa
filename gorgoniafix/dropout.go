package gorgoniafix

import (
	"math"
	"math/rand/v2"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Dropout is inverted dropout built from stock ops as HadamardProd(x, mask),
// where mask is an input node of x's shape whose value the caller refills
// before every training run. It replaces G.Dropout, which in v0.9.18 scales
// its gradient by 1/p instead of 1/(1−p), leaves p out of its hash (so two
// dropouts with different p on one input merge into one node), draws from an
// unseeded time-based RNG, and in eval mode returns its input aliased so that
// a following in-place op corrupts the input (see the TestUpstreamDropout*
// tests).
//
// Because the mask is ordinary data, the gradient with respect to x is exactly
// the mask, training runs are reproducible from the caller's seed, and the
// same graph serves training (Refill before each run) and evaluation
// (SetEval once). The mask starts as all ones (eval).
type Dropout struct {
	p     float64
	x     *G.Node
	mask  *G.Node
	out   *G.Node
	maskT *tensor.Dense
	train bool
}

// MaskSuffix is appended to the name passed to NewDropout to name the mask
// input node.
const MaskSuffix = ".dropout_mask"

// NewDropout builds dropout with drop probability p on x in graph g. The mask
// node is named name+MaskSuffix; that name must not already be used in g,
// because Gorgonia merges input nodes with equal name, type and shape. p must
// be in [0, 1); for p == 0 no mask is made and Output returns x itself. x must
// be a float32 or float64 tensor node of known shape with at least one
// dimension.
func NewDropout(g *G.ExprGraph, x *G.Node, p float64, name string) (*Dropout, error) {
	switch {
	case g == nil:
		return nil, errors.New("gorgoniafix.NewDropout: nil graph")
	case x == nil:
		return nil, errors.Errorf("gorgoniafix.NewDropout %q: nil input node", name)
	case x.Graph() != g:
		return nil, errors.Errorf("gorgoniafix.NewDropout %q: input %v is not in the given graph", name, x.Name())
	case math.IsNaN(p) || p < 0 || p >= 1:
		return nil, errors.Errorf("gorgoniafix.NewDropout %q: drop probability %v outside [0, 1)", name, p)
	case name == "":
		return nil, errors.New("gorgoniafix.NewDropout: empty name (the mask node needs a unique name)")
	}
	if p == 0 {
		return &Dropout{p: 0, x: x, out: x}, nil
	}
	dt := x.Dtype()
	if dt != tensor.Float64 && dt != tensor.Float32 {
		return nil, errors.Errorf("gorgoniafix.NewDropout %q: unsupported dtype %v (want float32 or float64)", name, dt)
	}
	shape := x.Shape()
	if shape.Dims() == 0 || shape.TotalSize() <= 0 {
		return nil, errors.Errorf("gorgoniafix.NewDropout %q: input %v has shape %v; want a tensor of known shape", name, x.Name(), shape)
	}
	maskName := name + MaskSuffix
	if prev := g.ByName(maskName); len(prev) > 0 {
		return nil, errors.Errorf("gorgoniafix.NewDropout: a node named %q already exists in the graph", maskName)
	}
	maskT := tensor.New(tensor.WithShape(shape.Clone()...), tensor.Of(dt))
	d := &Dropout{p: p, x: x, maskT: maskT}
	d.SetEval()
	d.mask = G.NewTensor(g, dt, shape.Dims(), G.WithShape(shape.Clone()...), G.WithName(maskName), G.WithValue(maskT))
	out, err := G.HadamardProd(x, d.mask)
	if err != nil {
		return nil, errors.Wrapf(err, "gorgoniafix.NewDropout %q: HadamardProd", name)
	}
	d.out = out
	return d, nil
}

// Output returns the dropout's result node (x itself when p == 0).
func (d *Dropout) Output() *G.Node { return d.out }

// Mask returns the mask input node, or nil when p == 0.
func (d *Dropout) Mask() *G.Node { return d.mask }

// P returns the drop probability.
func (d *Dropout) P() float64 { return d.p }

// Training reports whether the mask currently holds a training draw (true
// after Refill, false after SetEval and initially).
func (d *Dropout) Training() bool { return d.train }

// Refill draws a new training mask in place: each element is 0 with
// probability p and 1/(1−p) otherwise, decided by rng.Float64() < p in
// row-major order, so a seeded rng reproduces the same masks. Call it before
// every training run of the graph. It is a no-op when p == 0.
func (d *Dropout) Refill(rng *rand.Rand) error {
	if d.maskT == nil {
		return nil
	}
	if rng == nil {
		return errors.New("gorgoniafix.Dropout.Refill: nil rng")
	}
	switch d.maskT.Dtype() {
	case tensor.Float64:
		fillMask(d.maskT.Float64s(), d.p, rng)
	case tensor.Float32:
		fillMask(d.maskT.Float32s(), d.p, rng)
	default:
		return errors.Errorf("gorgoniafix.Dropout.Refill: unsupported dtype %v", d.maskT.Dtype())
	}
	d.train = true
	return nil
}

// SetEval sets the mask to all ones, so Output equals x (as a fresh copy,
// never aliasing x). It is a no-op when p == 0.
func (d *Dropout) SetEval() {
	d.train = false
	if d.maskT == nil {
		return
	}
	switch d.maskT.Dtype() {
	case tensor.Float64:
		fillOnes(d.maskT.Float64s())
	case tensor.Float32:
		fillOnes(d.maskT.Float32s())
	}
}

func fillMask[T float32 | float64](m []T, p float64, rng *rand.Rand) {
	keep := T(1 / (1 - p))
	for i := range m {
		if rng.Float64() < p {
			m[i] = 0
		} else {
			m[i] = keep
		}
	}
}

func fillOnes[T float32 | float64](m []T) {
	for i := range m {
		m[i] = 1
	}
}
