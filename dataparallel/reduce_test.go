package dataparallel_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/lilygo/lily/dataparallel"
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// rankParams returns two float32 parameters whose elements are
// 10·rank + position + offset, as Gradients whose gradients hold the same
// values plus 0.5.
func rankParams(rank int, offset float64) ([]*layers.Param, []G.ValueGrad) {
	var ps []*layers.Param
	var gs []G.ValueGrad
	for k, shape := range [][]int{{2, 3}, {4}} {
		n := shape[0]
		if len(shape) > 1 {
			n *= shape[1]
		}
		vals, gvals := make([]float64, n), make([]float64, n)
		for i := range vals {
			vals[i] = float64(10*rank+i) + offset
			gvals[i] = vals[i] + 0.5
		}
		p := &layers.Param{Name: fmt.Sprintf("p%d", k), Value: layers.FromFloat64(tensor.Float32, shape, vals), Trainable: true}
		ps = append(ps, p)
		gs = append(gs, dataparallel.Gradient{Param: p, Sum: layers.FromFloat64(tensor.Float32, shape, gvals)})
	}
	return ps, gs
}

// TestReducerThreeRanks checks every collective of a Reducer on three ranks
// against values computed by hand.
func TestReducerThreeRanks(t *testing.T) {
	const n = 3
	errs := onRanks(n, func(c dataparallel.Comm) error {
		red, err := dataparallel.NewReducer(c)
		if err != nil {
			return err
		}
		ps, gs := rankParams(c.Rank(), 0)
		if err := red.SumGradients(gs); err != nil {
			return err
		}
		_, gs2 := rankParams(c.Rank(), 0)
		if err := red.MeanGradients(gs2, 2*n); err != nil {
			return err
		}
		for k := range gs {
			sum, _ := gs[k].Grad()
			mean, _ := gs2[k].Grad()
			for i, v := range layers.Float64s(sum.(*tensor.Dense)) {
				want := float64(10*(0+1+2)+n*i) + n*0.5
				if v != want {
					return errors.Errorf("sum of p%d[%d] = %v, want %v", k, i, v, want)
				}
				if m := layers.Float64s(mean.(*tensor.Dense))[i]; m != float64(float32(want)/(2*n)) {
					return errors.Errorf("mean of p%d[%d] = %v, want %v", k, i, m, want/(2*n))
				}
			}
		}
		if same, err := red.Replicated(ps); err != nil || same {
			return errors.Errorf("Replicated before the broadcast: %v, %v; want false", same, err)
		}
		if err := red.BroadcastParams(ps, 1); err != nil {
			return err
		}
		for k, p := range ps {
			for i, v := range layers.Float64s(p.Value) {
				if v != float64(10+i) {
					return errors.Errorf("after the broadcast from rank 1, p%d[%d] = %v, want %v", k, i, v, 10+i)
				}
			}
		}
		if same, err := red.Replicated(ps); err != nil || !same {
			return errors.Errorf("Replicated after the broadcast: %v, %v; want true", same, err)
		}
		metrics := []float64{1, float64(c.Rank())}
		if err := red.SumMetrics(metrics); err != nil {
			return err
		}
		if metrics[0] != n || metrics[1] != 0+1+2 {
			return errors.Errorf("SumMetrics gave %v, want [3 3]", metrics)
		}
		for _, tc := range []struct {
			flag func(rank int) bool
			want bool
		}{{func(int) bool { return false }, false}, {func(r int) bool { return r == 2 }, true}} {
			if any, err := red.AnyRank(tc.flag(c.Rank())); err != nil || any != tc.want {
				return errors.Errorf("AnyRank: %v, %v; want %v", any, err, tc.want)
			}
		}
		share, err := red.Shard([]int{9, 8, 7, 6, 5, 4, 3})
		if err != nil {
			return err
		}
		if want := [][]int{{9, 8, 7}, {6, 5}, {4, 3}}[c.Rank()]; !slices.Equal(share, want) {
			return errors.Errorf("Shard gave %v, want %v", share, want)
		}
		return nil
	})
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

// TestSplit checks the lengths, order and coverage of Split's pieces.
func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		n, parts int
		lens     []int
	}{{7, 3, []int{3, 2, 2}}, {6, 2, []int{3, 3}}, {2, 4, []int{1, 1, 0, 0}}, {0, 1, []int{0}}, {5, 1, []int{5}}} {
		idx := make([]int, tc.n)
		for i := range idx {
			idx[i] = 100 - i
		}
		parts, err := dataparallel.Split(idx, tc.parts)
		if err != nil {
			t.Fatal(err)
		}
		var lens []int
		var joined []int
		for _, p := range parts {
			lens = append(lens, len(p))
			joined = append(joined, p...)
		}
		if !slices.Equal(lens, tc.lens) || !slices.Equal(joined, idx) {
			t.Errorf("Split(%d indices, %d) = %v, want lengths %v covering the indices in order", tc.n, tc.parts, parts, tc.lens)
		}
		if len(parts) > 1 && len(parts[0]) > 0 {
			parts[0] = append(parts[0], -1) // must not overwrite the next piece
			if parts[1] != nil && len(parts[1]) > 0 && parts[1][0] == -1 {
				t.Errorf("appending to a piece overwrote the next one")
			}
		}
	}
	if _, err := dataparallel.Split([]int{1}, 0); err == nil {
		t.Error("Split into 0 parts: no error")
	}
}

// TestReducerRejects checks the errors of bad arguments, which must come
// before any collective call.
func TestReducerRejects(t *testing.T) {
	if _, err := dataparallel.NewReducer(nil); err == nil || !strings.Contains(err.Error(), "mpi.Init") {
		t.Errorf("nil Comm: error %v", err)
	}
	red, err := dataparallel.NewReducer(dataparallel.NewLocalGroup(1)[0])
	if err != nil {
		t.Fatal(err)
	}
	_, gs := rankParams(0, 0)
	if err := red.MeanGradients(gs, 0); err == nil || !strings.Contains(err.Error(), "count 0") {
		t.Errorf("count 0: error %v", err)
	}
	p64 := &layers.Param{Name: "wide", Value: layers.FromFloat64(tensor.Float64, []int{2}, []float64{1, 2})}
	mixed := append(gs, dataparallel.Gradient{Param: p64, Sum: p64.Value.Clone().(*tensor.Dense)})
	if err := red.SumGradients(mixed); err == nil || !strings.Contains(err.Error(), "one dtype") {
		t.Errorf("mixed dtypes: error %v", err)
	}
	if err := red.BroadcastParams([]*layers.Param{p64}, 1); err == nil || !strings.Contains(err.Error(), "not a rank") {
		t.Errorf("root 1 of 1: error %v", err)
	}
	if err := red.SumGradients([]G.ValueGrad{dataparallel.Gradient{Param: p64}}); err == nil || !strings.Contains(err.Error(), "nil tensor") {
		t.Errorf("a Gradient without a sum: error %v", err)
	}
	if err := red.SumGradients([]G.ValueGrad{nil}); err == nil || !strings.Contains(err.Error(), "nil") {
		t.Errorf("nil gradient: error %v", err)
	}
}
