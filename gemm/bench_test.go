package gemm

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkSgemm reports GFLOP/s of the default kernel on the shapes of
// bench.SGEMMShapes (M×N×K, transposes):
//
//	go test -run XXX -bench Sgemm ./gemm
//
// For ratios against OpenBLAS measured in one process, use
// go run -tags openblas ./cmd/lilybench -run gemm.
func BenchmarkSgemm(b *testing.B) {
	shapes := []struct {
		m, n, k int
		ta, tb  bool
	}{
		{2048, 2048, 2048, false, false}, {1024, 768, 768, false, false}, {1024, 768, 768, false, true},
		{768, 768, 1024, true, false}, {1024, 32, 768, false, false}, {1024, 768, 32, false, false},
		{32, 768, 1024, true, false}, {768, 32, 1024, true, false}, {256, 64, 64, false, false}, {32, 32, 8, false, true},
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for _, s := range shapes {
		a := randSlice[float32](rng, s.m*s.k)
		bm := randSlice[float32](rng, s.k*s.n)
		c := make([]float32, s.m*s.n)
		lda, ldb := s.k, s.n
		if s.ta {
			lda = s.m
		}
		if s.tb {
			ldb = s.k
		}
		name := fmt.Sprintf("%s%s_%dx%dx%d", map[bool]string{false: "N", true: "T"}[s.ta], map[bool]string{false: "N", true: "T"}[s.tb], s.m, s.n, s.k)
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				Sgemm(trans(s.ta), trans(s.tb), s.m, s.n, s.k, 1, a, lda, bm, ldb, 0, c, s.n)
			}
			b.ReportMetric(2*float64(s.m)*float64(s.n)*float64(s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
