package dataparallel

import (
	"fmt"
	"math"

	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Reducer makes the collective calls of data-parallel training over a Comm.
// It packs many tensors into one buffer per call, which it keeps for the
// next call. A Reducer must not be used from several goroutines at once.
type Reducer struct {
	comm  Comm
	buf32 []float32
	buf64 []float64
}

// NewReducer returns a Reducer over comm.
func NewReducer(comm Comm) (*Reducer, error) {
	if comm == nil {
		return nil, errors.New("dataparallel.NewReducer: nil Comm; pass the *mpi.World from mpi.Init")
	}
	if comm.Size() < 1 || comm.Rank() < 0 || comm.Rank() >= comm.Size() {
		return nil, errors.Errorf("dataparallel.NewReducer: rank %d of %d processes is impossible", comm.Rank(), comm.Size())
	}
	return &Reducer{comm: comm}, nil
}

// Comm returns the communicator the Reducer uses.
func (r *Reducer) Comm() Comm { return r.comm }

// SumGradients replaces every gradient by its sum over all ranks, with one
// allreduce for all of them. grads must list the same parameters, in the
// same order, on every rank.
func (r *Reducer) SumGradients(grads []G.ValueGrad) error {
	return r.reduceGradients("SumGradients", grads, 1)
}

// MeanGradients replaces every gradient by its sum over all ranks divided by
// count, with one allreduce for all of them. count is the number of
// micro-batch gradients summed over all ranks (micro-batches per rank times
// ranks): when every micro-batch's loss is a mean over the same number of
// examples, the result is the gradient of the mean loss of the global batch.
func (r *Reducer) MeanGradients(grads []G.ValueGrad, count int) error {
	if count < 1 {
		return errors.Errorf("dataparallel.MeanGradients: count %d; pass the number of micro-batches summed over all ranks (at least 1)", count)
	}
	return r.reduceGradients("MeanGradients", grads, count)
}

// reduceGradients sums grads over the ranks and divides them by div.
func (r *Reducer) reduceGradients(op string, grads []G.ValueGrad, div int) error {
	ts := make([]*tensor.Dense, len(grads))
	names := make([]string, len(grads))
	for i, vg := range grads {
		names[i] = gradName(vg, i)
		if vg == nil {
			return errors.Errorf("dataparallel.%s: gradient %s is nil", op, names[i])
		}
		g, err := vg.Grad()
		if err != nil {
			return errors.Wrapf(err, "dataparallel.%s: parameter %s has no gradient (run the graph first)", op, names[i])
		}
		d, ok := g.(*tensor.Dense)
		if !ok {
			return errors.Errorf("dataparallel.%s: the gradient of %s is a %T, want *tensor.Dense", op, names[i], g)
		}
		if d == nil {
			return errors.Errorf("dataparallel.%s: the gradient of %s is a nil tensor", op, names[i])
		}
		ts[i] = d
	}
	return errors.Wrapf(r.allreduce(ts, names, div), "dataparallel.%s", op)
}

// gradName names the i-th gradient for error messages.
func gradName(vg G.ValueGrad, i int) string {
	if n, ok := vg.(G.Namer); ok && n.Name() != "" {
		return fmt.Sprintf("#%d %q", i, n.Name())
	}
	return fmt.Sprintf("#%d", i)
}

// BroadcastParams copies root's values of params into every other rank's
// tensors, with one broadcast for all of them, so that every rank starts
// from the same weights. params (typically Store.Trainable()) must list the
// same shapes in the same order on every rank.
func (r *Reducer) BroadcastParams(params []*layers.Param, root int) error {
	if root < 0 || root >= r.comm.Size() {
		return errors.Errorf("dataparallel.BroadcastParams: root %d is not a rank of %d processes", root, r.comm.Size())
	}
	ts, names, err := paramTensors(params)
	if err != nil {
		return errors.Wrap(err, "dataparallel.BroadcastParams")
	}
	return errors.Wrap(r.broadcast(ts, names, root), "dataparallel.BroadcastParams")
}

// Replicated reports whether every rank holds exactly the values rank 0
// holds for params (bit for bit), at the cost of one broadcast of them and
// one small allreduce; no parameter changes. Every rank gets the same
// answer.
func (r *Reducer) Replicated(params []*layers.Param) (bool, error) {
	ts, names, err := paramTensors(params)
	if err != nil {
		return false, errors.Wrap(err, "dataparallel.Replicated")
	}
	dt, err := commonDtype(ts, names)
	if err != nil {
		return false, errors.Wrap(err, "dataparallel.Replicated")
	}
	var differ bool
	switch dt {
	case tensor.Float32:
		differ, err = differsFromRoot(r.comm.BroadcastFloat32, &r.buf32, ts)
	default:
		differ, err = differsFromRoot(r.comm.BroadcastFloat64, &r.buf64, ts)
	}
	if err != nil {
		return false, errors.Wrap(err, "dataparallel.Replicated")
	}
	anyDiffer, err := r.AnyRank(differ)
	return !anyDiffer, errors.Wrap(err, "dataparallel.Replicated")
}

// differsFromRoot broadcasts rank 0's packed ts through buf and reports
// whether this rank's values differ from them in any bit.
func differsFromRoot[T float32 | float64](bcast func([]T, int) error, buf *[]T, ts []*tensor.Dense) (bool, error) {
	*buf = pack(*buf, ts)
	mine := append([]T(nil), *buf...)
	if err := bcast(*buf, 0); err != nil {
		return false, err
	}
	for i, v := range *buf {
		if math.Float64bits(float64(v)) != math.Float64bits(float64(mine[i])) {
			return true, nil
		}
	}
	return false, nil
}

// SumMetrics replaces vals by their sum over all ranks: evaluation counts,
// loss sums, confusion matrices. To assemble per-example predictions, let
// every rank fill its own examples' entries of a zeroed slice of all of them
// and sum it: every rank then holds every prediction.
func (r *Reducer) SumMetrics(vals []float64) error {
	return errors.Wrap(r.comm.AllreduceSumFloat64(vals), "dataparallel.SumMetrics")
}

// AnyRank reports, on every rank, whether flag is true on at least one
// rank. Ranks that stop (Ctrl-C, a NaN loss) must agree to do so before the
// next collective call, or the others would wait for them for ever.
func (r *Reducer) AnyRank(flag bool) (bool, error) {
	v := []float64{0}
	if flag {
		v[0] = 1
	}
	if err := r.comm.AllreduceSumFloat64(v); err != nil {
		return false, errors.Wrap(err, "dataparallel.AnyRank")
	}
	return v[0] > 0, nil
}

// Shard returns this rank's share of a global batch: part Rank() of
// Split(indices, Size()). Every rank passes the same indices, in the seeded
// data order.
func (r *Reducer) Shard(indices []int) ([]int, error) {
	parts, err := Split(indices, r.comm.Size())
	if err != nil {
		return nil, errors.Wrap(err, "dataparallel.Shard")
	}
	return parts[r.comm.Rank()], nil
}

// paramTensors returns the value tensors and names of params.
func paramTensors(params []*layers.Param) ([]*tensor.Dense, []string, error) {
	ts := make([]*tensor.Dense, len(params))
	names := make([]string, len(params))
	for i, p := range params {
		if p == nil || p.Value == nil {
			return nil, nil, errors.Errorf("parameter #%d is nil or has no value", i)
		}
		ts[i], names[i] = p.Value, p.Name
	}
	return ts, names, nil
}

// commonDtype returns the element type that every tensor of ts shares,
// float32 or float64, after checking that none is a view (whose Data is not
// its elements alone).
func commonDtype(ts []*tensor.Dense, names []string) (tensor.Dtype, error) {
	dt := tensor.Float32
	for i, t := range ts {
		if t.Dtype() != tensor.Float32 && t.Dtype() != tensor.Float64 {
			return dt, errors.Errorf("%s is %v; only float32 and float64 tensors can be reduced", names[i], t.Dtype())
		}
		if i == 0 {
			dt = t.Dtype()
		} else if t.Dtype() != dt {
			return dt, errors.Errorf("%s is %v but %s is %v; put every tensor of one call in one dtype", names[i], t.Dtype(), names[0], dt)
		}
		if t.IsView() {
			return dt, errors.Errorf("%s is a view of another tensor; pass contiguous tensors", names[i])
		}
	}
	return dt, nil
}

// allreduce sums ts over the ranks in one call and divides them by div.
func (r *Reducer) allreduce(ts []*tensor.Dense, names []string, div int) error {
	dt, err := commonDtype(ts, names)
	if err != nil {
		return err
	}
	if dt == tensor.Float32 {
		return through(r.comm.AllreduceSumFloat32, &r.buf32, ts, float32(div))
	}
	return through(r.comm.AllreduceSumFloat64, &r.buf64, ts, float64(div))
}

// broadcast copies root's ts to every rank in one call.
func (r *Reducer) broadcast(ts []*tensor.Dense, names []string, root int) error {
	dt, err := commonDtype(ts, names)
	if err != nil {
		return err
	}
	if dt == tensor.Float32 {
		return through(func(b []float32) error { return r.comm.BroadcastFloat32(b, root) }, &r.buf32, ts, 1)
	}
	return through(func(b []float64) error { return r.comm.BroadcastFloat64(b, root) }, &r.buf64, ts, 1)
}

// through packs ts into buf, applies the collective call to it, and unpacks
// it into ts divided by div.
func through[T float32 | float64](collective func([]T) error, buf *[]T, ts []*tensor.Dense, div T) error {
	*buf = pack(*buf, ts)
	if err := collective(*buf); err != nil {
		return err
	}
	off := 0
	for _, t := range ts {
		d := t.Data().([]T)
		if div == 1 {
			copy(d, (*buf)[off:])
		} else {
			for i := range d {
				d[i] = (*buf)[off+i] / div
			}
		}
		off += len(d)
	}
	return nil
}

// pack copies the elements of ts one after another into buf, reusing its
// storage, and returns it.
func pack[T float32 | float64](buf []T, ts []*tensor.Dense) []T {
	buf = buf[:0]
	for _, t := range ts {
		buf = append(buf, t.Data().([]T)...)
	}
	return buf
}
