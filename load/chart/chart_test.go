package chart

import (
	"bytes"
	"encoding/xml"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/switchyard/switchyard/load"
)

func runResult() *load.Result {
	c, u := hdrhistogram.New(1, 3_600_000_000, 3), hdrhistogram.New(1, 3_600_000_000, 3)
	for i := int64(1); i <= 10000; i++ {
		c.RecordValue(1000 + i*i/100)
		u.RecordValue(1000 + i)
	}
	res := &load.Result{CorrectedHistogram: c, UncorrectedHistogram: u}
	for i := range 10 {
		res.Timeline = append(res.Timeline, load.Interval{Time: float64(i + 1), P50: 1, P99: 2 + float64(i), Max: 5 + float64(i)})
	}
	return res
}

func rampResult() *load.Result {
	res := runResult()
	for i := range 8 {
		rate := float64(100 * (i + 1))
		res.Steps = append(res.Steps, load.Step{OfferedRate: rate, Throughput: min(rate, 500), P50: 1, P99: 2 + float64(i*i)})
	}
	d := 600.0
	res.DegradationRate = &d
	return res
}

func TestWriteFileProducesValidImages(t *testing.T) {
	dir := t.TempDir()
	for name, res := range map[string]*load.Result{"run": runResult(), "ramp": rampResult(), "empty": {}} {
		if name == "empty" {
			// An interrupted run may have no responses at all.
			res.CorrectedHistogram = hdrhistogram.New(1, 3_600_000_000, 3)
			res.UncorrectedHistogram = hdrhistogram.New(1, 3_600_000_000, 3)
		}
		t.Run(name, func(t *testing.T) {
			pngPath := filepath.Join(dir, name+".png")
			svgPath := filepath.Join(dir, name+".svg")
			if err := WriteFile(pngPath, res); err != nil {
				t.Fatal(err)
			}
			if err := WriteFile(svgPath, res); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(pngPath)
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("invalid PNG: %v", err)
			}
			if r := img.Bounds(); r.Dx() < 400 || r.Dy() < 400 {
				t.Errorf("PNG is %v", r)
			}
			b, err = os.ReadFile(svgPath)
			if err != nil {
				t.Fatal(err)
			}
			var root struct{ XMLName xml.Name }
			if err := xml.Unmarshal(b, &root); err != nil || root.XMLName.Local != "svg" {
				t.Fatalf("invalid SVG (root %q): %v", root.XMLName.Local, err)
			}
			if !bytes.Contains(b, []byte("<path")) && !bytes.Contains(b, []byte("<line")) {
				t.Error("SVG draws nothing")
			}
		})
	}
}

func TestFormatOf(t *testing.T) {
	if f, err := FormatOf("x/Y.PNG"); err != nil || f != PNG {
		t.Errorf("FormatOf(.PNG) = %q, %v", f, err)
	}
	if _, err := FormatOf("chart.jpg"); !errors.Is(err, ErrFormat) {
		t.Errorf("FormatOf(.jpg) err = %v, want ErrFormat", err)
	}
}
