package bench

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/lilygo/lily/gemm"
	"github.com/lilygo/lily/internal/opkit"
	"gonum.org/v1/gonum/blas"
)

// Gemm is one matrix product C[M,N] = op(A)·op(B) with op(A) M×K, op(B) K×N,
// as the ops call it: row-major, TA/TB transposing the stored operand, and
// leading dimensions (row strides) that may exceed the stored width (one
// attention head's columns of a [tokens, hidden] matrix).
type Gemm struct {
	Name          string
	TA, TB        bool
	M, N, K       int
	LDA, LDB, LDC int // 0: the stored width
	// Count is how many times the product runs (e.g. once per head).
	Count int
	// BF16 stores B in bfloat16 (a frozen weight): the product runs on
	// gemm.SgemmBF16.
	BF16 bool
}

// Flops is 2·M·N·K·Count.
func (g Gemm) Flops() float64 {
	return 2 * float64(g.M) * float64(g.N) * float64(g.K) * float64(g.Count)
}

func (g Gemm) lds() (lda, ldb, ldc int) {
	lda, ldb, ldc = g.LDA, g.LDB, g.LDC
	if lda == 0 {
		lda = g.K
		if g.TA {
			lda = g.M
		}
	}
	if ldb == 0 {
		ldb = g.N
		if g.TB {
			ldb = g.K
		}
	}
	if ldc == 0 {
		ldc = g.N
	}
	return
}

// String describes the product, e.g. "NT 1024×768×3072 ×1".
func (g Gemm) String() string {
	t := func(b bool) string {
		if b {
			return "T"
		}
		return "N"
	}
	return fmt.Sprintf("%s %s%s %d×%d×%d ×%d", g.Name, t(g.TA), t(g.TB), g.M, g.N, g.K, g.Count)
}

// TotalFlops sums Flops over a list.
func TotalFlops(list []Gemm) float64 {
	var f float64
	for _, g := range list {
		f += g.Flops()
	}
	return f
}

// GEMMRunner runs a list of products on float32 operands allocated once,
// through gorgonia.WhichBLAS() as the ops do.
type GEMMRunner struct {
	list    []Gemm
	a, b, c [][]float32
	bh      [][]gemm.BF16 // B in bfloat16, for the products that want it
	// Times holds each product's time in the last Step (all Count calls).
	Times []time.Duration
}

// NewGEMMRunner allocates random operands for every product of list.
func NewGEMMRunner(list []Gemm) *GEMMRunner {
	rng := rand.New(rand.NewPCG(3, 3))
	fill := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(2*rng.Float64() - 1)
		}
		return s
	}
	r := &GEMMRunner{list: list, Times: make([]time.Duration, len(list))}
	for _, g := range list {
		lda, ldb, ldc := g.lds()
		ra, rb := g.M, g.K
		if g.TA {
			ra = g.K
		}
		if g.TB {
			rb = g.N
		}
		r.a = append(r.a, fill(ra*lda))
		if g.BF16 {
			b := fill(rb * ldb)
			h := make([]gemm.BF16, len(b))
			for i, x := range b {
				h[i] = gemm.ToBF16(x)
			}
			r.b, r.bh = append(r.b, nil), append(r.bh, h)
		} else {
			r.b, r.bh = append(r.b, fill(rb*ldb)), append(r.bh, nil)
		}
		r.c = append(r.c, fill(g.M*ldc))
	}
	return r
}

// Step runs every product Count times.
func (r *GEMMRunner) Step() error {
	for i, g := range r.list {
		lda, ldb, ldc := g.lds()
		t0 := time.Now()
		for j := 0; j < g.Count; j++ {
			if g.BF16 {
				gemm.SgemmBF16(trans(g.TA), trans(g.TB), g.M, g.N, g.K, 1, r.a[i], lda, r.bh[i], ldb, 0, r.c[i], ldc)
			} else {
				opkit.Gemm(g.TA, g.TB, g.M, g.N, g.K, 1, r.a[i], lda, r.b[i], ldb, 0, r.c[i], ldc)
			}
		}
		r.Times[i] = time.Since(t0)
	}
	return nil
}

// trans converts a transposition flag.
func trans(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

// LayerShape is what the GEMMs of one encoder layer depend on.
type LayerShape struct {
	Batch, Seq, Hidden, Heads, FFN int
	// Lily on query and value (R > 0), with NumB experts.
	R, NumB int
	// InputGrad adds the products that carry the gradient to the layer's
	// input (every layer but the first of a stack needs them).
	InputGrad bool
}

// LayerGEMMs lists the matrix products of one training step of a RoBERTa
// encoder layer with Lily on query and value (as graphs/roberta builds it,
// through layers.LinearGroup), in which only the adapter's
// parameters get gradients: the forward pass, the backward pass of every
// input gradient on the way to the adapters, and the adapters' own
// gradients. It follows what the graph's ops do, including the attention
// backward's recomputation of QKᵀ and the router backward's recomputation
// of h·R.
func LayerGEMMs(s LayerShape) []Gemm {
	m, d, f, t := s.Batch*s.Seq, s.Hidden, s.FFN, s.Seq
	dh := d / s.Heads
	bh := s.Batch * s.Heads
	lin := func(name string, in, out int) (fwd, dx Gemm) {
		return Gemm{Name: name, M: m, N: out, K: in, Count: 1},
			Gemm{Name: name + ".dx", TB: true, M: m, N: in, K: out, Count: 1}
	}
	var fwd, bwd []Gemm
	for _, name := range []string{"query", "key", "value"} {
		f, b := lin(name, d, d)
		fwd = append(fwd, f)
		if s.InputGrad {
			bwd = append(bwd, b)
		}
	}
	if s.R > 0 {
		// Lily on query and value: both sites' h = x·A as one GEMM
		// (lilyop.MatMulShared), and in the backward pass one GEMM for both
		// A's gradients and one for the input gradient.
		r, e := s.R, s.NumB
		fwd = append(fwd, Gemm{Name: "lily.xA (q,v)", M: m, N: 2 * r, K: d, Count: 1})
		for _, name := range []string{"query.lily", "value.lily"} {
			fwd = append(fwd,
				Gemm{Name: name + ".router", M: m, N: e, K: r, Count: 1},
				Gemm{Name: name + ".hBmix", M: m, N: d, K: r, Count: 1})
			bwd = append(bwd,
				Gemm{Name: name + ".router.recompute", M: m, N: e, K: r, Count: 1},
				Gemm{Name: name + ".router.dh", TB: true, M: m, N: r, K: e, Count: 1},
				Gemm{Name: name + ".router.dR", TA: true, M: r, N: e, K: m, Count: 1},
				Gemm{Name: name + ".dh", TB: true, M: m, N: r, K: d, Count: 1},
				Gemm{Name: name + ".dBmix", TA: true, M: r, N: d, K: m, Count: 1})
		}
		bwd = append(bwd, Gemm{Name: "lily.dA (q,v)", TA: true, M: d, N: 2 * r, K: m, Count: 1})
		if s.InputGrad {
			bwd = append(bwd, Gemm{Name: "lily.dx (q,v)", TB: true, M: m, N: d, K: 2 * r, Count: 1})
		}
	}
	fwd = append(fwd,
		Gemm{Name: "attn.QKt", TB: true, M: t, N: t, K: dh, LDA: d, LDB: d, Count: bh},
		Gemm{Name: "attn.PV", M: t, N: dh, K: t, LDB: d, LDC: d, Count: bh})
	bwd = append(bwd,
		Gemm{Name: "attn.recompute.QKt", TB: true, M: t, N: t, K: dh, LDA: d, LDB: d, Count: bh},
		Gemm{Name: "attn.dV", TA: true, M: t, N: dh, K: t, LDB: d, LDC: d, Count: bh},
		Gemm{Name: "attn.dP", TB: true, M: t, N: t, K: dh, LDA: d, LDB: d, Count: bh},
		Gemm{Name: "attn.dQ", M: t, N: dh, K: t, LDB: d, LDC: d, Count: bh},
		Gemm{Name: "attn.dK", TA: true, M: t, N: dh, K: t, LDB: d, LDC: d, Count: bh})
	for _, l := range []struct {
		name    string
		in, out int
	}{{"attention.output", d, d}, {"intermediate", d, f}, {"output", f, d}} {
		f, b := lin(l.name, l.in, l.out)
		fwd = append(fwd, f)
		bwd = append(bwd, b)
	}
	return append(fwd, bwd...)
}

// SGEMMShapes are the products the GEMM comparison times: a square one,
// roberta-base's linears and FFN on 8×128 tokens, the rank-32 adapter
// products forward and backward, and the small products of a tiny model
// (stories260K: 64 wide, attention heads of 8).
func SGEMMShapes() []Gemm {
	return []Gemm{
		{Name: "square", M: 2048, N: 2048, K: 2048, Count: 1},
		{Name: "linear", M: 1024, N: 768, K: 768, Count: 1},
		{Name: "ffn-up", M: 1024, N: 3072, K: 768, Count: 1},
		{Name: "ffn-down", M: 1024, N: 768, K: 3072, Count: 1},
		{Name: "linear-dx", M: 1024, N: 768, K: 768, TB: true, Count: 1},
		{Name: "linear-dW", M: 768, N: 768, K: 1024, TA: true, Count: 1},
		{Name: "x·A", M: 1024, N: 32, K: 768, Count: 1},
		{Name: "h·B", M: 1024, N: 768, K: 32, Count: 1},
		{Name: "dB=hᵀ·g", M: 32, N: 768, K: 1024, TA: true, Count: 1},
		{Name: "dA=xᵀ·dh", M: 768, N: 32, K: 1024, TA: true, Count: 1},
		{Name: "dh=g·Bᵀ", M: 1024, N: 32, K: 768, TB: true, Count: 1},
		{Name: "tiny-linear", M: 256, N: 64, K: 64, Count: 1},
		{Name: "tiny-scores", M: 32, N: 32, K: 8, TB: true, Count: 1},
	}
}
