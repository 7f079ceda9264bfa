package updatestats

import (
	"github.com/lilygo/lily/layers"
	"github.com/pkg/errors"
)

// DefaultKeep is how many individual mixing vectors per site Measure keeps
// for the spread of Lily's routing.
const DefaultKeep = 256

// Measure is the analysis as the fine-tuning commands run it after
// training. For an adapter without a low-rank update (None, full
// fine-tuning) it returns nil. For a routed Lily adapter it first calls
// observe, which runs held-out data through evaluation graphs and passes
// every run to the calibrator's Observe (the calibrator keeps DefaultKeep
// vectors per site). Then it analyses with the default options and writes
// WritePlot's chart to plotPath, titled with title.
func Measure(s *layers.Store, a layers.Adapter, sites []layers.Site, observe func(*layers.MixingCalibrator) error, plotPath, title string) (*Report, error) {
	var cal *layers.MixingCalibrator
	switch ad := a.(type) {
	case *layers.LoRA:
	case *layers.Lily:
		if !ad.Config().Uniform {
			cal = &layers.MixingCalibrator{Keep: DefaultKeep}
			if err := observe(cal); err != nil {
				return nil, errors.Wrap(err, "observing Lily's mixing on held-out data")
			}
		}
	default:
		return nil, nil
	}
	rep, err := Analyze(s, a, sites, cal, Options{})
	if err != nil {
		return nil, err
	}
	return rep, WritePlot(plotPath, title, rep)
}
