package bench

import (
	"github.com/lilygo/lily/graphs/llama"
)

// LlamaStep is what the matrix products of one LLaMA training step depend
// on: the model, the batch, and Lily (R > 0) on the query, key and value
// projections of every layer with NumB experts, as the paper's LLaMA3-8B
// setting has it.
type LlamaStep struct {
	Config     llama.Config
	Batch, Seq int
	R, NumB    int
	// BF16 says that the frozen weights (projections, embedding and LM
	// head) are stored in bfloat16: their products widen them while
	// packing (gemm.SgemmBF16).
	BF16 bool
}

// LlamaGEMMs lists the matrix products of one training step of the LLaMA
// graph (graphs/llama) with Lily on q, k and v and everything else frozen:
// every linear's forward product x·Wᵀ and the input gradient dY·W (the
// first layer's too: Lily's A of layer 0 needs it), the attention's
// products per head (forward, and the backward's dP, dQ, dK, dV), the
// adapter's products, and the LM head forward and backward. Each layer's
// products are listed once with Count = layers (× batch × heads for
// attention).
func LlamaGEMMs(s LlamaStep) []Gemm {
	c := s.Config
	m, d, f, t, l := s.Batch*s.Seq, c.Dim, c.HiddenDim, s.Seq, c.NLayers
	kv, hd := c.KVDim(), c.Dim/c.NHeads
	var out []Gemm
	lin := func(name string, in, o int) {
		out = append(out,
			Gemm{Name: name, TB: true, M: m, N: o, K: in, Count: l, BF16: s.BF16},
			Gemm{Name: name + ".dx", M: m, N: in, K: o, Count: l, BF16: s.BF16})
	}
	lin("q_proj", d, d)
	lin("k_proj", d, kv)
	lin("v_proj", d, kv)
	lin("o_proj", d, d)
	lin("gate_proj", d, f)
	lin("up_proj", d, f)
	lin("down_proj", f, d)
	heads := s.Batch * c.NHeads * l
	out = append(out,
		Gemm{Name: "attn.QKt", TB: true, M: t, N: t, K: hd, LDA: d, LDB: kv, Count: heads},
		Gemm{Name: "attn.PV", M: t, N: hd, K: t, LDB: kv, LDC: d, Count: heads},
		Gemm{Name: "attn.dP", TB: true, M: t, N: t, K: hd, LDA: d, LDB: kv, Count: heads},
		Gemm{Name: "attn.dQ", M: t, N: hd, K: t, LDB: kv, Count: heads},
		Gemm{Name: "attn.dK", TA: true, M: t, N: hd, K: t, LDB: d, Count: heads},
		Gemm{Name: "attn.dV", TA: true, M: t, N: hd, K: t, LDB: d, Count: heads})
	if s.R > 0 {
		r, e := s.R, s.NumB
		for _, site := range []struct {
			name string
			o    int
		}{{"q", d}, {"k", kv}, {"v", kv}} {
			out = append(out,
				Gemm{Name: "lily." + site.name + ".xA", M: m, N: r, K: d, Count: l},
				Gemm{Name: "lily." + site.name + ".router", M: m, N: e, K: r, Count: l},
				Gemm{Name: "lily." + site.name + ".hBmix", M: m, N: site.o, K: r, Count: l},
				Gemm{Name: "lily." + site.name + ".dBmix", TA: true, M: r, N: site.o, K: m, Count: l},
				Gemm{Name: "lily." + site.name + ".dh", TB: true, M: m, N: r, K: site.o, Count: l},
				Gemm{Name: "lily." + site.name + ".dA", TA: true, M: d, N: r, K: m, Count: l},
				Gemm{Name: "lily." + site.name + ".dx", TB: true, M: m, N: d, K: r, Count: l})
		}
	}
	v := c.VocabSize
	return append(out,
		Gemm{Name: "lm_head", TB: true, M: m, N: v, K: d, Count: 1, BF16: s.BF16},
		Gemm{Name: "lm_head.dx", M: m, N: d, K: v, Count: 1, BF16: s.BF16})
}
