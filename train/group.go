package train

import (
	"fmt"
	"math"

	"github.com/lilygo/lily/gorgoniafix"
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
)

// NewGroup returns a group of params (for Run) with an AdamW of the given
// peak rate and weight decay.
func NewGroup(name string, params []*layers.Param, peakLR, weightDecay float64) *Group {
	return &Group{Name: name, PeakLR: peakLR, Params: params,
		Opt: gorgoniafix.NewAdamW(gorgoniafix.WithLearnRate(peakLR), gorgoniafix.WithWeightDecay(weightDecay))}
}

// Step sets every group's rate from the schedule at step and applies one
// optimiser step to the gradients the last run accumulated.
func Step(groups []*Group, s Schedule, step int) error {
	f := s.Factor(step)
	for _, gr := range groups {
		if len(gr.Nodes) == 0 {
			continue
		}
		gr.Opt.SetLearnRate(gr.PeakLR * f)
		if err := gr.Opt.Step(G.NodesToValueGrads(gr.Nodes)); err != nil {
			return errors.Wrapf(err, "optimiser step %d of %s", step, gr.Name)
		}
	}
	return nil
}

// CheckLoss turns a NaN or infinite loss into an error that says what to do.
func CheckLoss(loss float64, step int) error {
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return fmt.Errorf("the loss became %v at step %d: lower the learning rate (or the adapter scaling) and check the input data", loss, step)
	}
	return nil
}
