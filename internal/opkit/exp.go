package opkit

import "math"

// Exp32 returns e^x to float32 accuracy (relative error below 1e-8 before
// rounding to float32), for float32 kernels such as softmax: a degree-7
// polynomial on the reduced argument instead of math.Exp's full float64
// accuracy. It underflows to 0 below −87.4 (float32's smallest normal is
// e^−87.3) and overflows to +Inf above 88.8.
func Exp32(x float64) float64 {
	switch {
	case x > 88.8:
		return math.Inf(1)
	case !(x > -87.4):
		if x != x {
			return x
		}
		return 0
	}
	const (
		log2e = 1.4426950408889634
		ln2hi = 6.93147180369123816490e-01
		ln2lo = 1.90821492927058770002e-10
	)
	k := math.Floor(x*log2e + 0.5)
	r := x - k*ln2hi - k*ln2lo // |r| ≤ ln2/2
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040)))))))
	return p * math.Float64frombits(uint64(int64(k)+1023)<<52)
}

// ExpShift32 replaces every v of row by e^(v − m), computed as Exp32 does,
// and returns their sum (in float64): the exponentials of a softmax row,
// with the polynomial inlined into the loop.
func ExpShift32(row []float32, m float32) float64 {
	const (
		log2e = 1.4426950408889634
		ln2hi = 6.93147180369123816490e-01
		ln2lo = 1.90821492927058770002e-10
	)
	var sum float64
	for j, v := range row {
		x := float64(v - m)
		var e float64
		switch {
		case x > 88.8:
			e = math.Inf(1)
		case !(x > -87.4):
			if x != x {
				e = x
			}
		default:
			k := math.Floor(x*log2e + 0.5)
			r := x - k*ln2hi - k*ln2lo
			p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040)))))))
			e = p * math.Float64frombits(uint64(int64(k)+1023)<<52)
		}
		row[j] = float32(e)
		sum += e
	}
	return sum
}
