package dataparallel_test

import (
	"testing"

	"github.com/lilygo/lily/dataparallel"
	"gorgonia.org/tensor"
)

// TestDataParallelStepMatchesAccumulation runs checkDataParallelStep on two
// ranks in this process.
func TestDataParallelStepMatchesAccumulation(t *testing.T) {
	for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
		for r, err := range onRanks(2, func(c dataparallel.Comm) error { return checkDataParallelStep(c, dt) }) {
			if err != nil {
				t.Errorf("%v rank %d: %v", dt, r, err)
			}
		}
	}
}
