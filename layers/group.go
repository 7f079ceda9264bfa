package layers

import (
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
)

// GroupApplier is implemented by adapters that apply themselves to several
// sites reading the same input at once (query, key and value of an
// attention block): Lily and LoRA compute all their down-projections of
// that input as one GEMM. The results equal Apply's, site by site.
type GroupApplier interface {
	ApplyGroup(g *Graph, sites []Site, x *G.Node, ws, bs G.Nodes) (G.Nodes, error)
}

// LinearGroup applies the linear layers of sites, which all read x, as
// Linear does for each, letting an adapter that implements GroupApplier
// share the work on x between them. Element i of the result is site i's
// output.
func LinearGroup(g *Graph, a Adapter, sites []Site, x *G.Node) (G.Nodes, error) {
	if a == nil {
		a = None{}
	}
	ga, ok := a.(GroupApplier)
	if !ok || len(sites) < 2 {
		out := make(G.Nodes, len(sites))
		for i, s := range sites {
			var err error
			if out[i], err = Linear(g, a, s, x); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	ws, bs := make(G.Nodes, len(sites)), make(G.Nodes, len(sites))
	for i, s := range sites {
		var err error
		if ws[i], bs[i], err = linearParams(g, s, x); err != nil {
			return nil, err
		}
	}
	out, err := ga.ApplyGroup(g, sites, x, ws, bs)
	return out, errors.Wrapf(err, "linears %s… (%s)", sites[0].Path, a.Method())
}
