package glue

import (
	"fmt"
	"math"
)

// Split divides examples deterministically into two parts: first holds
// round(frac·len(examples)) examples chosen by a seeded shuffle, second the
// rest. Each part keeps the examples' original relative order, and the
// parts are new slices (examples is not modified). The shuffle uses its own
// fully specified generator (SplitMix64 with Fisher–Yates), so a given seed
// gives the same split on every platform and Go version. It fails if frac
// is not in [0, 1].
func Split(examples []Example, frac float64, seed uint64) (first, second []Example, err error) {
	if !(frac >= 0 && frac <= 1) {
		return nil, nil, fmt.Errorf("glue: split fraction %v is not in [0, 1]", frac)
	}
	n := len(examples)
	k := int(math.Round(frac * float64(n)))
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	rng := splitMix64{state: seed}
	for i := n - 1; i > 0; i-- {
		j := int(rng.below(uint64(i + 1)))
		perm[i], perm[j] = perm[j], perm[i]
	}
	inFirst := make([]bool, n)
	for _, i := range perm[:k] {
		inFirst[i] = true
	}
	first = make([]Example, 0, k)
	second = make([]Example, 0, n-k)
	for i, e := range examples {
		if inFirst[i] {
			first = append(first, e)
		} else {
			second = append(second, e)
		}
	}
	return first, second, nil
}

// splitMix64 is Steele, Lea and Flood's SplitMix64 generator.
type splitMix64 struct{ state uint64 }

func (s *splitMix64) next() uint64 {
	s.state += 0x9e3779b97f4a7c15
	z := s.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// below returns a uniform integer in [0, n), n > 0, by rejection sampling.
func (s *splitMix64) below(n uint64) uint64 {
	limit := math.MaxUint64 - math.MaxUint64%n // multiple of n
	for {
		if v := s.next(); v < limit {
			return v % n
		}
	}
}
