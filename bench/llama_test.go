package bench

import (
	"strings"
	"testing"

	"github.com/lilygo/lily/graphs/llama"
)

// The step's products against an independent count: every frozen linear
// runs forward and backward (2·m·in·out each way), the LM head too, and
// the attention's six products per head cost 2·t·t·hd each.
func TestLlamaGEMMsFlops(t *testing.T) {
	c := llama.Config{Dim: 64, HiddenDim: 160, NLayers: 3, NHeads: 4, NKVHeads: 2, VocabSize: 100}
	s := LlamaStep{Config: c, Batch: 2, Seq: 8, R: 4, NumB: 2, BF16: true}
	var linears, attn, lily, head float64
	for _, g := range LlamaGEMMs(s) {
		switch {
		case strings.HasPrefix(g.Name, "attn."):
			attn += g.Flops()
		case strings.HasPrefix(g.Name, "lily."):
			lily += g.Flops()
			if g.BF16 {
				t.Errorf("%s: an adapter product reads a trainable float32 tensor", g)
			}
		case strings.HasPrefix(g.Name, "lm_head"):
			head += g.Flops()
		default:
			linears += g.Flops()
			if !g.BF16 {
				t.Errorf("%s: a frozen weight's product is not bf16", g)
			}
		}
	}
	m, kv := 16.0, 32.0
	perLayer := 64*64 + 64*kv + 64*kv + 64*64 + 3*64*160
	if want := 2 * 2 * m * perLayer * 3; linears != want {
		t.Errorf("linears: %v flops, want %v", linears, want)
	}
	if want := 2 * 2 * m * 64 * 100; head != want {
		t.Errorf("LM head: %v flops, want %v", head, want)
	}
	if want := 6 * 2 * 8 * 8 * 16 * float64(2*4*3); attn != want {
		t.Errorf("attention: %v flops, want %v", attn, want)
	}
	// Lily per site: xA, router, hBmix, dBmix, dh, dA, dx.
	site := func(o float64) float64 { return 2 * m * (64*4 + 4*2 + o*4 + 4*o + o*4 + 64*4 + 64*4) }
	if want := (site(64) + 2*site(kv)) * 3; lily != want {
		t.Errorf("Lily: %v flops, want %v", lily, want)
	}
}
