package lilyop

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/lilygo/lily/gemm"
	G "gorgonia.org/gorgonia"
)

// BenchmarkMixedGemm compares, on the products of a linear with a frozen
// weight W kept in bfloat16 (forward x·W, the input gradient dY·Wᵀ, a
// decoding step's 1-row x·W and tied LM head x·Eᵀ), the ways this build
// can multiply:
//
//   - gemm: package gemm's SgemmBF16, widening W while packing;
//   - convert: W widened into a float32 buffer, then gorgonia.WhichBLAS's
//     Sgemm (OpenBLAS in the openblas build);
//   - dot (x·Wᵀ with at most smallRows rows): gemvBF16T's dot products;
//   - f32: WhichBLAS's Sgemm on a float32 W, the float32 model's cost.
//
// Each of b.N rounds times one step of every way in turn (a step is as many
// calls as take about 20 ms), so the ways share the machine's load; it
// reports each way's median GFLOP/s and the median of the per-round time
// ratios way/gemm. Run it in both builds:
//
//	go test -run XXX -bench MixedGemm -benchtime 9x ./lilyop
//	go test -tags openblas -run XXX -bench MixedGemm -benchtime 9x ./lilyop
func BenchmarkMixedGemm(b *testing.B) {
	shapes := []struct {
		name    string
		m, n, k int
		tB      bool
	}{
		{"fwd", 1024, 768, 768, false}, {"bwd", 1024, 768, 768, true},
		{"ffn-fwd", 1024, 3072, 768, false}, {"ffn-bwd", 1024, 768, 3072, true},
		{"decode", 1, 4096, 4096, false}, {"decode-tied-head", 1, 32000, 512, true},
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for _, s := range shapes {
		x := make([]float32, s.m*s.k)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		w32 := make([]float32, s.k*s.n)
		wh := make([]gemm.BF16, s.k*s.n)
		for i := range wh {
			wh[i] = gemm.ToBF16(float32(rng.NormFloat64()))
			w32[i] = wh[i].Float32()
		}
		c := make([]float32, s.m*s.n)
		ldb := s.n
		if s.tB {
			ldb = s.k
		}
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		ways := []string{"gemm", "convert", "f32"}
		if s.tB && s.m <= smallRows {
			ways = append(ways, "dot")
		}
		call := func(way string) {
			switch way {
			case "gemm":
				sgemmBF16Gemm(false, s.tB, s.m, s.n, s.k, 1, x, s.k, wh, ldb, 0, c, s.n)
			case "dot":
				gemvBF16T(s.m, s.n, s.k, 1, x, s.k, wh, ldb, c, s.n)
			case "convert":
				sgemmBF16Convert(false, s.tB, s.m, s.n, s.k, 1, x, s.k, wh, ldb, 0, c, s.n)
			default:
				G.WhichBLAS().Sgemm(blasTrans(false), blasTrans(s.tB), s.m, s.n, s.k, 1, x, s.k, w32, ldb, 0, c, s.n)
			}
		}
		b.Run(fmt.Sprintf("%s_%dx%dx%d", s.name, s.m, s.n, s.k), func(b *testing.B) {
			// Calls per step: enough for ~20 ms of the gemm way.
			call("gemm")
			t0 := time.Now()
			call("gemm")
			reps := max(1, int(20*time.Millisecond/max(time.Since(t0), time.Microsecond)))
			per := map[string][]float64{} // seconds per call, per round
			for b.Loop() {
				for _, way := range ways {
					t := time.Now()
					for range reps {
						call(way)
					}
					per[way] = append(per[way], time.Since(t).Seconds()/float64(reps))
				}
			}
			for _, way := range ways {
				b.ReportMetric(flops/median(per[way])/1e9, way+"-GFLOP/s")
				if way != "gemm" {
					r := make([]float64, len(per[way]))
					for i := range r {
						r[i] = per[way][i] / per["gemm"][i]
					}
					b.ReportMetric(median(r), way+"/gemm")
				}
			}
		})
	}
}

// median returns the median of v (which it sorts).
func median(v []float64) float64 {
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// The conversion-buffer GEMM and the dot products equal package gemm's
// mixed GEMM.
func TestMixedGemmWaysAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	for _, sz := range [][4]int{{37, 45, 300, 0}, {37, 45, 300, 1}, {1, 45, 301, 1}, {4, 9, 3, 1}, {3, 600, 1000, 1}} {
		m, n, k, tB := sz[0], sz[1], sz[2], sz[3] == 1
		x := make([]float32, m*k)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		wh := make([]gemm.BF16, k*n)
		for i := range wh {
			wh[i] = gemm.ToBF16(float32(rng.NormFloat64()))
		}
		ldb := n
		if tB {
			ldb = k
		}
		c1, c2 := make([]float32, m*n), make([]float32, m*n)
		sgemmBF16Gemm(false, tB, m, n, k, 1, x, k, wh, ldb, 0, c1, n)
		sgemmBF16Convert(false, tB, m, n, k, 1, x, k, wh, ldb, 0, c2, n)
		if tB && m <= smallRows {
			c3 := make([]float32, m*n)
			gemvBF16T(m, n, k, 1, x, k, wh, ldb, c3, n)
			for i := range c1 {
				if d := c1[i] - c3[i]; d > 1e-3 || d < -1e-3 {
					t.Fatalf("dot %v: element %d: %g and %g", sz, i, c1[i], c3[i])
				}
			}
		}
		for i := range c1 {
			if d := c1[i] - c2[i]; d > 1e-3 || d < -1e-3 {
				t.Fatalf("tB %v: element %d: %g and %g", tB, i, c1[i], c2[i])
			}
		}
	}
}
