package main

import (
	"image/color"
	"io"
	"math"
	"strconv"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// logPlot writes a PNG line chart with a logarithmic y axis to path
// atomically: the pretrained model's perplexity on a shifted corpus can be
// orders of magnitude above the adapted ones. Every y value must be
// positive, and there must be at least one.
func logPlot(path, title, xLabel, yLabel string, series ...train.Series) error {
	points := 0
	for _, s := range series {
		points += len(s.Y)
	}
	if points == 0 {
		return errors.Errorf("plot %s: no values", path)
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = logTicks{}
	p.Add(plotter.NewGrid())
	for i, s := range series {
		if len(s.X) != len(s.Y) {
			return errors.Errorf("plot %s: series %q has %d x and %d y values", path, s.Name, len(s.X), len(s.Y))
		}
		xys := make(plotter.XYs, len(s.X))
		for j := range s.X {
			if !(s.Y[j] > 0) {
				return errors.Errorf("plot %s: series %q has the value %v, which a log scale cannot show", path, s.Name, s.Y[j])
			}
			xys[j].X, xys[j].Y = s.X[j], s.Y[j]
		}
		if len(xys) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return errors.Wrapf(err, "plot %s: series %q", path, s.Name)
		}
		line.Color, points.Color = plotutil.Color(i), plotutil.Color(i)
		line.Width = vg.Points(1.5)
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		p.Legend.Add(s.Name, line, points)
	}
	// The curves fall from the top left: the legend goes bottom left.
	p.Legend.Left = true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(10), vg.Points(10)
	p.BackgroundColor = color.White
	wt, err := p.WriterTo(8*vg.Inch, 5*vg.Inch, "png")
	if err != nil {
		return errors.Wrapf(err, "plot %s", path)
	}
	return atomicfile.Write(path, func(w io.Writer) error {
		_, err := wt.WriteTo(w)
		return err
	})
}

// logTicks labels about seven values evenly spaced on a log axis, rounded to
// two significant digits; gonum's LogTicks labels only powers of ten, which
// a range such as 200–350 does not contain.
type logTicks struct{}

// Ticks returns the labelled ticks between lo and hi (none unless
// 0 < lo ≤ hi).
func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(lo > 0 && hi >= lo) || math.IsInf(hi, 0) {
		return nil
	}
	const n = 6
	var ticks []plot.Tick
	for i := 0; i <= n; i++ {
		v := lo * math.Pow(hi/lo, float64(i)/n)
		unit := math.Pow(10, math.Floor(math.Log10(v))-1)
		v = math.Round(v/unit) * unit
		if v < lo || v > hi || len(ticks) > 0 && ticks[len(ticks)-1].Value == v {
			continue
		}
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', 3, 64)})
	}
	return ticks
}
