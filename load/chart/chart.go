// Package chart draws load generator results as PNG or SVG images.
package chart

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/switchyard/switchyard/load"
)

// Format is an image format.
type Format string

// The supported formats.
const (
	PNG Format = "png"
	SVG Format = "svg"
)

// ErrFormat reports a file name or format that is not .png or .svg.
var ErrFormat = errors.New("chart format must be png or svg")

// FormatOf returns the format named by path's extension.
func FormatOf(path string) (Format, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".png":
		return PNG, nil
	case ".svg":
		return SVG, nil
	}
	return "", fmt.Errorf("chart file '%s': %w", path, ErrFormat)
}

// Size of the whole image (two panels stacked).
const (
	width  = 8 * vg.Inch
	height = 9 * vg.Inch
)

var (
	colCorrected   = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	colUncorrected = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	colMax         = color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}
	colMarker      = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
)

// WriteFile draws res into path, choosing the format by its extension.
func WriteFile(path string, res *load.Result) error {
	f, err := FormatOf(path)
	if err != nil {
		return err
	}
	out, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("creating chart: %w", err)
	}
	if err := Write(out, f, res); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("writing chart '%s': %w", path, err)
	}
	return nil
}

// Write draws res to w. A constant-rate run gets its latency percentile
// distribution (corrected and uncorrected, on the 1/(1-p) log scale of
// HdrHistogram and wrk2 plots) above latency over time. A ramp gets p50
// and p99 against offered load above throughput against offered load, with
// the degradation point marked.
func Write(w io.Writer, f Format, res *load.Result) error {
	var top, bottom *plot.Plot
	var err error
	if len(res.Steps) > 0 {
		top, bottom, err = rampPlots(res)
	} else {
		top, err = distributionPlot(res)
		if err == nil {
			bottom, err = timelinePlot(res)
		}
	}
	if err != nil {
		return fmt.Errorf("drawing chart: %w", err)
	}
	var c interface {
		vg.CanvasSizer
		io.WriterTo
	}
	switch f {
	case PNG:
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(110))}
	case SVG:
		c = vgsvg.New(width, height)
	default:
		return fmt.Errorf("chart format '%s': %w", f, ErrFormat)
	}
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 6,
		PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3}
	canvases := plot.Align([][]*plot.Plot{{top}, {bottom}}, tiles, dc)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])
	if _, err := c.WriteTo(w); err != nil {
		return fmt.Errorf("writing chart: %w", err)
	}
	return nil
}

// percentileTicks label the 1/(1-p) axis with percentiles.
func percentileTicks(maxX float64) plot.ConstantTicks {
	labels := []string{"0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"}
	var ticks []plot.Tick
	for i, l := range labels {
		x := math.Pow10(i)
		ticks = append(ticks, plot.Tick{Value: x, Label: l})
		if x > maxX {
			break
		}
	}
	return ticks
}

func distributionPlot(res *load.Result) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Latency by percentile"
	p.X.Label.Text = "percentile (log scale of 1/(1-p))"
	p.Y.Label.Text = "latency (ms)"
	p.X.Scale = plot.LogScale{}
	p.Legend.Top = true
	p.Legend.Left = true
	maxX := 100.0
	for _, s := range []struct {
		name string
		pts  plotter.XYs
		col  color.Color
	}{
		{"corrected (from intended send)", distribution(res, true), colCorrected},
		{"uncorrected (service time)", distribution(res, false), colUncorrected},
	} {
		if len(s.pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(s.pts)
		if err != nil {
			return nil, err
		}
		l.Color = s.col
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.name, l)
		maxX = math.Max(maxX, s.pts[len(s.pts)-1].X)
	}
	p.X.Min, p.X.Max = 1, maxX
	p.X.Tick.Marker = percentileTicks(maxX)
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	return p, nil
}

// distribution returns (1/(1-p), latency ms) points of a histogram, as
// HdrHistogram's percentile output lists them, without the final p=1 point.
func distribution(res *load.Result, corrected bool) plotter.XYs {
	h := res.UncorrectedHistogram
	if corrected {
		h = res.CorrectedHistogram
	}
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	var pts plotter.XYs
	for _, b := range h.CumulativeDistributionWithTicks(5) {
		q := b.Quantile / 100
		if q >= 1 {
			break
		}
		pts = append(pts, plotter.XY{X: 1 / (1 - q), Y: float64(b.ValueAt) / 1000})
	}
	return pts
}

func timelinePlot(res *load.Result) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Corrected latency over time"
	p.X.Label.Text = "time (s)"
	p.Y.Label.Text = "latency (ms)"
	p.Legend.Top = true
	p.Legend.Left = true
	p.X.Min, p.Y.Min = 0, 0
	series := []struct {
		name string
		get  func(load.Interval) float64
		col  color.Color
	}{
		{"p50", func(iv load.Interval) float64 { return iv.P50 }, colUncorrected},
		{"p99", func(iv load.Interval) float64 { return iv.P99 }, colCorrected},
		{"max", func(iv load.Interval) float64 { return iv.Max }, colMax},
	}
	for _, s := range series {
		pts := make(plotter.XYs, len(res.Timeline))
		for i, iv := range res.Timeline {
			pts[i] = plotter.XY{X: iv.Time, Y: s.get(iv)}
		}
		if len(pts) == 0 {
			continue
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return nil, err
		}
		l.Color, sc.Color = s.col, s.col
		sc.Radius = vg.Points(1.5)
		p.Add(l, sc)
		p.Legend.Add(s.name, l)
	}
	p.Add(plotter.NewGrid())
	return p, nil
}

func rampPlots(res *load.Result) (*plot.Plot, *plot.Plot, error) {
	lat := plot.New()
	lat.Title.Text = "Corrected latency against offered load"
	lat.X.Label.Text = "offered rate (req/s)"
	lat.Y.Label.Text = "latency (ms)"
	lat.Legend.Top = true
	lat.Legend.Left = true
	lat.Y.Min = 0
	thr := plot.New()
	thr.Title.Text = "Throughput against offered load"
	thr.X.Label.Text = "offered rate (req/s)"
	thr.Y.Label.Text = "successful responses (req/s)"
	thr.Legend.Top = true
	thr.Legend.Left = true
	thr.Y.Min = 0

	n := len(res.Steps)
	p50, p99, tp, ideal := make(plotter.XYs, n), make(plotter.XYs, n), make(plotter.XYs, n), make(plotter.XYs, n)
	maxLat, maxRate := 0.0, 0.0
	for i, s := range res.Steps {
		p50[i] = plotter.XY{X: s.OfferedRate, Y: s.P50}
		p99[i] = plotter.XY{X: s.OfferedRate, Y: s.P99}
		tp[i] = plotter.XY{X: s.OfferedRate, Y: s.Throughput}
		ideal[i] = plotter.XY{X: s.OfferedRate, Y: s.OfferedRate}
		maxLat = math.Max(maxLat, s.P99)
		maxRate = math.Max(maxRate, math.Max(s.OfferedRate, s.Throughput))
	}
	add := func(p *plot.Plot, name string, pts plotter.XYs, col color.Color, dashed bool) error {
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		l.Color, sc.Color = col, col
		if dashed {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l, sc)
		p.Legend.Add(name, l)
		return nil
	}
	if err := errors.Join(
		add(lat, "p50", p50, colUncorrected, false),
		add(lat, "p99", p99, colCorrected, false),
		add(thr, "throughput", tp, colCorrected, false),
		add(thr, "offered (ideal)", ideal, colMax, true),
	); err != nil {
		return nil, nil, err
	}
	if res.DegradationRate != nil {
		d := *res.DegradationRate
		for _, m := range []struct {
			p   *plot.Plot
			top float64
		}{{lat, maxLat}, {thr, maxRate}} {
			l, err := plotter.NewLine(plotter.XYs{{X: d, Y: 0}, {X: d, Y: m.top * 1.05}})
			if err != nil {
				return nil, nil, err
			}
			l.Color = colMarker
			l.Width = vg.Points(2)
			l.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
			m.p.Add(l)
			m.p.Legend.Add(fmt.Sprintf("degradation point %.6g req/s", d), l)
		}
	}
	lat.Add(plotter.NewGrid())
	thr.Add(plotter.NewGrid())
	return lat, thr, nil
}
