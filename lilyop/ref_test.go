package lilyop

import (
	"math"
	"math/rand"

	"gorgonia.org/tensor"
)

// This file holds a plain-Go reference of Lily's router and expert mixture,
// written loop by loop from LILY.md's formulas without BLAS or Gorgonia, so
// the ops can be checked against an independent computation.

// refRouter returns the mixing weights of h [m][r] (m rows, lead0 sequences)
// for router R [r][e].
func refRouter(h [][]float64, R [][]float64, mask []float64, mode Routing, lead0 int) [][]float64 {
	m, e := len(h), len(R[0])
	p := make([][]float64, m)
	for i := range h {
		logits := make([]float64, e)
		mx := math.Inf(-1)
		for j := 0; j < e; j++ {
			for k := range h[i] {
				logits[j] += h[i][k] * R[k][j]
			}
			mx = math.Max(mx, logits[j])
		}
		var z float64
		for j := range logits {
			logits[j] = math.Exp(logits[j] - mx)
			z += logits[j]
		}
		for j := range logits {
			logits[j] /= z
		}
		p[i] = logits
	}
	if mode == Token {
		return p
	}
	nGroups := 1
	if mode == Sequence {
		nGroups = lead0
	}
	per := m / nGroups
	out := make([][]float64, nGroups)
	for g := range out {
		out[g] = make([]float64, e)
		var tot float64
		for i := g * per; i < (g+1)*per; i++ {
			if mask == nil {
				tot++
			} else {
				tot += mask[i]
			}
		}
		if tot == 0 {
			continue
		}
		for i := g * per; i < (g+1)*per; i++ {
			wt := 1.0
			if mask != nil {
				wt = mask[i]
			}
			for j := 0; j < e; j++ {
				out[g][j] += wt * p[i][j] / tot
			}
		}
	}
	return out
}

// refMix returns scale·h·Σ_e w[e]·B[e] row by row; w has one row per group.
func refMix(h [][]float64, w [][]float64, B [][][]float64, mode Routing, scale float64) [][]float64 {
	m := len(h)
	per := m / len(w)
	d := len(B[0][0])
	y := make([][]float64, m)
	for i := range h {
		wi := w[i/per]
		y[i] = make([]float64, d)
		for e := range B {
			for k := range h[i] {
				for j := 0; j < d; j++ {
					y[i][j] += scale * wi[e] * h[i][k] * B[e][k][j]
				}
			}
		}
	}
	return y
}

// matrix views t as rows of its last dimension.
func matrix(t *tensor.Dense) [][]float64 {
	s := t.Shape()
	data := t.Data().([]float64)
	n := s[len(s)-1]
	out := make([][]float64, len(data)/n)
	for i := range out {
		out[i] = data[i*n : (i+1)*n]
	}
	return out
}

// experts views B [E, r, d] as nested slices.
func experts(t *tensor.Dense) [][][]float64 {
	s := t.Shape()
	data := t.Data().([]float64)
	out := make([][][]float64, s[0])
	for e := range out {
		out[e] = make([][]float64, s[1])
		for k := range out[e] {
			off := (e*s[1] + k) * s[2]
			out[e][k] = data[off : off+s[2]]
		}
	}
	return out
}

// randMask returns a 0/1 mask of n entries in per-row groups, with the first
// entry of every group real so that no group is empty unless allowEmpty.
func randMask(rng *rand.Rand, n, per int) []float64 {
	m := make([]float64, n)
	for i := range m {
		if i%per == 0 || rng.Float64() < 0.6 {
			m[i] = 1
		}
	}
	return m
}

func flat(rowsOf [][]float64) []float64 {
	var out []float64
	for _, r := range rowsOf {
		out = append(out, r...)
	}
	return out
}
