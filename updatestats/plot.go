package updatestats

import (
	"fmt"

	"github.com/lilygo/lily/train"
	"github.com/pkg/errors"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// WritePlot writes a PNG chart of the report to path atomically: the
// effective rank of every site's update against its layer, one line per
// target named with the range of its numerical ranks, on an axis from 0 to
// the largest possible rank min(r, d_in, d_out). title names the run.
func WritePlot(path, title string, r *Report) error {
	if r == nil || len(r.Sites) == 0 {
		return errors.Errorf("update plot %s: the report has no site", path)
	}
	var targets []string
	byTarget := map[string][]SiteUpdate{}
	bound := 0
	for _, su := range r.Sites {
		if _, seen := byTarget[su.Target]; !seen {
			targets = append(targets, su.Target)
		}
		byTarget[su.Target] = append(byTarget[su.Target], su)
		bound = max(bound, len(su.SingularValues))
	}
	p := plot.New()
	p.Title.Text = title + ": effective rank of each update"
	p.X.Label.Text = "layer"
	p.Y.Label.Text = fmt.Sprintf("effective rank (Roy & Vetterli; at most %d here)", bound)
	p.Add(plotter.NewGrid())
	for i, t := range targets {
		sites := byTarget[t]
		xys := make(plotter.XYs, len(sites))
		lo, hi := sites[0].Rank, sites[0].Rank
		for j, su := range sites {
			xys[j].X, xys[j].Y = float64(su.Layer), su.EffectiveRank
			lo, hi = min(lo, su.Rank), max(hi, su.Rank)
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return errors.Wrapf(err, "update plot %s: %s", path, t)
		}
		line.Color, points.Color = plotutil.Color(i), plotutil.Color(i)
		line.Width = vg.Points(1.5)
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		ranks := fmt.Sprint(lo)
		if hi > lo {
			ranks = fmt.Sprintf("%d-%d", lo, hi)
		}
		p.Legend.Add(fmt.Sprintf("%s (numerical rank %s)", t, ranks), line, points)
	}
	// Effective ranks lie near the top of the axis: the legend goes to the
	// bottom left.
	p.Y.Min, p.Y.Max = 0, float64(bound)+0.05*float64(max(bound, 1))
	p.Legend.Left = true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(10), vg.Points(10)
	return train.SavePNG(p, path)
}
