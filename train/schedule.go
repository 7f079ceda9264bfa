package train

import (
	"math"

	"github.com/pkg/errors"
)

// Schedule is a linear learning-rate schedule with warm-up, as Hugging Face's
// get_linear_schedule_with_warmup: the rate rises linearly from 0 to the peak
// over Warmup steps, then falls linearly to 0 at Total steps.
type Schedule struct {
	Warmup, Total int
}

// NewSchedule returns the schedule for total steps with the given warm-up
// fraction (the GLUE recipe uses 0.06).
func NewSchedule(total int, warmupRatio float64) (Schedule, error) {
	if total < 1 {
		return Schedule{}, errors.Errorf("schedule: %d total steps; need at least 1", total)
	}
	if math.IsNaN(warmupRatio) || warmupRatio < 0 || warmupRatio >= 1 {
		return Schedule{}, errors.Errorf("schedule: warm-up ratio %v must be in [0, 1)", warmupRatio)
	}
	return Schedule{Warmup: int(math.Ceil(warmupRatio * float64(total))), Total: total}, nil
}

// Factor returns the multiplier of the peak rate at a 0-based step.
func (s Schedule) Factor(step int) float64 {
	if step < s.Warmup {
		return float64(step) / float64(max(1, s.Warmup))
	}
	return math.Max(0, float64(s.Total-step)/float64(max(1, s.Total-s.Warmup)))
}
