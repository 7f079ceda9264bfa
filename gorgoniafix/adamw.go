package gorgoniafix

import (
	"fmt"
	"math"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// AdamW is a G.Solver implementing Adam with decoupled weight decay, computed
// exactly as torch.optim.AdamW (amsgrad=false, maximize=false) does it:
//
//	p ← p·(1 − lr·wd)
//	m ← β1·m + (1−β1)·g
//	v ← β2·v + (1−β2)·g²
//	p ← p − lr · (m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε)
//
// It replaces G.NewAdamW, which in v0.9.18 never writes the result back to the
// weights and uses the wrong moment recurrences (see TestUpstreamAdamWDefect).
//
// Step updates every value tensor in place (the same *tensor.Dense backing
// array changes, so graphs sharing a parameter tensor all see the update) and
// then zeroes every gradient, as Gorgonia's own solvers do, so that gradients
// bound with G.BindDualValues accumulate correctly until the next Step.
//
// Moment state is kept per parameter and keyed by the parameter's value
// tensor, so one AdamW can serve several graphs (for example one per sequence
// length bucket) that share their parameter tensors. Replacing a parameter's
// value tensor (G.Let, G.WithValue with a new tensor) starts fresh moments for
// it. The step count t is per parameter, as in torch. Use one AdamW per
// parameter group; set the fields or use SetLearnRate between steps.
//
// Only float32 and float64 *tensor.Dense values are supported. An AdamW must
// not be used from several goroutines at once.
type AdamW struct {
	// LR is the learning rate lr; SetLearnRate changes it between steps.
	LR float64
	// Beta1 is the decay rate of the first moment; it must be in [0, 1).
	Beta1 float64
	// Beta2 is the decay rate of the second moment; it must be in [0, 1).
	Beta2 float64
	// Eps is added to the denominator for numerical stability; it must be ≥ 0.
	Eps float64
	// WeightDecay is the decoupled weight decay wd; it must be ≥ 0.
	WeightDecay float64
	// ClipNorm, when positive, rescales all gradients passed to one Step so
	// that their global L2 norm is at most ClipNorm, exactly as
	// torch.nn.utils.clip_grad_norm_(max_norm=ClipNorm) does (factor
	// min(1, ClipNorm/(norm+1e-6))). Zero disables clipping.
	ClipNorm float64

	states   map[*tensor.Dense]*adamwState
	gradNorm float64
}

// adamwState is the per-parameter optimiser state. m and v hold []float32 or
// []float64 matching the parameter's dtype.
type adamwState struct {
	step  int
	dtype tensor.Dtype
	shape tensor.Shape
	m, v  interface{}
}

// AdamWOption configures an AdamW built by NewAdamW.
type AdamWOption func(*AdamW)

// WithLearnRate sets the learning rate (default 1e-3).
func WithLearnRate(lr float64) AdamWOption { return func(a *AdamW) { a.LR = lr } }

// WithBetas sets the moment decay rates β1 and β2 (default 0.9 and 0.999).
func WithBetas(beta1, beta2 float64) AdamWOption {
	return func(a *AdamW) { a.Beta1, a.Beta2 = beta1, beta2 }
}

// WithEps sets the denominator's stabilising ε (default 1e-8).
func WithEps(eps float64) AdamWOption { return func(a *AdamW) { a.Eps = eps } }

// WithWeightDecay sets the decoupled weight decay (default 0.01).
func WithWeightDecay(wd float64) AdamWOption { return func(a *AdamW) { a.WeightDecay = wd } }

// WithClipNorm enables gradient clipping by global L2 norm (default 0: off).
func WithClipNorm(maxNorm float64) AdamWOption { return func(a *AdamW) { a.ClipNorm = maxNorm } }

// NewAdamW returns an AdamW with torch.optim.AdamW's defaults (lr 1e-3,
// betas (0.9, 0.999), eps 1e-8, weight decay 0.01) and no gradient clipping,
// modified by opts. Invalid settings are reported by Step.
func NewAdamW(opts ...AdamWOption) *AdamW {
	a := &AdamW{
		LR:          1e-3,
		Beta1:       0.9,
		Beta2:       0.999,
		Eps:         1e-8,
		WeightDecay: 0.01,
	}
	for _, opt := range opts {
		if opt != nil {
			opt(a)
		}
	}
	return a
}

// SetLearnRate sets the learning rate used by the following Steps; learning
// rate schedules call it before every Step.
func (a *AdamW) SetLearnRate(lr float64) { a.LR = lr }

// LearnRate returns the current learning rate.
func (a *AdamW) LearnRate() float64 { return a.LR }

// GradNorm returns the global L2 norm of the gradients seen by the last
// successful Step, before any clipping (useful for logging).
func (a *AdamW) GradNorm() float64 { return a.gradNorm }

// StepCount returns how many Steps have updated the parameter whose value
// tensor is param (0 if none has).
func (a *AdamW) StepCount(param *tensor.Dense) int {
	if st, ok := a.states[param]; ok {
		return st.step
	}
	return 0
}

func (a *AdamW) validate() error {
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case !finite(a.LR) || a.LR < 0:
		return errors.Errorf("invalid learning rate %v", a.LR)
	case !finite(a.Beta1) || a.Beta1 < 0 || a.Beta1 >= 1:
		return errors.Errorf("invalid beta1 %v: want 0 ≤ beta1 < 1", a.Beta1)
	case !finite(a.Beta2) || a.Beta2 < 0 || a.Beta2 >= 1:
		return errors.Errorf("invalid beta2 %v: want 0 ≤ beta2 < 1", a.Beta2)
	case !finite(a.Eps) || a.Eps < 0:
		return errors.Errorf("invalid eps %v", a.Eps)
	case !finite(a.WeightDecay) || a.WeightDecay < 0:
		return errors.Errorf("invalid weight decay %v", a.WeightDecay)
	case !finite(a.ClipNorm) || a.ClipNorm < 0:
		return errors.Errorf("invalid clip norm %v", a.ClipNorm)
	}
	return nil
}

// adamwParam is one checked parameter of a Step.
type adamwParam struct {
	name string
	w, g *tensor.Dense
}

// Step performs one AdamW update of every parameter in model, then zeroes
// their gradients. All parameters and gradients are checked before anything
// is changed: on error (bad hyperparameters, a missing gradient, an
// unsupported dtype or type, mismatched shapes, a parameter listed twice, a
// NaN or Inf gradient) no value, gradient or state is modified.
func (a *AdamW) Step(model []G.ValueGrad) error {
	if err := a.validate(); err != nil {
		return errors.Wrap(err, "gorgoniafix.AdamW.Step")
	}
	params := make([]adamwParam, 0, len(model))
	seen := make(map[*tensor.Dense]string, len(model))
	var sumSq float64
	for i, vg := range model {
		p, err := checkParam(vg, i)
		if err != nil {
			return errors.Wrap(err, "gorgoniafix.AdamW.Step")
		}
		if prev, dup := seen[p.w]; dup {
			return errors.Errorf("gorgoniafix.AdamW.Step: parameter %s has the same value tensor as %s", p.name, prev)
		}
		seen[p.w] = p.name
		if st, ok := a.states[p.w]; ok && (st.dtype != p.w.Dtype() || st.shape.TotalSize() != p.w.Shape().TotalSize()) {
			return errors.Errorf("gorgoniafix.AdamW.Step: parameter %s changed from %v %v to %v %v since the last step",
				p.name, st.dtype, st.shape, p.w.Dtype(), p.w.Shape())
		}
		ss, err := finiteSumSq(p.g)
		if err != nil {
			return errors.Wrapf(err, "gorgoniafix.AdamW.Step: gradient of %s", p.name)
		}
		sumSq += ss
		params = append(params, p)
	}
	norm := math.Sqrt(sumSq)
	if math.IsInf(norm, 0) {
		return errors.Errorf("gorgoniafix.AdamW.Step: global gradient norm overflows float64")
	}
	scale := 1.0
	if a.ClipNorm > 0 {
		scale = math.Min(1, a.ClipNorm/(norm+1e-6))
	}
	if a.states == nil {
		a.states = make(map[*tensor.Dense]*adamwState)
	}
	for _, p := range params {
		st, ok := a.states[p.w]
		if !ok {
			st = newAdamWState(p.w)
			a.states[p.w] = st
		}
		st.step++
		h := adamwHyper{
			lr: a.LR, b1: a.Beta1, b2: a.Beta2, eps: a.Eps, wd: a.WeightDecay,
			scale: scale, step: st.step,
		}
		switch p.w.Dtype() {
		case tensor.Float64:
			adamwUpdate(p.w.Float64s(), p.g.Float64s(), st.m.([]float64), st.v.([]float64), h)
		case tensor.Float32:
			adamwUpdate(p.w.Float32s(), p.g.Float32s(), st.m.([]float32), st.v.([]float32), h)
		}
	}
	a.gradNorm = norm
	return nil
}

// checkParam extracts and validates the value and gradient of model[i].
func checkParam(vg G.ValueGrad, i int) (adamwParam, error) {
	if vg == nil {
		return adamwParam{}, errors.Errorf("parameter %d is nil", i)
	}
	name := fmt.Sprintf("#%d", i)
	if n, ok := vg.(G.Namer); ok && n.Name() != "" {
		name = fmt.Sprintf("#%d %q", i, n.Name())
	}
	p := adamwParam{name: name}
	val := vg.Value()
	w, ok := val.(*tensor.Dense)
	if !ok {
		return p, errors.Errorf("parameter %s: value is %T, want *tensor.Dense", name, val)
	}
	gv, err := vg.Grad()
	if err != nil {
		return p, errors.Wrapf(err, "parameter %s has no gradient", name)
	}
	g, ok := gv.(*tensor.Dense)
	if !ok {
		return p, errors.Errorf("parameter %s: gradient is %T, want *tensor.Dense", name, gv)
	}
	if dt := w.Dtype(); dt != tensor.Float64 && dt != tensor.Float32 {
		return p, errors.Errorf("parameter %s: unsupported dtype %v (want float32 or float64)", name, dt)
	}
	if g.Dtype() != w.Dtype() {
		return p, errors.Errorf("parameter %s: gradient dtype %v differs from value dtype %v", name, g.Dtype(), w.Dtype())
	}
	if !g.Shape().Eq(w.Shape()) || g.Shape().TotalSize() != w.Shape().TotalSize() {
		return p, errors.Errorf("parameter %s: gradient shape %v differs from value shape %v", name, g.Shape(), w.Shape())
	}
	if w.IsView() || g.IsView() {
		return p, errors.Errorf("parameter %s: value or gradient is a view; AdamW needs contiguous tensors", name)
	}
	if w == g {
		return p, errors.Errorf("parameter %s: gradient is the value tensor itself", name)
	}
	p.w, p.g = w, g
	return p, nil
}

// finiteSumSq returns Σg² in float64, or an error naming the first NaN or Inf.
func finiteSumSq(g *tensor.Dense) (float64, error) {
	var s float64
	check := func(i int, x float64) error {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return errors.Errorf("element %d is %v", i, x)
		}
		s += x * x
		return nil
	}
	switch g.Dtype() {
	case tensor.Float64:
		for i, x := range g.Float64s() {
			if err := check(i, x); err != nil {
				return 0, err
			}
		}
	case tensor.Float32:
		for i, x := range g.Float32s() {
			if err := check(i, float64(x)); err != nil {
				return 0, err
			}
		}
	default:
		return 0, errors.Errorf("unsupported dtype %v", g.Dtype())
	}
	return s, nil
}

func newAdamWState(w *tensor.Dense) *adamwState {
	st := &adamwState{dtype: w.Dtype(), shape: w.Shape().Clone()}
	n := w.Shape().TotalSize()
	if w.Dtype() == tensor.Float64 {
		st.m, st.v = make([]float64, n), make([]float64, n)
	} else {
		st.m, st.v = make([]float32, n), make([]float32, n)
	}
	return st
}

// adamwHyper carries the scalars of one parameter update.
type adamwHyper struct {
	lr, b1, b2, eps, wd, scale float64
	step                       int
}

// adamwUpdate applies one AdamW update in place to p, m and v and zeroes g.
// Arithmetic happens in T, as torch does for a tensor of that dtype; the
// scalar coefficients are computed in float64.
func adamwUpdate[T float32 | float64](p, g, m, v []T, h adamwHyper) {
	bc1 := 1 - math.Pow(h.b1, float64(h.step))
	bc2Sqrt := math.Sqrt(1 - math.Pow(h.b2, float64(h.step)))
	decay := T(1 - h.lr*h.wd)
	stepSize := T(h.lr / bc1)
	b1, b2 := T(h.b1), T(h.b2)
	ob1, ob2 := T(1-h.b1), T(1-h.b2)
	eps, scale, bc2SqrtT := T(h.eps), T(h.scale), T(bc2Sqrt)
	for i := range p {
		gi := g[i] * scale
		m[i] = b1*m[i] + ob1*gi
		v[i] = b2*v[i] + ob2*gi*gi
		denom := T(math.Sqrt(float64(v[i])))/bc2SqrtT + eps
		p[i] = p[i]*decay - stepSize*(m[i]/denom)
		g[i] = 0
	}
}

var _ G.Solver = (*AdamW)(nil)

// State returns copies of the optimiser state of the parameter whose value
// tensor is param: its step count and first and second moments, with the
// parameter's dtype and shape. ok is false when no Step has updated it.
// Checkpoints save it so that a resumed run continues exactly.
func (a *AdamW) State(param *tensor.Dense) (step int, m, v *tensor.Dense, ok bool) {
	st, found := a.states[param]
	if !found {
		return 0, nil, nil, false
	}
	shape := st.shape.Clone()
	switch mm := st.m.(type) {
	case []float64:
		m = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float64(nil), mm...)))
		v = tensor.New(tensor.WithShape(shape.Clone()...), tensor.WithBacking(append([]float64(nil), st.v.([]float64)...)))
	case []float32:
		m = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float32(nil), mm...)))
		v = tensor.New(tensor.WithShape(shape.Clone()...), tensor.WithBacking(append([]float32(nil), st.v.([]float32)...)))
	}
	return st.step, m, v, true
}

// SetState installs a saved optimiser state (as State returns it) for the
// parameter whose value tensor is param, replacing any it has. The moments
// must have the parameter's dtype and element count, and step must be
// positive.
func (a *AdamW) SetState(param *tensor.Dense, step int, m, v *tensor.Dense) error {
	if param == nil || m == nil || v == nil {
		return errors.New("gorgoniafix.AdamW.SetState: nil parameter or moment")
	}
	if step < 1 {
		return errors.Errorf("gorgoniafix.AdamW.SetState: step count %d; a saved state has at least 1", step)
	}
	n := param.Shape().TotalSize()
	for _, t := range []*tensor.Dense{m, v} {
		if t.Dtype() != param.Dtype() || t.Shape().TotalSize() != n {
			return errors.Errorf("gorgoniafix.AdamW.SetState: a moment is %v %v, the parameter %v %v", t.Dtype(), t.Shape(), param.Dtype(), param.Shape())
		}
	}
	st := newAdamWState(param)
	switch param.Dtype() {
	case tensor.Float64:
		copy(st.m.([]float64), m.Float64s())
		copy(st.v.([]float64), v.Float64s())
	case tensor.Float32:
		copy(st.m.([]float32), m.Float32s())
		copy(st.v.([]float32), v.Float32s())
	default:
		return errors.Errorf("gorgoniafix.AdamW.SetState: unsupported dtype %v (want float32 or float64)", param.Dtype())
	}
	st.step = step
	if a.states == nil {
		a.states = make(map[*tensor.Dense]*adamwState)
	}
	a.states[param] = st
	return nil
}
