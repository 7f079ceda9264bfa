package lilyop

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	"github.com/lilygo/lily/internal/opkit"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Embed gathers rows of table [V, d] by ids, an input node of dtype
// tensor.Int and any shape [...] whose value the caller sets before each
// run; the result has shape [..., d] (e.g. [batch, seq, d]). The ids are not
// differentiated; the table's gradient scatter-adds the output gradient into
// the rows that were read. An id outside [0, V) makes the run fail with an
// error. A frozen BFloat16 or Float16 table gives float32 rows (EmbedAs
// chooses) and no gradient.
func Embed(table, ids *G.Node) (*G.Node, error) {
	dt := tensor.Float32
	if table != nil && !IsHalf(table) {
		dt = table.Dtype()
	}
	return EmbedAs(table, ids, dt)
}

// EmbedAs is Embed with the result's dtype dt, which must be the table's
// unless the table is a frozen BFloat16 or Float16 one: its rows are then
// widened to dt (tensor.Float32 or tensor.Float64), exactly.
func EmbedAs(table, ids *G.Node, dt tensor.Dtype) (*G.Node, error) {
	if table == nil || ids == nil || table.Dims() != 2 || ids.Dims() < 1 {
		return nil, errors.New("lilyop.Embed: need a table [V, d] and ids of rank ≥ 1")
	}
	if ids.Dtype() != tensor.Int {
		return nil, errors.Errorf("lilyop.Embed: ids have dtype %v, want tensor.Int", ids.Dtype())
	}
	op := embedOp{idsRank: ids.Dims(), vocab: table.Shape()[0]}
	switch {
	case IsHalf(table) && (dt == tensor.Float32 || dt == tensor.Float64):
		op.from, op.to = table.Dtype(), dt
	case IsHalf(table):
		return nil, errors.Errorf("lilyop.Embed: a %v table gives float32 or float64 rows, not %v", table.Dtype(), dt)
	case table.Dtype() != dt:
		return nil, errors.Errorf("lilyop.Embed: a %v table gives %v rows, not %v", table.Dtype(), table.Dtype(), dt)
	}
	n, err := opkit.Apply(op, table, ids)
	return n, errors.Wrapf(err, "lilyop.Embed(%v, %v)", table.Shape(), ids.Shape())
}

// embedOp gathers table rows, (table, ids) → [..., d]; with scatter set it
// is the table gradient, (ids, dy [..., d]) → [vocab, d]. A non-zero to
// means a half-precision table of dtype from (BFloat16 or Float16) whose
// rows are widened to to (and no scatter).
type embedOp struct {
	opkit.Base
	idsRank  int
	vocab    int
	scatter  bool
	from, to tensor.Dtype
}

func (op embedOp) Arity() int { return 2 }

func (op embedOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	ids := G.TensorType{Dims: op.idsRank, Of: tensor.Int}
	if op.to != (tensor.Dtype{}) {
		return hm.NewFnType(G.TensorType{Dims: 2, Of: op.from}, ids, G.TensorType{Dims: op.idsRank + 1, Of: op.to})
	}
	if op.scatter {
		return hm.NewFnType(ids, G.TensorType{Dims: op.idsRank + 1, Of: a}, G.TensorType{Dims: 2, Of: a})
	}
	return hm.NewFnType(G.TensorType{Dims: 2, Of: a}, ids, G.TensorType{Dims: op.idsRank + 1, Of: a})
}

func (op embedOp) WriteHash(h hash.Hash) { opkit.WriteHash(h, op) }
func (op embedOp) Hashcode() uint32      { return opkit.Hashcode(op) }
func (op embedOp) String() string {
	if op.scatter {
		return fmt.Sprintf("lilyop.EmbedScatter{vocab=%d,ids=%d}", op.vocab, op.idsRank)
	}
	if op.to != (tensor.Dtype{}) {
		return fmt.Sprintf("lilyop.Embed{vocab=%d,ids=%d,%s→%v}", op.vocab, op.idsRank, halfTag(op.from), op.to)
	}
	return fmt.Sprintf("lilyop.Embed{vocab=%d,ids=%d}", op.vocab, op.idsRank)
}

func (op embedOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	s, err := opkit.Shapes(op, 2, in)
	if err != nil {
		return nil, err
	}
	if op.scatter {
		ids, dy := s[0], s[1]
		if len(ids) != op.idsRank || len(dy) != op.idsRank+1 || !dy[:op.idsRank].Eq(ids) {
			return nil, errors.Errorf("%v: gradient %v does not fit ids %v", op, dy, ids)
		}
		return tensor.Shape{op.vocab, dy[op.idsRank]}, nil
	}
	table, ids := s[0], s[1]
	if len(table) != 2 || table[0] != op.vocab || len(ids) != op.idsRank {
		return nil, errors.Errorf("%v: got table %v and ids %v", op, table, ids)
	}
	out := append(ids.Clone(), table[1])
	return out, nil
}

func (op embedOp) Do(vs ...G.Value) (G.Value, error) {
	if len(vs) != 2 {
		return nil, errors.Errorf("%v: expected 2 inputs, got %d", op, len(vs))
	}
	idsAt, floatAt := 1, 0
	if op.scatter {
		idsAt, floatAt = 0, 1
	}
	ids, idsShape, err := opkit.Ints(op, idsAt, vs[idsAt])
	if err != nil {
		return nil, err
	}
	for i, id := range ids {
		if id < 0 || id >= op.vocab {
			return nil, errors.Errorf("%v: id %d at position %d is outside [0, %d)", op, id, i, op.vocab)
		}
	}
	if op.to != (tensor.Dtype{}) {
		return doEmbedHalf(op, ids, idsShape, vs[0])
	}
	f64, err := opkit.IsFloat64(op, vs[floatAt:floatAt+1])
	if err != nil {
		return nil, err
	}
	if f64 {
		return doEmbed[float64](op, ids, idsShape, vs[floatAt])
	}
	return doEmbed[float32](op, ids, idsShape, vs[floatAt])
}

func doEmbed[T opkit.Float](op embedOp, ids []int, idsShape tensor.Shape, v G.Value) (G.Value, error) {
	in, shapes, err := opkit.Slices[T](op, []G.Value{v})
	if err != nil {
		return nil, err
	}
	var want tensor.Shape
	if op.scatter {
		want, err = op.InferShape(idsShape, shapes[0])
	} else {
		want, err = op.InferShape(shapes[0], idsShape)
	}
	if err != nil {
		return nil, err
	}
	out, o := opkit.Output[T](op.OutputSlot(), want, op.scatter) // the scatter accumulates
	d := want[len(want)-1]
	src := in[0]
	for i, id := range ids {
		if op.scatter {
			row, g := o[id*d:(id+1)*d], src[i*d:(i+1)*d]
			for j := range row {
				row[j] += g[j]
			}
		} else {
			copy(o[i*d:(i+1)*d], src[id*d:(id+1)*d])
		}
	}
	return out, opkit.CheckOut(op, out, want)
}

func (op embedOp) DiffWRT(int) []bool {
	if op.scatter || op.to != (tensor.Dtype{}) {
		return []bool{false, false}
	}
	return []bool{true, false}
}

// SymDiff scatter-adds the output gradient into the table's rows; the ids
// get no gradient.
func (op embedOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if op.scatter || op.to != (tensor.Dtype{}) || len(in) != 2 {
		return nil, errors.Errorf("%v: second-order gradients and gradients of a half-precision table are not supported", op)
	}
	sc := op
	sc.scatter = true
	dt, err := opkit.Apply(sc, in[1], grad)
	if err != nil {
		return nil, errors.Wrapf(err, "%v: table gradient", op)
	}
	return G.Nodes{dt, nil}, nil
}

// doEmbedHalf gathers rows of a BFloat16 or Float16 table, widening them
// to op.to.
func doEmbedHalf(op embedOp, ids []int, idsShape tensor.Shape, v G.Value) (G.Value, error) {
	h, ts, err := halfData(op, 0, v)
	if err != nil {
		return nil, err
	}
	want, err := op.InferShape(ts, idsShape)
	if err != nil {
		return nil, err
	}
	d := ts[1]
	if op.to == tensor.Float64 {
		out, o := opkit.Output[float64](op.OutputSlot(), want, false)
		for i, id := range ids {
			widenVals(o[i*d:(i+1)*d], h, id*d)
		}
		return out, opkit.CheckOut(op, out, want)
	}
	out, o := opkit.Output[float32](op.OutputSlot(), want, false)
	for i, id := range ids {
		widenVals(o[i*d:(i+1)*d], h, id*d)
	}
	return out, opkit.CheckOut(op, out, want)
}
