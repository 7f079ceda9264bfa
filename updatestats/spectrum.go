package updatestats

import (
	"math"

	"github.com/pkg/errors"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat"
)

// factored holds a family of updates ΔW(w) = s·A·Σ_e w_e·B_e, with A
// [dIn, r] and experts B_e [r, dOut] (LoRA: one expert, w = [1]), as small
// triangular factors (see factorA and factorExperts): A = Q_A·ra and [B_1ᵀ … B_Eᵀ] = Q_P·[R_1 … R_E], with
// Q_A and Q_P of orthonormal columns. Then ΔW(w) = Q_A·core(w)·Q_Pᵀ with
// core(w) = s·ra·(Σ_e w_e·R_e)ᵀ, of at most r × E·r, which has ΔW(w)'s
// singular values. Nothing of size dIn × dOut is ever formed.
type factored struct {
	scale float64
	ra    *mat.Dense   // [min(dIn, r), r]
	re    []*mat.Dense // per expert: [min(dOut, E·r), r]
	bound int          // min(r, dIn, dOut): ΔW's rank can be no higher
}

// factorA returns the triangular factor ra of A ([dIn, r], row-major).
func factorA(a []float64, dIn, r int) *mat.Dense {
	return upperFactor(mat.NewDense(dIn, r, a))
}

// factorExperts returns the factors R_e of the experts b ([numB, r, dOut],
// row-major).
func factorExperts(b []float64, numB, r, dOut int) []*mat.Dense {
	// [B_1ᵀ … B_Eᵀ] is the transpose of the pool read as [E·r, dOut].
	rp := upperFactor(mat.NewDense(numB*r, dOut, b).T())
	rows, _ := rp.Dims()
	re := make([]*mat.Dense, numB)
	for e := range re {
		re[e] = mat.DenseCopyOf(rp.Slice(0, rows, e*r, (e+1)*r))
	}
	return re
}

// upperFactor returns R [min(d, k), k] with x [d, k] = Q·R for some Q with
// orthonormal columns: the triangle of x's QR factorisation when d ≥ k, and
// x itself (Q = I) when d < k.
func upperFactor(x mat.Matrix) *mat.Dense {
	d, k := x.Dims()
	if d < k {
		return mat.DenseCopyOf(x)
	}
	var qr mat.QR
	qr.Factorize(x)
	r := mat.NewDense(k, k, nil)
	qr.RTo(r)
	return r
}

// singularValues returns the bound largest singular values of ΔW(w) in
// decreasing order (the others are zero).
func (f *factored) singularValues(w []float64) ([]float64, error) {
	if len(w) != len(f.re) {
		return nil, errors.Errorf("%d mixing weights for %d experts", len(w), len(f.re))
	}
	rows, r := f.re[0].Dims()
	mix := mat.NewDense(rows, r, nil)
	for e, we := range w {
		var t mat.Dense
		t.Scale(we, f.re[e])
		mix.Add(mix, &t)
	}
	var core mat.Dense
	core.Mul(f.ra, mix.T())
	core.Scale(f.scale, &core)
	sv, err := svdValues(&core)
	if err != nil {
		return nil, errors.Wrap(err, "the update's core")
	}
	return sv[:f.bound], nil
}

// spectrum is what the singular values of one matrix say.
type spectrum struct {
	values    []float64 // decreasing
	rank      int       // values above threshold
	threshold float64   // relTol · the largest value
	effective float64   // Roy & Vetterli's effective rank
	norm      float64   // Frobenius norm: √Σσ²
}

// measure computes the numerical rank at relative tolerance relTol, the
// effective rank and the Frobenius norm from decreasing singular values.
func measure(values []float64, relTol float64) spectrum {
	sp := spectrum{values: values, effective: effectiveRank(values)}
	if len(values) > 0 {
		sp.threshold = relTol * values[0]
	}
	var sq float64
	for _, v := range values {
		if v > sp.threshold {
			sp.rank++
		}
		sq += v * v
	}
	sp.norm = math.Sqrt(sq)
	return sp
}

// effectiveRank is the effective rank of Roy and Vetterli (2007): exp of
// the Shannon entropy (nats) of the singular values divided by their sum.
// It is 0 for a zero matrix, k for k equal non-zero values, and between 1
// and the rank otherwise.
func effectiveRank(values []float64) float64 {
	if allZero(values) {
		return 0
	}
	return math.Exp(entropy(values))
}

// entropy is the Shannon entropy (nats) of |v| divided by its sum, 0 for a
// zero vector: for a probability vector, its entropy.
func entropy(v []float64) float64 {
	var sum float64
	for _, x := range v {
		sum += math.Abs(x)
	}
	if sum == 0 {
		return 0
	}
	p := make([]float64, len(v))
	for i, x := range v {
		p[i] = math.Abs(x) / sum
	}
	return stat.Entropy(p)
}

// allZero reports whether every element of v is zero.
func allZero(v []float64) bool {
	for _, x := range v {
		if x != 0 {
			return false
		}
	}
	return true
}
