// Package updatestats measures the weight updates that a trained LoRA or
// Lily adapter adds to a model, to test the mechanism the Lily paper
// (arXiv 2407.09946) credits for its gains rather than only its score: that
// Lily's per-layer update ΔW_l = s·A·Σ_e w_{l,e}·B_e has a higher rank than
// LoRA's s·A_l·B_l at the same parameter count, that its B experts stay
// different, and that its routers mix them differently across layers and
// inputs.
//
// For every adapted site Analyze reports the singular values of ΔW, its
// numerical rank at a stated tolerance, its effective rank (Roy & Vetterli
// 2007) and its Frobenius norm next to the frozen weight's. For Lily, ΔW
// uses the site's mixing vector averaged over held-out data (collected with
// a layers.MixingCalibrator), with the spread of the same figures over
// individual inputs; for every pool of shared B experts it reports their
// pairwise cosine similarities, and the singular values and rank of the
// sites × experts matrix of mean mixing vectors. Everything is computed
// from r-sized triangular factors of A and B (QR, then the SVD of a small
// core), never from a d_in × d_out matrix.
package updatestats

import (
	"fmt"
	"math"

	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat"
	"gorgonia.org/tensor"
)

// Options tunes the analysis; the zero value is the default.
type Options struct {
	// RankTol is the relative tolerance of every numerical rank: a singular
	// value counts when it exceeds RankTol times the largest. Zero selects
	// numpy's matrix_rank rule at the precision of the store's parameters:
	// max(rows, columns)·ε, with ε = 2⁻²³ for float32 and 2⁻⁵² for float64.
	RankTol float64
}

// Report is the analysis of one adapter's updates.
type Report struct {
	// Method is "lily" or "lora".
	Method string `json:"method"`
	// RankRule states the tolerance of every numerical rank in the report.
	RankRule string `json:"rank_rule"`
	// Sites has one entry per adapted site, in the order of the sites given.
	Sites []SiteUpdate `json:"sites"`
	// Pools has one entry per pool of shared B experts (Lily only).
	Pools []Pool `json:"lily_pools,omitempty"`
	// Summary averages the sites' figures.
	Summary Summary `json:"summary"`
}

// SiteUpdate describes the update ΔW [d_in, d_out] of one adapted site.
type SiteUpdate struct {
	Path   string `json:"path"`
	Layer  int    `json:"layer"`
	Target string `json:"target"`
	DIn    int    `json:"d_in"`
	DOut   int    `json:"d_out"`
	// SingularValues are ΔW's min(r, d_in, d_out) largest singular values,
	// in decreasing order; all others are zero.
	SingularValues []float64 `json:"singular_values"`
	// Rank counts the singular values above RankThreshold.
	Rank          int     `json:"numerical_rank"`
	RankThreshold float64 `json:"rank_threshold"`
	// EffectiveRank is exp of the entropy of the singular values divided by
	// their sum (Roy & Vetterli 2007); 0 when ΔW is zero.
	EffectiveRank float64 `json:"effective_rank"`
	// Norm is ‖ΔW‖_F, WeightNorm the frozen weight's ‖W‖_F and RelativeNorm
	// their ratio (0 when W is zero).
	Norm         float64 `json:"delta_norm"`
	WeightNorm   float64 `json:"weight_norm"`
	RelativeNorm float64 `json:"relative_norm"`
	// Mixing is the Lily mixing vector ΔW was computed with (Lily only).
	Mixing *Mixing `json:"lily_mixing,omitempty"`
}

// Mixing sources.
const (
	// FromRouter: the mean of the router's outputs on observed data.
	FromRouter = "router"
	// FromFrozen: the vector fixed with Lily.FreezeMixing.
	FromFrozen = "frozen"
	// FromUniform: 1/num_B each (Lily's uniform mixing).
	FromUniform = "uniform"
)

// Mixing is the mixing vector of one Lily site.
type Mixing struct {
	// Source is FromRouter, FromFrozen or FromUniform.
	Source string `json:"source"`
	// Mean is the mixing vector: for a router, the mean of every vector it
	// output on the observed data (one per batch, sequence or token as its
	// routing mode says).
	Mean []float64 `json:"mean"`
	// Vectors is how many router outputs Mean averages (0 unless routed).
	Vectors int `json:"vectors"`
	// Entropy is the entropy of Mean in nats (uniform mixing: log num_B).
	Entropy float64 `json:"entropy"`
	// Spread describes the individual router outputs (routed sites whose
	// calibrator kept a sample).
	Spread *Spread `json:"spread,omitempty"`
}

// Spread describes how a routed site's mixing, and so its update, varies
// over the sample of individual router outputs a calibrator kept: for each
// sampled vector w, the update ΔW(w) = s·A·Σ_e w_e·B_e is measured as for
// the mean.
type Spread struct {
	Samples int `json:"samples"`
	// Std is, per expert, the population standard deviation of its weight.
	Std           []float64 `json:"std"`
	Entropy       Range     `json:"entropy"`
	Rank          Range     `json:"numerical_rank"`
	EffectiveRank Range     `json:"effective_rank"`
	Norm          Range     `json:"delta_norm"`
}

// Range is the smallest, mean and largest of a set of values.
type Range struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	Max  float64 `json:"max"`
}

// Pool describes one Lily pool of B experts [num_B, r, d_out], shared by
// every site of a (target, shape) group, and how those sites mix it.
type Pool struct {
	// B is the store name of the pool; Sites are the paths of the sites
	// that share it, in order.
	B     string   `json:"b"`
	Sites []string `json:"sites"`
	// ExpertNorms are ‖B_e‖_F.
	ExpertNorms []float64 `json:"expert_norms"`
	// Cosine[e][f] is ⟨B_e, B_f⟩/(‖B_e‖·‖B_f‖); 0 where an expert is zero
	// (the similarity is undefined there).
	Cosine [][]float64 `json:"expert_cosine"`
	// MaxAbsCosine is the largest |Cosine[e][f]| over pairs of distinct
	// non-zero experts (0 when there are none).
	MaxAbsCosine float64 `json:"max_abs_cosine"`
	// MixingSingularValues are those of the sites × experts matrix whose
	// rows are the sites' mean mixing vectors; MixingRank counts those above
	// MixingRankThreshold. Rank 1 means every site mixes the experts alike.
	MixingSingularValues []float64 `json:"mixing_singular_values"`
	MixingRank           int       `json:"mixing_rank"`
	MixingRankThreshold  float64   `json:"mixing_rank_threshold"`
	MixingEffectiveRank  float64   `json:"mixing_effective_rank"`
	// MaxSiteDistance is the largest total-variation distance ½·Σ_e|w_e − v_e|
	// between two sites' mean mixing vectors: 0 when all sites mix alike, 1
	// when two use disjoint experts.
	MaxSiteDistance float64 `json:"max_site_distance"`
}

// Summary averages the figures of every site (and pool).
type Summary struct {
	Sites             int     `json:"sites"`
	MeanRank          float64 `json:"mean_numerical_rank"`
	MeanEffectiveRank float64 `json:"mean_effective_rank"`
	MeanRelativeNorm  float64 `json:"mean_relative_norm"`
	// Lily summarises the mixing and the experts (Lily only).
	Lily *LilySummary `json:"lily,omitempty"`
}

// LilySummary summarises Lily's experts and mixing over every pool.
type LilySummary struct {
	NumB int `json:"num_b"`
	// MeanEntropy is the mean over sites of the entropy of their mean mixing
	// vectors; UniformEntropy = log num_B is its largest possible value.
	MeanEntropy    float64 `json:"mean_mixing_entropy"`
	UniformEntropy float64 `json:"uniform_entropy"`
	// MaxAbsCosine is the largest of the pools' MaxAbsCosine.
	MaxAbsCosine float64 `json:"max_abs_expert_cosine"`
	// MixingRanks are the pools' MixingRank, in pool order.
	MixingRanks []int `json:"mixing_ranks"`
	// MaxSiteDistance is the largest of the pools' MaxSiteDistance.
	MaxSiteDistance float64 `json:"max_site_distance"`
}

// Analyze measures the update of every site in sites that adapter a (Lily
// or LoRA, attached to store s and not merged) adapts. For routed Lily
// sites, mix must have observed the mixing weights of evaluation runs on
// held-out data (layers.MixingCalibrator.Observe after each run); with
// mix.Keep > 0 the report also describes their spread. Frozen and uniform
// Lily sites need no observations.
func Analyze(s *layers.Store, a layers.Adapter, sites []layers.Site, mix *layers.MixingCalibrator, opt Options) (*Report, error) {
	if math.IsNaN(opt.RankTol) || opt.RankTol < 0 || opt.RankTol >= 1 {
		return nil, errors.Errorf("updatestats: RankTol = %v; use a relative tolerance in [0, 1) (0: the default)", opt.RankTol)
	}
	an := analysis{store: s, opt: opt, report: &Report{Method: a.Method(), RankRule: rankRule(s.Dtype(), opt)}}
	var err error
	switch ad := a.(type) {
	case *layers.LoRA:
		err = an.lora(ad, sites)
	case *layers.Lily:
		err = an.lily(ad, sites, mix)
	default:
		return nil, errors.Errorf("updatestats: the %s adapter adds no low-rank update to analyse; use Lily or LoRA", a.Method())
	}
	if err != nil {
		return nil, errors.Wrapf(err, "analysing the %s updates", a.Method())
	}
	if len(an.report.Sites) == 0 {
		return nil, errors.Errorf("analysing the %s updates: the adapter adapts none of the %d sites given", a.Method(), len(sites))
	}
	an.summarize()
	return an.report, nil
}

// rankRule states the numerical-rank tolerance of opt.
func rankRule(dt tensor.Dtype, opt Options) string {
	if opt.RankTol > 0 {
		return fmt.Sprintf("σ_i > %g·σ_1", opt.RankTol)
	}
	return fmt.Sprintf("σ_i > max(rows, columns)·ε·σ_1 with ε = %g, the machine epsilon of the %v parameters (numpy's matrix_rank rule)", eps(dt), dt)
}

// eps is the machine epsilon of dt.
func eps(dt tensor.Dtype) float64 {
	if dt == tensor.Float32 {
		return 0x1p-23
	}
	return 0x1p-52
}

// analysis is one Analyze call in progress.
type analysis struct {
	store  *layers.Store
	opt    Options
	report *Report
}

// relTol is the relative rank tolerance of a rows × cols matrix.
func (an *analysis) relTol(rows, cols int) float64 {
	if an.opt.RankTol > 0 {
		return an.opt.RankTol
	}
	return float64(max(rows, cols)) * eps(an.store.Dtype())
}

// lora measures s·A·B at every LoRA site.
func (an *analysis) lora(l *layers.LoRA, sites []layers.Site) error {
	if l.Merged() {
		return errors.New("the adapter is merged into the weights; unmerge it first (layers.Unmerge)")
	}
	c := l.Config()
	for _, site := range sites {
		if !l.Adapted(site.Path) {
			continue
		}
		a, err := an.values(site.Path+".lora_A.weight", site.DIn*c.R)
		if err != nil {
			return err
		}
		b, err := an.values(site.Path+".lora_B.weight", c.R*site.DOut)
		if err != nil {
			return err
		}
		f := &factored{scale: c.Scaling(), ra: factorA(a, site.DIn, c.R), re: factorExperts(b, 1, c.R, site.DOut), bound: min(c.R, site.DIn, site.DOut)}
		su, err := an.site(site, f, []float64{1})
		if err != nil {
			return err
		}
		an.report.Sites = append(an.report.Sites, su)
	}
	return nil
}

// site measures ΔW(w) of one site and the norm of its frozen weight.
func (an *analysis) site(site layers.Site, f *factored, w []float64) (SiteUpdate, error) {
	su := SiteUpdate{Path: site.Path, Layer: site.Layer, Target: site.Target, DIn: site.DIn, DOut: site.DOut}
	sv, err := f.singularValues(w)
	if err != nil {
		return su, errors.Wrap(err, site.Path)
	}
	sp := measure(sv, an.relTol(site.DIn, site.DOut))
	su.SingularValues, su.Rank, su.RankThreshold, su.EffectiveRank, su.Norm = sp.values, sp.rank, sp.threshold, sp.effective, sp.norm
	p, ok := an.store.Get(site.Weight)
	if !ok {
		return su, errors.Errorf("%s: the frozen weight %q is not in the store", site.Path, site.Weight)
	}
	su.WeightNorm = frobenius(p.Value)
	if su.WeightNorm > 0 {
		su.RelativeNorm = su.Norm / su.WeightNorm
	}
	return su, nil
}

// values returns the store parameter name's elements, which must number
// want.
func (an *analysis) values(name string, want int) ([]float64, error) {
	p, ok := an.store.Get(name)
	if !ok {
		return nil, errors.Errorf("parameter %q is not in the store; attach or load the adapter first", name)
	}
	if n := p.Value.Shape().TotalSize(); n != want {
		return nil, errors.Errorf("parameter %q has shape %v (%d elements), the adapter's configuration needs %d", name, p.Value.Shape(), n, want)
	}
	return layers.Float64s(p.Value), nil
}

// frobenius returns the Frobenius norm of a float32 or float64 tensor
// without copying it.
func frobenius(t *tensor.Dense) float64 {
	var sq float64
	switch d := t.Data().(type) {
	case []float64:
		for _, v := range d {
			sq += v * v
		}
	case []float32:
		for _, v := range d {
			sq += float64(v) * float64(v)
		}
	}
	return math.Sqrt(sq)
}

// summarize fills the report's summary.
func (an *analysis) summarize() {
	r := an.report
	sm := Summary{Sites: len(r.Sites)}
	var entropies []float64
	for _, su := range r.Sites {
		sm.MeanRank += float64(su.Rank)
		sm.MeanEffectiveRank += su.EffectiveRank
		sm.MeanRelativeNorm += su.RelativeNorm
		if su.Mixing != nil {
			entropies = append(entropies, su.Mixing.Entropy)
		}
	}
	n := float64(len(r.Sites))
	sm.MeanRank, sm.MeanEffectiveRank, sm.MeanRelativeNorm = sm.MeanRank/n, sm.MeanEffectiveRank/n, sm.MeanRelativeNorm/n
	if len(r.Pools) > 0 {
		numB := len(r.Pools[0].ExpertNorms)
		ls := &LilySummary{NumB: numB, MeanEntropy: stat.Mean(entropies, nil), UniformEntropy: math.Log(float64(numB))}
		for _, p := range r.Pools {
			ls.MaxAbsCosine = math.Max(ls.MaxAbsCosine, p.MaxAbsCosine)
			ls.MaxSiteDistance = math.Max(ls.MaxSiteDistance, p.MaxSiteDistance)
			ls.MixingRanks = append(ls.MixingRanks, p.MixingRank)
		}
		sm.Lily = ls
	}
	r.Summary = sm
}

// Describe summarises the report in one line for a command's output.
func (r *Report) Describe() string {
	s := r.Summary
	line := fmt.Sprintf("%s update over %d sites: numerical rank %.2f, effective rank %.2f, ‖ΔW‖/‖W‖ %.3g (means)",
		r.Method, s.Sites, s.MeanRank, s.MeanEffectiveRank, s.MeanRelativeNorm)
	if l := s.Lily; l != nil {
		line += fmt.Sprintf("; mixing entropy %.3f of %.3f (uniform), max |cos| between experts %.3f, layers × experts mixing ranks %v, largest distance between two sites' mixing %.3f",
			l.MeanEntropy, l.UniformEntropy, l.MaxAbsCosine, l.MixingRanks, l.MaxSiteDistance)
	}
	return line
}

// rangeOf returns the smallest, mean and largest of xs (zeros when empty).
func rangeOf(xs []float64) Range {
	if len(xs) == 0 {
		return Range{}
	}
	r := Range{Min: xs[0], Max: xs[0], Mean: stat.Mean(xs, nil)}
	for _, x := range xs {
		r.Min, r.Max = math.Min(r.Min, x), math.Max(r.Max, x)
	}
	return r
}

// svdValues returns the singular values of m in decreasing order.
func svdValues(m mat.Matrix) ([]float64, error) {
	var svd mat.SVD
	if !svd.Factorize(m, mat.SVDNone) {
		return nil, errors.New("an SVD did not converge")
	}
	return svd.Values(nil), nil
}
