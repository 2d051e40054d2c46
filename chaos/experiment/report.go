package experiment

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/switchyard/switchyard/load/chart"
)

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteText writes the report for a terminal: the verdict, the load, the
// checks (each failure of the method phase), the actions and the SLI
// timeline.
func (rep *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	verdict := "HELD"
	if !rep.Held {
		verdict = "DID NOT HOLD"
	}
	fmt.Fprintf(&b, "experiment %q (%s): the hypothesis %s\n", rep.Title, rep.File, verdict)
	if rep.Reason != "" {
		fmt.Fprintf(&b, "  why: %s\n", rep.Reason)
	}
	if len(rep.FailedProbes) > 0 {
		fmt.Fprintf(&b, "  failed probes: %s\n", strings.Join(rep.FailedProbes, ", "))
	}
	if l := rep.Load; l != nil {
		fmt.Fprintf(&b, "  load: %g req/s, %d requests, %d errors (%s), p50 %.2fms p99 %.2fms max %.2fms\n",
			l.Rate, l.Requests, l.Errors, pctString(l.ErrorRate), l.P50, l.P99, l.Max)
	}
	writeCheck := func(c *Check) {
		if c == nil {
			return
		}
		state := "held"
		if !c.Held {
			state = "NOT HELD"
		}
		fmt.Fprintf(&b, "  %s (t=%.1fs): %s\n", c.Phase, c.T, state)
		for _, p := range c.Probes {
			mark := "ok  "
			switch {
			case !p.OK:
				mark = "FAIL"
			case p.Skipped:
				mark = "skip"
			}
			fmt.Fprintf(&b, "    %s %-20s %s\n", mark, p.Name, p.Detail)
		}
	}
	writeCheck(rep.Before)
	held := 0
	for _, c := range rep.During {
		if c.Held {
			held++
		}
	}
	fmt.Fprintf(&b, "  during: %d checks, %d held\n", len(rep.During), held)
	for _, c := range rep.During {
		if !c.Held {
			fmt.Fprintf(&b, "    t=%5.1fs %s\n", c.T, failedList(c))
		}
	}
	writeCheck(rep.After)
	for _, list := range []struct {
		name    string
		actions []ActionResult
	}{{"method", rep.Method}, {"rollbacks", rep.Rollbacks}} {
		fmt.Fprintf(&b, "  %s:\n", list.name)
		if len(list.actions) == 0 {
			fmt.Fprintf(&b, "    (none run)\n")
		}
		for _, a := range list.actions {
			fmt.Fprintf(&b, "    t=%5.1fs %-40s %s\n", a.T, a.Name, a.Detail)
		}
	}
	if len(rep.Timeline) > 0 {
		fmt.Fprintf(&b, "  timeline (the load per interval):\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "    t_s\trequests\terrors\terror_rate\tp50_ms\tp99_ms\t")
		for _, p := range rep.Timeline {
			fmt.Fprintf(tw, "    %.1f\t%d\t%d\t%s\t%.2f\t%.2f\t\n", p.T, p.Requests, p.Errors, pctString(p.ErrorRate), p.P50, p.P99)
		}
		tw.Flush()
	}
	_, err := io.WriteString(w, b.String())
	return err
}

var (
	colP50    = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	colP99    = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	colLimit  = color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}
	colAction = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	colFail   = color.RGBA{R: 0x00, G: 0x00, B: 0x00, A: 0xff}
)

// WriteChart draws the SLI timeline into path (.svg or .png): latency
// (p50, p99) and error rate per interval of the load, the probes'
// tolerances as dashed lines, the method's actions as vertical lines, and
// the checks that failed as crosses.
func (rep *Report) WriteChart(path string) error {
	f, err := chart.FormatOf(path)
	if err != nil {
		return err
	}
	lat, errs, err := rep.plots()
	if err != nil {
		return fmt.Errorf("drawing chart: %w", err)
	}
	w, h := 8*vg.Inch, 7*vg.Inch
	var c interface {
		vg.CanvasSizer
		io.WriterTo
	}
	if f == chart.PNG {
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(110))}
	} else {
		c = vgsvg.New(w, h)
	}
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 6,
		PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3}
	cs := plot.Align([][]*plot.Plot{{lat}, {errs}}, tiles, dc)
	lat.Draw(cs[0][0])
	errs.Draw(cs[1][0])
	out, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("creating chart: %w", err)
	}
	if _, err := c.WriteTo(out); err != nil {
		out.Close()
		return fmt.Errorf("writing chart %q: %w", path, err)
	}
	return out.Close()
}

func (rep *Report) plots() (*plot.Plot, *plot.Plot, error) {
	lat := plot.New()
	lat.Title.Text = rep.Title + ": latency"
	lat.X.Label.Text = "time since the method began (s)"
	lat.Y.Label.Text = "latency (ms)"
	errp := plot.New()
	errp.Title.Text = "error rate"
	errp.X.Label.Text = "time since the method began (s)"
	errp.Y.Label.Text = "failed requests (%)"
	for _, p := range []*plot.Plot{lat, errp} {
		p.Legend.Top, p.Legend.Left = true, true
		p.X.Min, p.Y.Min = 0, 0
		p.Add(plotter.NewGrid())
	}
	n := len(rep.Timeline)
	p50, p99, er := make(plotter.XYs, n), make(plotter.XYs, n), make(plotter.XYs, n)
	maxLat, maxErr, maxT := 1.0, 1.0, 1.0
	for i, t := range rep.Timeline {
		p50[i] = plotter.XY{X: t.T, Y: t.P50}
		p99[i] = plotter.XY{X: t.T, Y: t.P99}
		er[i] = plotter.XY{X: t.T, Y: t.ErrorRate * 100}
		maxLat, maxErr, maxT = math.Max(maxLat, t.P99), math.Max(maxErr, t.ErrorRate*100), math.Max(maxT, t.T)
	}
	for _, c := range rep.During {
		maxT = math.Max(maxT, c.T)
	}
	line := func(p *plot.Plot, name string, pts plotter.XYs, col color.Color, dashed bool) error {
		if len(pts) == 0 {
			return nil
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.Color = col
		l.Width = vg.Points(1.5)
		if dashed {
			l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		p.Add(l)
		if name != "" {
			p.Legend.Add(name, l)
		}
		return nil
	}
	if err := line(lat, "p50", p50, colP50, false); err != nil {
		return nil, nil, err
	}
	if err := line(lat, "p99", p99, colP99, false); err != nil {
		return nil, nil, err
	}
	if err := line(errp, "error rate", er, colP99, false); err != nil {
		return nil, nil, err
	}
	for _, pr := range rep.probes {
		s := pr.SLI
		if s == nil {
			continue
		}
		if s.MaxLatency > 0 {
			v := float64(s.MaxLatency) / float64(time.Millisecond)
			maxLat = math.Max(maxLat, v)
			pct := s.Percentile
			if pct == 0 {
				pct = DefaultSLIPercentile
			}
			if err := line(lat, fmt.Sprintf("%s: p%g <= %s", pr.Name, pct, s.MaxLatency), plotter.XYs{{X: 0, Y: v}, {X: maxT, Y: v}}, colLimit, true); err != nil {
				return nil, nil, err
			}
		}
		if s.MaxErrorRate != nil {
			v := float64(*s.MaxErrorRate) * 100
			maxErr = math.Max(maxErr, v)
			if err := line(errp, fmt.Sprintf("%s: <= %s", pr.Name, s.MaxErrorRate), plotter.XYs{{X: 0, Y: v}, {X: maxT, Y: v}}, colLimit, true); err != nil {
				return nil, nil, err
			}
		}
	}
	for i, a := range rep.Method {
		for _, p := range []struct {
			p   *plot.Plot
			top float64
		}{{lat, maxLat * 1.1}, {errp, maxErr * 1.1}} {
			name := ""
			if p.p == lat {
				name = fmt.Sprintf("%.0fs: %s", a.T, a.Name)
			}
			col := colAction
			if i%2 == 1 {
				col = color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}
			}
			if err := line(p.p, name, plotter.XYs{{X: a.T, Y: 0}, {X: a.T, Y: p.top}}, col, true); err != nil {
				return nil, nil, err
			}
		}
	}
	var fails plotter.XYs
	for _, c := range rep.During {
		if !c.Held {
			fails = append(fails, plotter.XY{X: c.T, Y: 0})
		}
	}
	if rep.After != nil && !rep.After.Held {
		fails = append(fails, plotter.XY{X: rep.After.T, Y: 0})
	}
	if len(fails) > 0 {
		sc, err := plotter.NewScatter(fails)
		if err != nil {
			return nil, nil, err
		}
		sc.Shape = draw.CrossGlyph{}
		sc.Color = colFail
		sc.Radius = vg.Points(4)
		errp.Add(sc)
		errp.Legend.Add("hypothesis not held", sc)
	}
	lat.Y.Max, errp.Y.Max = maxLat*1.15, maxErr*1.15
	lat.X.Max, errp.X.Max = maxT, maxT
	return lat, errp, nil
}
