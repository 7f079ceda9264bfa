package layers

import (
	"github.com/lilygo/lily/lilyop"
	G "gorgonia.org/gorgonia"
)

// SiLU returns x·σ(x) elementwise (LLaMA's MLP, Mamba); see lilyop.SiLU.
func SiLU(x *G.Node) (*G.Node, error) { return lilyop.SiLU(x) }

// GELU returns the exact (erf) GELU elementwise (BERT, RoBERTa); see
// lilyop.GELU.
func GELU(x *G.Node) (*G.Node, error) { return lilyop.GELU(x) }
