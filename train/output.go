package train

import (
	"encoding/json"
	"image/color"
	"io"

	"github.com/lilygo/lily/internal/atomicfile"
	"github.com/pkg/errors"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// WriteJSON writes v as indented JSON to path atomically.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return errors.Wrapf(err, "encoding %s", path)
	}
	return atomicfile.WriteBytes(path, append(b, '\n'))
}

// Series is one line of a plot.
type Series struct {
	Name string
	X, Y []float64
}

// Plot writes a PNG line chart of the series to path atomically.
func Plot(path, title, xLabel, yLabel string, series ...Series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Add(plotter.NewGrid())
	for i, s := range series {
		if len(s.X) != len(s.Y) {
			return errors.Errorf("plot %s: series %q has %d x and %d y values", path, s.Name, len(s.X), len(s.Y))
		}
		if len(s.X) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(s.X))
		for j := range s.X {
			xys[j].X, xys[j].Y = s.X[j], s.Y[j]
		}
		line, err := plotter.NewLine(xys)
		if err != nil {
			return errors.Wrapf(err, "plot %s: series %q", path, s.Name)
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.5)
		p.Add(line)
		if len(series) > 1 {
			p.Legend.Add(s.Name, line)
		}
	}
	p.Legend.Top = true
	return SavePNG(p, path)
}

// Bars is one series of a grouped bar chart: one value per group.
type Bars struct {
	Name   string
	Values []float64
}

// BarChart writes a PNG grouped bar chart to path atomically: one group of
// bars per name in groups, one bar in each group per series.
func BarChart(path, title, yLabel string, groups []string, series ...Bars) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = yLabel
	p.Add(plotter.NewGrid())
	w := vg.Points(16)
	for i, s := range series {
		if len(s.Values) != len(groups) {
			return errors.Errorf("bar chart %s: series %q has %d values for %d groups", path, s.Name, len(s.Values), len(groups))
		}
		bars, err := plotter.NewBarChart(plotter.Values(s.Values), w)
		if err != nil {
			return errors.Wrapf(err, "bar chart %s: series %q", path, s.Name)
		}
		bars.Offset = vg.Length(float64(i)-float64(len(series)-1)/2) * w
		bars.Color = plotutil.Color(i)
		bars.LineStyle.Width = 0
		p.Add(bars)
		p.Legend.Add(s.Name, bars)
	}
	p.Legend.Top = true
	p.NominalX(groups...)
	return SavePNG(p, path)
}

// SavePNG renders p at 8 × 5 inches on white and writes it to path
// atomically, as every chart of this module is written.
func SavePNG(p *plot.Plot, path string) error {
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
