package layers

import (
	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
)

// RMSNorm normalises x [..., d] over its last axis as LLaMA and Mamba do,
// x·rsqrt(mean(x²) + eps)·w, with the store's [d] parameter named weight (which may be kept in
// bfloat16).
func RMSNorm(g *Graph, x *G.Node, weight string, eps float64) (*G.Node, error) {
	w, err := g.Float(weight)
	if err != nil {
		return nil, errors.Wrap(err, "layers.RMSNorm")
	}
	y, err := lilyop.RMSNorm(x, w, eps)
	return y, errors.Wrapf(err, "layers.RMSNorm(%s)", weight)
}

// LayerNorm normalises x [..., d] over its last axis as torch.nn.LayerNorm
// does (biased variance), with the store's [d] parameters named gamma
// (scale) and beta (shift).
func LayerNorm(g *Graph, x *G.Node, gamma, beta string, eps float64) (*G.Node, error) {
	gm, err := g.Float(gamma)
	if err != nil {
		return nil, errors.Wrap(err, "layers.LayerNorm")
	}
	bt, err := g.Float(beta)
	if err != nil {
		return nil, errors.Wrap(err, "layers.LayerNorm")
	}
	y, err := lilyop.LayerNorm(x, gm, bt, eps)
	return y, errors.Wrapf(err, "layers.LayerNorm(%s, %s)", gamma, beta)
}
