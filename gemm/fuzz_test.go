package gemm

import (
	"math/rand/v2"
	"testing"
)

// FuzzSgemm checks every kernel this CPU runs against the float64
// reference on fuzzed shapes, transposes, padding of the leading
// dimensions and alpha/beta.
func FuzzSgemm(f *testing.F) {
	f.Add(uint8(3), uint8(5), uint8(7), uint8(0), uint8(0), uint8(1), uint8(2), uint8(3), uint64(1))
	f.Add(uint8(15), uint8(33), uint8(1), uint8(1), uint8(1), uint8(0), uint8(0), uint8(0), uint64(2))
	f.Add(uint8(200), uint8(64), uint8(255), uint8(2), uint8(3), uint8(5), uint8(1), uint8(4), uint64(3))
	f.Fuzz(func(t *testing.T, m, n, k, trans, scalars, padA, padB, padC uint8, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 7))
		s := [][2]float32{{1, 0}, {1, 1}, {-0.5, 0.25}, {2, -1}, {0, 0.5}, {0, 0}}[int(scalars)%6]
		for _, kern := range kernels32() {
			gemmCase(t, kern, trans&1 != 0, trans&2 != 0, int(m), int(n), int(k), int(padA%5), int(padB%5), int(padC%5), s[0], s[1], rng)
		}
	})
}
