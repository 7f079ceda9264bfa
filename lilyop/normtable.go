package lilyop

import "math"

// cubicTable interpolates a smooth function on [lo, lo + n/scale) by
// cubic Hermite polynomials between knots 1/scale apart, built from the
// function's values and derivatives at the knots: on the interval starting
// at knot i, f(knot + t/scale) ≈ c0 + t·(c1 + t·(c2 + t·c3)) for t in [0, 1).
type cubicTable struct {
	lo, scale float64
	c         [][4]float64
}

// newCubicTable tabulates f (with derivative df) on n intervals.
func newCubicTable(lo, scale float64, n int, f, df func(float64) float64) *cubicTable {
	t := &cubicTable{lo: lo, scale: scale, c: make([][4]float64, n)}
	h := 1 / scale
	for i := range t.c {
		x0, x1 := lo+float64(i)*h, lo+float64(i+1)*h
		y0, y1 := f(x0), f(x1)
		d0, d1 := h*df(x0), h*df(x1)
		t.c[i] = [4]float64{y0, d0, 3*(y1-y0) - 2*d0 - d1, 2*(y0-y1) + d0 + d1}
	}
	return t
}

// at returns the interpolated value and true, or false outside the table.
func (t *cubicTable) at(x float64) (float64, bool) {
	u := (x - t.lo) * t.scale
	if !(u >= 0 && u < float64(len(t.c))) { // also false for NaN
		return 0, false
	}
	i := int(u)
	s := u - float64(i)
	c := &t.c[i]
	return c[0] + s*(c[1]+s*(c[2]+s*c[3])), true
}

// The standard normal CDF Φ and density φ on [−8, 8) at 1/128 spacing:
// the interpolation error is below 1e-11 absolute (and a few 1e-8 relative
// at the ends), far below float32's resolution, at a fraction of the cost of
// math.Erf and math.Exp. Float32 GELU uses them; float64 GELU, which the
// gradient checks verify, computes the exact functions.
var (
	normCDFTable = newCubicTable(-8, 128, 16*128, normCDF, normPDF)
	normPDFTable = newCubicTable(-8, 128, 16*128, normPDF, func(x float64) float64 { return -x * normPDF(x) })
)

// normCDF is Φ(x), accurate in the left tail too.
func normCDF(x float64) float64 { return 0.5 * math.Erfc(-x*(1/math.Sqrt2)) }

// normPDF is φ(x).
func normPDF(x float64) float64 { return math.Exp(-0.5*x*x) * (1 / math.Sqrt(2*math.Pi)) }

// gelu32 returns x·Φ(x) for float32 GELU.
func gelu32(x float64) float64 {
	if c, ok := normCDFTable.at(x); ok {
		return x * c
	}
	return x * normCDF(x)
}

// gelu32Grad returns Φ(x) + x·φ(x), GELU's derivative, for float32 GELU.
func gelu32Grad(x float64) float64 {
	c, ok := normCDFTable.at(x)
	if !ok {
		return normCDF(x) + x*normPDF(x)
	}
	p, _ := normPDFTable.at(x)
	return c + x*p
}

// gelu32Rows writes GELU(x) into dst (float32), evaluating the table inline.
func gelu32Rows(dst, x []float32) {
	cdf := normCDFTable.c
	n := float64(len(cdf))
	lo, scale := normCDFTable.lo, normCDFTable.scale
	for i, v := range x[:len(dst)] {
		f := float64(v)
		u := (f - lo) * scale
		if u >= 0 && u < n {
			k := int(u)
			s := u - float64(k)
			c := &cdf[k]
			dst[i] = float32(f * (c[0] + s*(c[1]+s*(c[2]+s*c[3]))))
			continue
		}
		dst[i] = float32(f * normCDF(f))
	}
}

// gelu32GradRows writes g·GELU'(x) into dst (float32), evaluating the
// tables inline.
func gelu32GradRows(dst, x, g []float32) {
	cdf, pdf := normCDFTable.c, normPDFTable.c
	n := float64(len(cdf))
	lo, scale := normCDFTable.lo, normCDFTable.scale
	x, g = x[:len(dst)], g[:len(dst)]
	for i, v := range x {
		f := float64(v)
		u := (f - lo) * scale
		var d float64
		if u >= 0 && u < n {
			k := int(u)
			s := u - float64(k)
			c, p := &cdf[k], &pdf[k]
			d = c[0] + s*(c[1]+s*(c[2]+s*c[3])) + f*(p[0]+s*(p[1]+s*(p[2]+s*p[3])))
		} else {
			d = normCDF(f) + f*normPDF(f)
		}
		dst[i] = float32(d * float64(g[i]))
	}
}
