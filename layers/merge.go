package layers

import (
	"math"
	"sort"

	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
	"gorgonia.org/tensor"
)

// Merger is an adapter whose contribution can be folded into the frozen
// weights: W ← W + ΔW at every adapted site. LoRA always can; Lily only when
// its mixing is fixed (Uniform, or frozen with FreezeMixing).
type Merger interface {
	Adapter
	// Adapted reports whether the site at path is adapted.
	Adapted(path string) bool
	// DeltaWeight returns the site's ΔW [DIn, DOut] in row-major order.
	DeltaWeight(s *Store, site Site) ([]float64, error)
	// Merged reports whether the adapter is folded into the weights; a
	// merged adapter's Apply returns the plain linear.
	Merged() bool
	setMerged(bool)
}

// Merge folds adapter a into the frozen weights of the store. Graphs built
// before the merge still add the adapter and must be rebuilt. Nothing is
// changed when any site cannot be merged.
func Merge(s *Store, a Adapter, sites []Site) error {
	return mergeSign(s, a, sites, 1)
}

// Unmerge subtracts what Merge added, restoring the weights up to rounding.
func Unmerge(s *Store, a Adapter, sites []Site) error {
	return mergeSign(s, a, sites, -1)
}

func mergeSign(s *Store, a Adapter, sites []Site, sign float64) error {
	m, ok := a.(Merger)
	if !ok {
		return errors.Errorf("the %s adapter cannot be merged", a.Method())
	}
	if m.Merged() == (sign > 0) {
		if sign > 0 {
			return errors.Errorf("the %s adapter is already merged", a.Method())
		}
		return errors.Errorf("the %s adapter is not merged", a.Method())
	}
	type update struct {
		w     *tensor.Dense
		delta []float64
	}
	var ups []update
	for _, site := range sites {
		if !m.Adapted(site.Path) {
			continue
		}
		p, ok := s.Get(site.Weight)
		if !ok {
			return errors.Errorf("merge: weight %q of %s is not in the store", site.Weight, site.Path)
		}
		if dt := p.Value.Dtype(); lilyop.IsHalfDtype(dt) {
			return errors.Errorf("merge: weight %q is kept in %s, where the update would be rounded; convert it first (Store.ConvertFrozen(%v, ...))", site.Weight, halfName(dt), s.Dtype())
		}
		if sh := p.Value.Shape(); len(sh) != 2 || sh[0] != site.DIn || sh[1] != site.DOut {
			return errors.Errorf("merge: weight %q has shape %v, the site says [%d, %d]", site.Weight, sh, site.DIn, site.DOut)
		}
		d, err := m.DeltaWeight(s, site)
		if err != nil {
			return errors.Wrapf(err, "merge %s", site.Path)
		}
		ups = append(ups, update{p.Value, d})
	}
	for _, u := range ups {
		switch w := u.w.Data().(type) {
		case []float64:
			for i, v := range u.delta {
				w[i] += sign * v
			}
		case []float32:
			for i, v := range u.delta {
				w[i] += float32(sign * v)
			}
		}
	}
	m.setMerged(sign > 0)
	return nil
}

// matmul returns a [n, k] · b [k, m] in float64.
func matmul(a, b []float64, n, k, m int) []float64 {
	out := make([]float64, n*m)
	for i := 0; i < n; i++ {
		for p := 0; p < k; p++ {
			av := a[i*k+p]
			for j := 0; j < m; j++ {
				out[i*m+j] += av * b[p*m+j]
			}
		}
	}
	return out
}

func param64(s *Store, name string) ([]float64, error) {
	p, ok := s.Get(name)
	if !ok {
		return nil, errors.Errorf("parameter %q is not in the store", name)
	}
	return Float64s(p.Value), nil
}

// DeltaWeight returns scaling·A·B of a LoRA site.
func (l *LoRA) DeltaWeight(s *Store, site Site) ([]float64, error) {
	a, err := param64(s, site.Path+".lora_A.weight")
	if err != nil {
		return nil, err
	}
	b, err := param64(s, site.Path+".lora_B.weight")
	if err != nil {
		return nil, err
	}
	d := matmul(a, b, site.DIn, l.cfg.R, site.DOut)
	for i := range d {
		d[i] *= l.cfg.Scaling()
	}
	return d, nil
}

// Merged reports whether the adapter is folded into the weights.
func (l *LoRA) Merged() bool     { return l.merged }
func (l *LoRA) setMerged(m bool) { l.merged = m }
func (l *Lily) Merged() bool     { return l.merged }
func (l *Lily) setMerged(m bool) { l.merged = m }

// DeltaWeight returns scaling·A·Σ_e mix[e]·B[e] of a Lily site whose mixing
// is fixed; a routed site is an error, since its mixing depends on the input.
func (l *Lily) DeltaWeight(s *Store, site Site) ([]float64, error) {
	ls, ok := l.sites[site.Path]
	if !ok {
		return nil, errors.Errorf("lily: %s is not adapted", site.Path)
	}
	mix, frozen := l.frozen[site.Path]
	if !frozen {
		if !l.cfg.Uniform {
			return nil, errors.Errorf("lily: %s is routed, so its mixing depends on the input and cannot be merged; "+
				"freeze it first (MixingCalibrator + FreezeMixing) or use uniform mixing", site.Path)
		}
		mix = uniform(l.cfg.NumB)
	}
	a, err := param64(s, ls.a)
	if err != nil {
		return nil, err
	}
	b, err := param64(s, ls.b)
	if err != nil {
		return nil, err
	}
	n := l.cfg.R * site.DOut
	bmix := make([]float64, n)
	for e, we := range mix {
		for i := range bmix {
			bmix[i] += we * b[e*n+i]
		}
	}
	d := matmul(a, bmix, site.DIn, l.cfg.R, site.DOut)
	for i := range d {
		d[i] *= l.cfg.Scaling
	}
	return d, nil
}

// FreezeMixing fixes the mixing vectors of the given sites (module path →
// [NumB] weights), replacing their routers: the adapter then behaves like a
// LoRA per site and can be merged. Typical vectors come from a
// MixingCalibrator run over calibration data.
func (l *Lily) FreezeMixing(mix map[string][]float64) error {
	if l.sites == nil {
		return errors.New("lily: FreezeMixing before Layout/Attach")
	}
	for path, v := range mix {
		if _, ok := l.sites[path]; !ok {
			return errors.Errorf("lily: FreezeMixing: %s is not an adapted site", path)
		}
		if len(v) != l.cfg.NumB {
			return errors.Errorf("lily: FreezeMixing: %s has %d weights, num_B is %d", path, len(v), l.cfg.NumB)
		}
		for _, x := range v {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return errors.Errorf("lily: FreezeMixing: %s has a non-finite weight %v", path, v)
			}
		}
	}
	if l.frozen == nil {
		l.frozen = map[string][]float64{}
	}
	for path, v := range mix {
		l.frozen[path] = append([]float64(nil), v...)
	}
	return nil
}

// MixingCalibrator averages the mixing vectors that routed Lily sites produce
// over a number of runs, for FreezeMixing. Every vector the router outputs
// counts once: one per batch (batch routing), one per sequence (sequence
// routing) or one per token (token routing); all-zero vectors of fully
// padded sequences are skipped. With Keep > 0 it also keeps a sample of the
// individual vectors, for measuring how much the mixing varies over inputs.
type MixingCalibrator struct {
	// Keep bounds the individual vectors kept per site (0 keeps none).
	// The sample is evenly spaced over every vector observed: whenever it
	// would exceed Keep, every second vector is dropped and only every
	// second one of those that follow is taken, so between Keep/2 and Keep
	// vectors remain once more than Keep were seen.
	Keep int

	sums   map[string][]float64
	counts map[string]int
	kept   map[string][][]float64
	stride map[string]int
}

// Observe adds the mixing vectors of graph g's last run.
func (c *MixingCalibrator) Observe(g *Graph) error {
	if c.sums == nil {
		c.sums, c.counts = map[string][]float64{}, map[string]int{}
		c.kept, c.stride = map[string][][]float64{}, map[string]int{}
	}
	for path, n := range g.Mixing() {
		v, ok := n.Value().(*tensor.Dense)
		if !ok || v == nil {
			return errors.Errorf("calibration: mixing of %s has no value; run the graph first", path)
		}
		data := Float64s(v)
		e := v.Shape()[v.Dims()-1]
		if c.sums[path] == nil {
			c.sums[path] = make([]float64, e)
		}
		for i := 0; i+e <= len(data); i += e {
			row := data[i : i+e]
			var tot float64
			for _, x := range row {
				tot += x
			}
			if tot == 0 {
				continue
			}
			for j, x := range row {
				c.sums[path][j] += x
			}
			c.keep(path, row)
			c.counts[path]++
		}
	}
	return nil
}

// keep adds row, the site's vector number counts[path], to the sample when
// it falls on the sample's stride, and halves the sample when it exceeds
// Keep.
func (c *MixingCalibrator) keep(path string, row []float64) {
	if c.Keep <= 0 {
		return
	}
	stride := max(c.stride[path], 1)
	if c.counts[path]%stride != 0 {
		return
	}
	kept := append(c.kept[path], append([]float64(nil), row...))
	if len(kept) > c.Keep {
		half := kept[:0]
		for i := 0; i < len(kept); i += 2 {
			half = append(half, kept[i])
		}
		kept, stride = half, 2*stride
	}
	c.kept[path], c.stride[path] = kept, stride
}

// Samples returns copies of the individual vectors kept for every observed
// site (see Keep), in the order they were observed.
func (c *MixingCalibrator) Samples() map[string][][]float64 {
	out := map[string][][]float64{}
	for p, vs := range c.kept {
		cp := make([][]float64, len(vs))
		for i, v := range vs {
			cp[i] = append([]float64(nil), v...)
		}
		out[p] = cp
	}
	return out
}

// Count returns how many vectors were averaged for the site at path.
func (c *MixingCalibrator) Count(path string) int { return c.counts[path] }

// Mean returns the average mixing vector of every observed site.
func (c *MixingCalibrator) Mean() map[string][]float64 {
	out := map[string][]float64{}
	paths := make([]string, 0, len(c.sums))
	for p := range c.sums {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if c.counts[p] == 0 {
			continue
		}
		v := make([]float64, len(c.sums[p]))
		for i, x := range c.sums[p] {
			v[i] = x / float64(c.counts[p])
		}
		out[p] = v
	}
	return out
}
