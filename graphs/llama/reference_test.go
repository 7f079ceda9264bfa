package llama

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/lilygo/lily/layers"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// This file holds a plain-Go LLaMA forward pass, written from the
// architecture's definition without Gorgonia or the package's ops, and the
// helpers the model tests share.

// refWeights reads every store parameter as float64s.
func refWeights(s *layers.Store) map[string][]float64 {
	w := map[string][]float64{}
	for _, p := range s.Params() {
		w[p.Name] = layers.Float64s(p.Value)
	}
	return w
}

// vecMat returns x·W for W stored row-major [len(x), n].
func vecMat(x, w []float64, n int) []float64 {
	out := make([]float64, n)
	for i, xi := range x {
		for j := 0; j < n; j++ {
			out[j] += xi * w[i*n+j]
		}
	}
	return out
}

func refRMSNorm(x, w []float64, eps float64) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	r := 1 / math.Sqrt(ss/float64(len(x))+eps)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = v * r * w[i]
	}
	return out
}

// refForward returns the logits [len(tokens)][vocab] of one sequence.
func refForward(c Config, w map[string][]float64, tokens []int) [][]float64 {
	d, hd, kvd, T := c.Dim, c.HeadDim(), c.KVDim(), len(tokens)
	x := make([][]float64, T)
	for t, id := range tokens {
		x[t] = append([]float64(nil), w[EmbedName][id*d:(id+1)*d]...)
	}
	pos := seqPositions(T, 0)
	for l := 0; l < c.NLayers; l++ {
		p := layerPath(l)
		q, k, v := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := range x {
			h := refRMSNorm(x[t], w[inputNormName(l)], c.NormEps)
			q[t] = refRope(vecMat(h, w[p+".self_attn.q_proj.weight"], d), 1, c.NHeads, hd, pos[t:t+1], c.RopeTheta, c.Rope)
			k[t] = refRope(vecMat(h, w[p+".self_attn.k_proj.weight"], kvd), 1, c.NKVHeads, hd, pos[t:t+1], c.RopeTheta, c.Rope)
			v[t] = vecMat(h, w[p+".self_attn.v_proj.weight"], kvd)
		}
		flat := func(rows [][]float64) []float64 {
			var out []float64
			for _, r := range rows {
				out = append(out, r...)
			}
			return out
		}
		att := refAttention(flat(q), flat(k), flat(v), 1, T, c.NHeads, c.NKVHeads, hd)
		for t := range x {
			o := vecMat(att[t*d:(t+1)*d], w[p+".self_attn.o_proj.weight"], d)
			for i := range x[t] {
				x[t][i] += o[i]
			}
			h := refRMSNorm(x[t], w[postNormName(l)], c.NormEps)
			gate := vecMat(h, w[p+".mlp.gate_proj.weight"], c.HiddenDim)
			up := vecMat(h, w[p+".mlp.up_proj.weight"], c.HiddenDim)
			for i, g := range gate {
				gate[i] = g / (1 + math.Exp(-g)) * up[i]
			}
			down := vecMat(gate, w[p+".mlp.down_proj.weight"], d)
			for i := range x[t] {
				x[t][i] += down[i]
			}
		}
	}
	logits := make([][]float64, T)
	for t := range x {
		h := refRMSNorm(x[t], w[FinalNormName], c.NormEps)
		if c.TiedEmbeddings {
			logits[t] = make([]float64, c.VocabSize)
			for v := range logits[t] {
				for i, hi := range h {
					logits[t][v] += hi * w[EmbedName][v*d+i]
				}
			}
		} else {
			logits[t] = vecMat(h, w[HeadName], c.VocabSize)
		}
	}
	return logits
}

// tinyConfig is a small model with grouped-query attention.
func tinyConfig(tied bool, layout RopeLayout) Config {
	return Config{Dim: 8, HiddenDim: 12, NLayers: 2, NHeads: 2, NKVHeads: 1, VocabSize: 11, MaxSeqLen: 16,
		NormEps: 1e-5, RopeTheta: 100, TiedEmbeddings: tied, Rope: layout}
}

// randomStore makes a store whose weights are large enough (uniform in
// ±0.6, norms in 1 ± 0.5) for every part of the model to matter.
func randomStore(t testing.TB, c Config, dt tensor.Dtype, seed uint64) *layers.Store {
	t.Helper()
	s, err := NewStore(c, dt, seed)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 99))
	for _, p := range s.Params() {
		v := make([]float64, p.Value.Shape().TotalSize())
		for i := range v {
			v[i] = 1.2*rng.Float64() - 0.6
			if strings.HasSuffix(p.Name, "norm.weight") {
				v[i] += 1
			}
		}
		setFloats(p.Value, v)
	}
	return s
}

// randomTokens returns n token sequences of the given lengths.
func randomTokens(rng *rand.Rand, vocab int, lengths ...int) [][]int {
	out := make([][]int, len(lengths))
	for i, n := range lengths {
		for j := 0; j < n; j++ {
			out[i] = append(out[i], rng.IntN(vocab))
		}
	}
	return out
}

// built is a compiled model graph.
type built struct {
	g     *layers.Graph
	m     *Model
	loss  *G.Node
	vm    G.VM
	learn G.Nodes
}

// buildModel builds a model graph with a loss; with grad set it also adds
// the gradients of every learnable.
func buildModel(t testing.TB, c Config, s *layers.Store, a layers.Adapter, batch, seq int, grad bool) *built {
	t.Helper()
	g := s.NewGraph(false)
	m, err := Build(g, c, a, batch, seq)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	loss, err := m.Loss()
	if err != nil {
		t.Fatalf("%+v", err)
	}
	b := &built{g: g, m: m, loss: loss}
	if grad {
		b.learn = g.Learnables()
		b.vm, err = g.Machine(loss, m.Logits)
	} else {
		b.vm, err = g.Machine(nil, loss, m.Logits)
	}
	if err != nil {
		t.Fatalf("%+v", err)
	}
	return b
}

// run executes the graph and returns the loss.
func (b *built) run(t testing.TB) float64 {
	t.Helper()
	b.vm.Reset()
	if err := b.vm.RunAll(); err != nil {
		t.Fatalf("%+v", err)
	}
	return toFloat64s(b.loss.Value())[0]
}

// logits returns the logits of sequence i at position p.
func (b *built) logits(i, p int) []float64 {
	all := toFloat64s(b.m.Logits.Value())
	v := b.m.Config.VocabSize
	off := (i*b.m.SeqLen + p) * v
	return all[off : off+v]
}
