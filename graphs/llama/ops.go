package llama

import (
	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// The package's custom ops (RoPE and causal attention) are built on
// internal/opkit; these two helpers type their mixed int/float signatures.

// intTensor is the type of a rank-r tensor of Go ints (positions).
func intTensor(r int) hm.Type { return G.TensorType{Dims: r, Of: tensor.Int} }

// floatTensor is the type of a rank-r tensor of the op's float type a.
func floatTensor(r int) hm.Type { return G.TensorType{Dims: r, Of: hm.TypeVariable('a')} }
