package updatestats

import (
	"math"

	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat"
)

// poolState is a B pool being analysed: its experts, their factors and the
// mean mixing vectors of the sites that share it, in order.
type poolState struct {
	name  string
	b     []float64 // [num_B, r, d_out]
	re    []*mat.Dense
	sites []string
	rows  [][]float64
}

// lily measures s·A·Σ_e w_e·B_e at every Lily site with the site's mean
// mixing vector w, then every pool of experts. A's and pools shared by
// several sites are factored once.
func (an *analysis) lily(l *layers.Lily, sites []layers.Site, mix *layers.MixingCalibrator) error {
	if l.Merged() {
		return errors.New("the adapter is merged into the weights; unmerge it first (layers.Unmerge)")
	}
	c := l.Config()
	names := l.PEFTNames()
	frozen := l.FrozenMixing()
	var means map[string][]float64
	var samples map[string][][]float64
	if mix != nil {
		means, samples = mix.Mean(), mix.Samples()
	}
	ras := map[string]*mat.Dense{}
	pools := map[string]*poolState{}
	var order []*poolState
	for _, site := range sites {
		if !l.Adapted(site.Path) {
			continue
		}
		aName, bName := names[site.Path+".lily_A.weight"], names[site.Path+".lily_B.weight"]
		ra, ok := ras[aName]
		if !ok {
			a, err := an.values(aName, site.DIn*c.R)
			if err != nil {
				return err
			}
			ra = factorA(a, site.DIn, c.R)
			ras[aName] = ra
		}
		ps, ok := pools[bName]
		if !ok {
			b, err := an.values(bName, c.NumB*c.R*site.DOut)
			if err != nil {
				return err
			}
			ps = &poolState{name: bName, b: b, re: factorExperts(b, c.NumB, c.R, site.DOut)}
			pools[bName] = ps
			order = append(order, ps)
		}
		m, err := siteMixing(site.Path, c, frozen, means, mix)
		if err != nil {
			return err
		}
		f := &factored{scale: c.Scaling, ra: ra, re: ps.re, bound: min(c.R, site.DIn, site.DOut)}
		su, err := an.site(site, f, m.Mean)
		if err != nil {
			return err
		}
		if smp := samples[site.Path]; m.Source == FromRouter && len(smp) > 0 {
			if m.Spread, err = an.spread(site, f, smp); err != nil {
				return err
			}
		}
		su.Mixing = m
		ps.sites, ps.rows = append(ps.sites, site.Path), append(ps.rows, m.Mean)
		an.report.Sites = append(an.report.Sites, su)
	}
	for _, ps := range order {
		p, err := an.pool(ps, c.NumB)
		if err != nil {
			return err
		}
		an.report.Pools = append(an.report.Pools, p)
	}
	return nil
}

// siteMixing returns the mixing vector a Lily site's update uses: frozen,
// uniform, or the mean of its router's observed outputs.
func siteMixing(path string, c layers.LilyConfig, frozen, means map[string][]float64, mix *layers.MixingCalibrator) (*Mixing, error) {
	if v, ok := frozen[path]; ok {
		return &Mixing{Source: FromFrozen, Mean: v, Entropy: entropy(v)}, nil
	}
	if c.Uniform {
		u := make([]float64, c.NumB)
		for i := range u {
			u[i] = 1 / float64(c.NumB)
		}
		return &Mixing{Source: FromUniform, Mean: u, Entropy: entropy(u)}, nil
	}
	mean, ok := means[path]
	if !ok {
		return nil, errors.Errorf("%s is routed but no mixing vector of it was observed; run held-out batches through an evaluation graph and pass each run to layers.MixingCalibrator.Observe", path)
	}
	return &Mixing{Source: FromRouter, Mean: mean, Vectors: mix.Count(path), Entropy: entropy(mean)}, nil
}

// spread measures the site's update for each sampled mixing vector.
func (an *analysis) spread(site layers.Site, f *factored, samples [][]float64) (*Spread, error) {
	var ent, rank, eff, norm []float64
	for _, w := range samples {
		sv, err := f.singularValues(w)
		if err != nil {
			return nil, errors.Wrapf(err, "%s: a sampled mixing vector", site.Path)
		}
		sp := measure(sv, an.relTol(site.DIn, site.DOut))
		ent, rank = append(ent, entropy(w)), append(rank, float64(sp.rank))
		eff, norm = append(eff, sp.effective), append(norm, sp.norm)
	}
	std := make([]float64, len(f.re))
	col := make([]float64, len(samples))
	for e := range std {
		for i, w := range samples {
			col[i] = w[e]
		}
		std[e] = stat.PopStdDev(col, nil)
	}
	return &Spread{Samples: len(samples), Std: std, Entropy: rangeOf(ent), Rank: rangeOf(rank), EffectiveRank: rangeOf(eff), Norm: rangeOf(norm)}, nil
}

// pool measures the similarity of a pool's experts and how differently its
// sites mix them.
func (an *analysis) pool(ps *poolState, numB int) (Pool, error) {
	p := Pool{B: ps.name, Sites: ps.sites, ExpertNorms: make([]float64, numB), Cosine: make([][]float64, numB)}
	n := len(ps.b) / numB
	expert := func(e int) []float64 { return ps.b[e*n : (e+1)*n] }
	for e := range p.ExpertNorms {
		p.ExpertNorms[e] = floats.Norm(expert(e), 2)
	}
	for e := range p.Cosine {
		p.Cosine[e] = make([]float64, numB)
		for f := range p.Cosine[e] {
			ne, nf := p.ExpertNorms[e], p.ExpertNorms[f]
			if ne == 0 || nf == 0 {
				continue
			}
			p.Cosine[e][f] = floats.Dot(expert(e), expert(f)) / (ne * nf)
			if e != f {
				p.MaxAbsCosine = math.Max(p.MaxAbsCosine, math.Abs(p.Cosine[e][f]))
			}
		}
	}
	m := mat.NewDense(len(ps.rows), numB, nil)
	for i, row := range ps.rows {
		m.SetRow(i, row)
		for _, other := range ps.rows[:i] {
			p.MaxSiteDistance = math.Max(p.MaxSiteDistance, floats.Distance(row, other, 1)/2)
		}
	}
	sv, err := svdValues(m)
	if err != nil {
		return p, errors.Wrapf(err, "the mixing matrix of %s", ps.name)
	}
	sp := measure(sv, an.relTol(len(ps.rows), numB))
	p.MixingSingularValues, p.MixingRank, p.MixingRankThreshold, p.MixingEffectiveRank = sp.values, sp.rank, sp.threshold, sp.effective
	return p, nil
}
