package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/load"
	"github.com/switchyard/switchyard/load/chart"
)

// headerFlags collects repeated -H flags.
type headerFlags []load.HeaderField

func (h *headerFlags) String() string { return "" }

func (h *headerFlags) Set(s string) error {
	f, err := load.ParseHeader(s)
	if err != nil {
		return err
	}
	*h = append(*h, f)
	return nil
}

// rateFlag is --rate: a number of requests per second. flag.Float64
// answers "--rate 100/s" with "parse error".
type rateFlag struct{ p *float64 }

func (f rateFlag) String() string {
	if f.p == nil || *f.p == 0 {
		return ""
	}
	return strconv.FormatFloat(*f.p, 'g', -1, 64)
}

func (f rateFlag) Set(s string) error {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return errors.New("want requests per second as a number, e.g. 100")
	}
	*f.p = v
	return nil
}

// durationFlag is a duration flag whose parse errors suggest a fix
// ("--duration 10": did you mean 10s?).
type durationFlag struct {
	d    *time.Duration
	unit string // suggested for a bare number
}

func (f durationFlag) String() string {
	if f.d == nil {
		return ""
	}
	return f.d.String()
}

func (f durationFlag) Set(s string) error {
	d, err := load.ParseDuration(s, f.unit)
	if err != nil {
		return err
	}
	*f.d = d
	return nil
}

// durationVar defines a duration flag with value def and a hint unit.
func durationVar(fs *flag.FlagSet, p *time.Duration, name string, def time.Duration, unit, usage string) {
	*p = def
	fs.Var(durationFlag{p, unit}, name, usage)
}

type loadFlags struct {
	rate        float64
	duration    time.Duration
	connections int
	headers     headerFlags
	method      string
	body        string
	targets     string
	timeout     time.Duration
	maxLag      time.Duration
	interval    time.Duration
	ramp        string
	step        time.Duration
	slo         string
	jsonOut     string
	hdrOut      string
	chartOut    string
	insecure    bool
}

func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f loadFlags
	fs := newFlagSet("load", "[flags] URL... | --targets FILE",
		"Open-model HTTP load generator: sends requests at --rate whatever the service does,\n"+
			"times each from its intended send time (no coordinated omission), and reports HDR\n"+
			"percentiles, throughput, errors and availability. --ramp steps the rate to find the\n"+
			"degradation point. See docs/load.md.", stderr)
	fs.Var(rateFlag{&f.rate}, "rate", "offered `rate` in requests per second (required unless --ramp)")
	durationVar(fs, &f.duration, "duration", load.DefaultDuration, "s", "how long to hold --rate (`D`: 500ms, 30s, 2m)")
	fs.IntVar(&f.connections, "connections", load.DefaultConnections, "keep-alive connections per target host (one request in flight each)")
	fs.IntVar(&f.connections, "c", load.DefaultConnections, "shorthand for --connections")
	fs.Var(&f.headers, "H", "request header 'Name: value' (repeatable)")
	fs.StringVar(&f.method, "method", "GET", "HTTP method")
	fs.StringVar(&f.body, "body", "", "request body, or @FILE to read it from a file")
	fs.StringVar(&f.targets, "targets", "", "`file` of targets, one 'URL [WEIGHT]' per line")
	durationVar(fs, &f.timeout, "timeout", load.DefaultTimeout, "s", "per-request timeout (connect, send, whole response)")
	durationVar(fs, &f.maxLag, "max-lag", load.DefaultMaxLag, "ms", "a request leaving later than this after its intended time counts as late")
	durationVar(fs, &f.interval, "interval", load.DefaultInterval, "s", "progress and timeline resolution")
	fs.StringVar(&f.ramp, "ramp", "", "step the rate: `START:END:STEP` in requests per second, e.g. 100:5000:250")
	durationVar(fs, &f.step, "step", load.DefaultStepDuration, "s", "how long each --ramp step lasts")
	fs.StringVar(&f.slo, "slo", "", "acceptable region, e.g. 'p99<100ms,errors<1%' (also max<, availability>)")
	fs.StringVar(&f.jsonOut, "json", "", "write the result as JSON to `FILE` ('-' for stdout; the summary then goes to stderr)")
	fs.StringVar(&f.hdrOut, "hdr", "", "write the corrected latency distribution to `FILE` in HdrHistogram percentile format")
	fs.StringVar(&f.chartOut, "chart", "", "draw charts to `FILE`.png or FILE.svg")
	fs.BoolVar(&f.insecure, "insecure", false, "skip TLS certificate verification for https targets")

	// A flag error prints the error and a pointer to --help, not the whole
	// flag list (which would bury the message); --help prints the list.
	fullUsage := fs.Usage
	fs.Usage = func() {}
	urls, err := parseInterleaved(fs, args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fullUsage()
	} else if err != nil {
		fmt.Fprintf(stderr, "\nRun 'switchyard load --help' for usage.\n")
	}
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	cfg, err := f.config(urls, set)
	if err != nil {
		fmt.Fprintf(stderr, "switchyard load: %v\n\nRun 'switchyard load --help' for usage.\n", err)
		return errUsage
	}

	out := stdout
	if f.jsonOut == "-" {
		out = stderr
	}
	tty := isTerminal(out)
	if tty {
		cfg.Progress = func(p load.Progress) {
			fmt.Fprintf(out, "\r\033[K%6.1fs  offered %.6g/s  throughput %.1f/s  p99 %s  requests %d  errors %d  late %d",
				p.Elapsed.Seconds(), p.OfferedRate, p.Throughput, p.P99.Round(10*time.Microsecond), p.Requests, p.Errors, p.Late)
		}
	}
	if cfg.Ramp != nil {
		fmt.Fprintf(out, "Ramping %g to %g req/s by %g, %s per step, against %s\n", cfg.Ramp.Start, cfg.Ramp.End, cfg.Ramp.Step, cfg.Ramp.StepDuration, describeTargets(cfg.Targets))
	} else {
		fmt.Fprintf(out, "Offering %g req/s for %s against %s\n", cfg.Rate, cfg.Duration, describeTargets(cfg.Targets))
	}

	res, runErr := load.Run(ctx, cfg)
	if tty {
		fmt.Fprint(out, "\r\033[K")
	}
	if res == nil {
		return runErr
	}
	if err := res.WriteSummary(out); err != nil {
		return err
	}
	if !tty {
		// The summary went to a file or pipe: repeat the warnings where a
		// person will see them.
		for _, w := range res.Warnings() {
			fmt.Fprintln(stderr, w)
		}
	}
	if err := f.writeOutputs(res, stdout); err != nil {
		return err
	}
	if runErr != nil {
		if errors.Is(runErr, context.Canceled) || errors.Is(runErr, context.DeadlineExceeded) {
			return fmt.Errorf("interrupted after %.1fs; partial results above", res.Duration)
		}
		return runErr
	}
	return verdict(res)
}

// Exit statuses of `switchyard load` besides 0 (all good) and 2 (usage).
const (
	exitFailed    = 1  // the run could not be done properly, or every request failed
	exitSLOFailed = 99 // the SLO was violated (as k6 exits on a failed threshold)
)

// verdict turns a finished run into the command's exit status, so that a
// CI job can gate on it: a run whose every request failed, or whose load
// the generator could not apply, is a failed run (1); a violated SLO is 99.
func verdict(res *load.Result) error {
	switch {
	case res.Requests == 0:
		return &exitError{exitFailed, errors.New("no request completed")}
	case res.Successes == 0:
		return &exitError{exitFailed, fmt.Errorf("every request failed (%d of %d: %s); check the URL and that the service is up",
			res.Errors, res.Requests, res.ErrorKindsSummary())}
	}
	if len(res.Steps) > 0 {
		// A ramp is expected to push past the SLO: it fails only if no
		// step met it. Late sends past the degradation point are expected.
		if res.SLOMet != nil && res.MaxRateWithinSLO == nil {
			return &exitError{exitSLOFailed, fmt.Errorf("SLO violated: no ramp step met %s", res.SLO)}
		}
		return nil
	}
	if res.SLOMet != nil && !*res.SLOMet {
		return &exitError{exitSLOFailed, fmt.Errorf("SLO violated: %s", strings.Join(res.SLOFailures, "; "))}
	}
	if !res.Generator.KeptUp {
		return &exitError{exitFailed, errors.New("the generator did not keep the offered rate, so the result does not show the service under that load (see the WARNING; raise --connections, or --max-lag, or give the generator more CPU)")}
	}
	return nil
}

// parseInterleaved parses flags that may come before, between or after the
// positional URLs (flag.Parse alone stops at the first URL).
func parseInterleaved(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	var positional []string
	for {
		if err := parseFlags(fs, args, stdout); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		// After a literal "--" everything is positional.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// config builds the run's configuration from the flags; set holds the
// names of the flags given on the command line.
func (f *loadFlags) config(urls []string, set map[string]bool) (load.Config, error) {
	cfg := load.Config{
		Rate:               f.rate,
		Duration:           f.duration,
		Connections:        f.connections,
		Timeout:            f.timeout,
		MaxLag:             f.maxLag,
		Interval:           f.interval,
		InsecureSkipVerify: f.insecure,
	}
	var errs []error
	// Combinations that cannot mean anything.
	if f.ramp != "" {
		for _, name := range []string{"rate", "duration"} {
			if set[name] {
				errs = append(errs, fmt.Errorf("--%s and --ramp: a ramp sets its own rates and runs each for --step; drop --%s", name, name))
			}
		}
	} else if set["step"] {
		errs = append(errs, errors.New("--step without --ramp: --step is the length of a ramp step; use --duration for a constant --rate"))
	}
	if set["c"] && set["connections"] {
		errs = append(errs, errors.New("-c and --connections both given: -c is short for --connections; give one"))
	}
	if strings.EqualFold(f.method, "HEAD") && f.body != "" {
		errs = append(errs, errors.New("--body with --method HEAD: a HEAD request carries no body"))
	}
	if f.duration <= 0 {
		errs = append(errs, fmt.Errorf("--duration: '%s': must be positive", f.duration))
	}
	if f.connections <= 0 {
		errs = append(errs, fmt.Errorf("--connections: '%d': must be at least 1", f.connections))
	}
	if f.timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout: '%s': must be positive", f.timeout))
	}
	if f.maxLag <= 0 {
		errs = append(errs, fmt.Errorf("--max-lag: '%s': must be positive", f.maxLag))
	}
	if f.step <= 0 {
		errs = append(errs, fmt.Errorf("--step: '%s': must be positive", f.step))
	}
	var body []byte
	if name, ok := strings.CutPrefix(f.body, "@"); ok {
		b, err := os.ReadFile(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("--body: %w", err))
		}
		body = b
	} else if f.body != "" {
		body = []byte(f.body)
	}
	var targets []load.Target
	for _, u := range urls {
		targets = append(targets, load.Target{URL: u, Weight: 1})
	}
	if f.targets != "" {
		file, err := os.Open(f.targets)
		if err != nil {
			errs = append(errs, fmt.Errorf("--targets: %w", err))
		} else {
			ts, err := load.ParseTargets(file)
			file.Close()
			if err != nil {
				errs = append(errs, fmt.Errorf("--targets: '%s': %w", f.targets, err))
			}
			targets = append(targets, ts...)
		}
	}
	if len(targets) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no target: give one or more URLs or --targets FILE"))
	}
	for i := range targets {
		targets[i].Method = strings.ToUpper(f.method)
		targets[i].Header = f.headers
		targets[i].Body = body
	}
	cfg.Targets = targets
	if f.ramp != "" {
		r, err := load.ParseRamp(f.ramp)
		if err != nil {
			errs = append(errs, fmt.Errorf("--ramp: %w", err))
		} else {
			r.StepDuration = f.step
			cfg.Ramp = r
		}
	} else if !set["rate"] {
		errs = append(errs, errors.New("--rate R is required (requests per second, e.g. --rate 1000), or --ramp START:END:STEP"))
	} else if f.rate <= 0 {
		errs = append(errs, fmt.Errorf("--rate: '%g': must be > 0 (or use --ramp)", f.rate))
	}
	slo, err := load.ParseSLO(f.slo)
	if err != nil {
		errs = append(errs, fmt.Errorf("--slo: %w", err))
	}
	cfg.SLO = slo
	if f.chartOut != "" {
		if _, err := chart.FormatOf(f.chartOut); err != nil {
			errs = append(errs, fmt.Errorf("--chart: %w", err))
		}
	}
	if len(errs) == 0 {
		if err := cfg.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return cfg, errors.Join(errs...)
}

func (f *loadFlags) writeOutputs(res *load.Result, stdout io.Writer) error {
	var errs []error
	if f.jsonOut == "-" {
		errs = append(errs, res.WriteJSON(stdout))
	} else if f.jsonOut != "" {
		errs = append(errs, writeFile(f.jsonOut, res.WriteJSON))
	}
	if f.hdrOut != "" {
		errs = append(errs, writeFile(f.hdrOut, res.WriteHDR))
	}
	if f.chartOut != "" {
		errs = append(errs, chart.WriteFile(f.chartOut, res))
	}
	return errors.Join(errs...)
}

func writeFile(path string, write func(io.Writer) error) error {
	file, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("creating output: %w", err)
	}
	if err := write(file); err != nil {
		file.Close()
		return fmt.Errorf("writing '%s': %w", path, err)
	}
	if err := file.Close(); err != nil {
		return fmt.Errorf("writing '%s': %w", path, err)
	}
	return nil
}

func describeTargets(ts []load.Target) string {
	if len(ts) == 1 {
		return ts[0].Method + " " + ts[0].URL
	}
	return fmt.Sprintf("%d targets", len(ts))
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
