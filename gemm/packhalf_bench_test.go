//go:build amd64 && !purego

package gemm

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkPackBHalf times packing a transposed bfloat16 B block (kc×nc of
// a dY·Wᵀ product) into float32 micro-panels: the AVX2 transposes against
// the scalar loop.
//
//	go test -run XXX -bench PackBHalf ./gemm
func BenchmarkPackBHalf(b *testing.B) {
	const kb, nb, ldb = 256, 768, 768
	rng := rand.New(rand.NewPCG(1, 1))
	src := make([]BF16, nb*ldb)
	for i := range src {
		src[i] = ToBF16(float32(rng.NormFloat64()))
	}
	dst := make([]float32, kb*(nb+32))
	for _, fast := range []bool{true, false} {
		name := map[bool]string{true: "avx2", false: "scalar"}[fast]
		b.Run(name, func(b *testing.B) {
			if fast && !hasAVX2 {
				b.Skip("no AVX2")
			}
			saved := hasAVX2
			hasAVX2 = fast
			defer func() { hasAVX2 = saved }()
			for b.Loop() {
				packBHalf(dst, true, src, ldb, 0, 0, kb, nb, 32, float32(1))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(kb*nb), "ns/elem")
		})
	}
}
