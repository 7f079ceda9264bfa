package layers

import (
	"github.com/lilygo/lily/lilyop"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// IDs adds a named input node of dtype tensor.Int (token ids, positions,
// labels) with a zeroed value that the caller fills before each run, e.g.
// copy(n.Value().Data().([]int), ids). name must be unique in the graph.
func IDs(g *Graph, name string, shape ...int) *G.Node {
	v := tensor.New(tensor.WithShape(shape...), tensor.Of(tensor.Int))
	return G.NewTensor(g.G, tensor.Int, len(shape), G.WithShape(shape...), G.WithName(name), G.WithValue(v))
}

// Embedding looks up ids (an IDs node of any shape [...]) in the store's
// [V, d] parameter named table and returns [..., d] in the store's dtype.
// When the table is trainable its gradient is scatter-added into the rows
// that were read; a frozen table may be kept in bfloat16.
func Embedding(g *Graph, ids *G.Node, table string) (*G.Node, error) {
	t, err := g.Param(table)
	if err != nil {
		return nil, errors.Wrap(err, "layers.Embedding")
	}
	y, err := lilyop.EmbedAs(t, ids, g.store.dtype)
	return y, errors.Wrapf(err, "layers.Embedding(%s)", table)
}
