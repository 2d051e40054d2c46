package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"slices"
	"strings"
	"time"

	"github.com/switchyard/switchyard/hitch/sim"
	"github.com/switchyard/switchyard/load"
	"github.com/switchyard/switchyard/tlsconf"
)

// runHitchCheck runs every use case of the notes against a running Hitch.
func runHitchCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("hitch check", "[--url URL] [--admin URL] [--case NAME ...]",
		"Run every use case of the notes against a running Hitch through its gateway, as a\n"+
			"user would: registration and login, the roles' limits, nearby drivers, a match,\n"+
			"ride and payment, the receipt and earnings, cancellation, a declined payment (via\n"+
			"the card processor's faults, found through --admin) and a ride with no driver.\n"+
			"Exits 1 if any case fails.", stderr)
	url := fs.String("url", "http://127.0.0.1:8080", "the gateway's base `URL`")
	adminURL := fs.String("admin", "http://127.0.0.1:9901", "the gateway's admin `URL` (to find the card processor; \"\" skips the declined case)")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for each asynchronous outcome")
	noDriver := fs.Duration("no-driver-wait", 90*time.Second, "how long to wait for no_driver (matching's timeout)")
	var cases stringList
	fs.Var(&cases, "case", "run only this `case` (repeatable)")
	var tf tlsFlags
	tf.register(fs)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if err := wantBaseURL("--url", *url); err != nil {
		return err
	}
	hc, err := tf.client()
	if err != nil {
		return err
	}
	if *adminURL != "" {
		if err := wantBaseURL("--admin", *adminURL); err != nil {
			return err
		}
	}
	if err := knownCases(cases); err != nil {
		return err
	}
	cfg := sim.CheckConfig{BaseURL: *url, Wait: *wait, NoDriverWait: *noDriver, Cases: cases, HTTPClient: hc}
	if *adminURL != "" {
		cfg.Decline = declineVia(*adminURL, hc)
	}
	results := sim.Check(ctx, cfg)
	failed := 0
	for _, r := range results {
		switch {
		case r.Skipped != "":
			fmt.Fprintf(stdout, "SKIP  %-26s %s\n", r.Name, r.Skipped)
		case r.Err != nil:
			failed++
			fmt.Fprintf(stdout, "FAIL  %-26s %s (%s)\n", r.Name, r.Err, r.Took.Round(time.Millisecond))
		default:
			fmt.Fprintf(stdout, "ok    %-26s %s\n", r.Name, r.Took.Round(time.Millisecond))
		}
	}
	if failed > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d of %d use cases failed", failed, len(results))}
	}
	return nil
}

// wantBaseURL checks a client's URL flag: hitch up takes host:port, its
// clients take http://host:port, and a host:port here would otherwise
// fail every request with a URL parser's message.
func wantBaseURL(flag, v string) error {
	u, err := neturl.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s %q: want a URL such as http://127.0.0.1:8080 (http:// or https://, then HOST:PORT)", flag, v)
	}
	return nil
}

// knownCases refuses a --case that names no use case, which would
// otherwise run nothing and pass.
func knownCases(cases []string) error {
	names := sim.CaseNames()
	for _, c := range cases {
		if !slices.Contains(names, c) {
			return fmt.Errorf("--case %q: no such use case; want one of %q", c, names)
		}
	}
	return nil
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// declineVia finds the card processor through hitch up's process list and
// makes it decline every card until restored.
// hc nil is http.DefaultClient; with TLS (hitch up --secure) the card
// processor is called over HTTPS with hc's client certificate.
func declineVia(adminURL string, hc *http.Client) func(ctx context.Context) (func(), error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	scheme := "http://"
	if strings.HasPrefix(adminURL, "https://") {
		scheme = "https://"
	}
	return func(ctx context.Context) (func(), error) {
		addr, err := processAddrWith(ctx, hc, adminURL, "cardprocessor")
		if err != nil {
			return nil, err
		}
		set := func(body string) error {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, scheme+addr+"/v1/faults", bytes.NewBufferString(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode >= 300 {
				b, _ := io.ReadAll(resp.Body)
				return fmt.Errorf("setting the card processor's faults: %d %s", resp.StatusCode, b)
			}
			return nil
		}
		if err := set(`{"decline_rate": 1}`); err != nil {
			return nil, err
		}
		return func() { set(`{"decline_rate": 0}`) }, nil
	}
}

// processAddr reads GET /admin/hitch/processes and returns the address of
// the first healthy process of service.
func processAddr(ctx context.Context, adminURL, service string) (string, error) {
	return processAddrWith(ctx, http.DefaultClient, adminURL, service)
}

// processAddrWith is processAddr with client hc (and the admin token of
// $SWITCHYARD_ADMIN_TOKEN, if set).
func processAddrWith(ctx context.Context, hc *http.Client, adminURL, service string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(adminURL, "/")+"/admin/hitch/processes", nil)
	resp, err := hc.Do(withAdminToken(req))
	if err != nil {
		return "", fmt.Errorf("listing hitch processes: %w", err)
	}
	defer resp.Body.Close()
	var list struct {
		Processes []struct {
			Name    string `json:"name"`
			Address string `json:"address"`
			Health  string `json:"health"`
		} `json:"processes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return "", fmt.Errorf("decoding the process list: %w", err)
	}
	for _, p := range list.Processes {
		if p.Name == service && p.Address != "" && p.Health == "up" {
			return p.Address, nil
		}
	}
	return "", fmt.Errorf("no %s process in %s/admin/hitch/processes", service, adminURL)
}

// runHitchSim drives simulated riders and drivers.
func runHitchSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("hitch sim", "[--url URL] [--drivers 500] [--riders 2000] [--duration 1m]",
		"Drive realistic traffic through a running Hitch's gateway: drivers announce routes\n"+
			"along the city's avenues, move along them reporting positions and take the\n"+
			"passengers they are matched with; riders ask for rides, follow them, sometimes\n"+
			"cancel, and read their receipts. Prints counts and latencies as it goes.", stderr)
	var cfg sim.Config
	fs.StringVar(&cfg.BaseURL, "url", "http://127.0.0.1:8080", "the gateway's base `URL`")
	fs.IntVar(&cfg.Drivers, "drivers", 500, "simulated drivers")
	fs.IntVar(&cfg.Riders, "riders", 2000, "simulated riders")
	fs.DurationVar(&cfg.Duration, "duration", time.Minute, "how long to run")
	fs.DurationVar(&cfg.PositionEvery, "position-every", 3*time.Second, "how often a moving driver reports its position")
	fs.DurationVar(&cfg.RideEvery, "ride-every", 30*time.Second, "mean time between a rider's rides")
	fs.Float64Var(&cfg.Speed, "speed", 60, "simulated seconds of driving per real second")
	fs.DurationVar(&cfg.ReportEvery, "report-every", 5*time.Second, "how often to print progress")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if err := wantBaseURL("--url", cfg.BaseURL); err != nil {
		return err
	}
	cfg.Report = func(s sim.Snapshot) { fmt.Fprint(stdout, s.String()) }
	snap, err := sim.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "== final\n%s", snap.String())
	return nil
}

// runHitchBench measures Hitch with the load generator.
func runHitchBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("hitch bench", "[--url URL] [--scenario nearby,location,rides] [--ramp START:END:STEP] [--step 5s] [--slo ...] [--out DIR]",
		"Measure a running Hitch through its gateway with the open-model load generator:\n"+
			"nearby search and location updates at rising rates (degradation point and the\n"+
			"highest rate within the SLO, with charts), then the ride flow by simulation.", stderr)
	var cfg sim.BenchConfig
	fs.StringVar(&cfg.BaseURL, "url", "http://127.0.0.1:8080", "the gateway's base `URL`")
	scen := fs.String("scenario", "nearby,location,rides", "comma-separated `scenarios`")
	ramp := fs.String("ramp", "500:8000:500", "rates `START:END:STEP` in requests per second")
	step := fs.Duration("step", 5*time.Second, "how long each ramp step lasts")
	fs.StringVar(&cfg.SLO, "slo", "p99<100ms,errors<0.1%", "the `SLO` each step must meet")
	fs.IntVar(&cfg.Drivers, "drivers", 200, "drivers reporting positions")
	fs.IntVar(&cfg.Connections, "connections", 256, "load generator connections")
	fs.DurationVar(&cfg.RideDuration, "ride-duration", 30*time.Second, "how long the ride-flow simulation runs")
	fs.StringVar(&cfg.Out, "out", "", "`directory` for each scenario's JSON result and chart")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if err := wantBaseURL("--url", cfg.BaseURL); err != nil {
		return err
	}
	r, err := load.ParseRamp(*ramp)
	if err != nil {
		fmt.Fprintf(stderr, "switchyard hitch bench: --ramp: %v\n", err)
		return errUsage
	}
	r.StepDuration = *step
	cfg.Ramp = r
	cfg.Scenarios = strings.Split(*scen, ",")
	cfg.Log = stdout
	_, err = sim.Bench(ctx, cfg)
	return err
}

// tlsFlags are a client's --cacert, --cert and --key (hitch up --secure
// prints them).
type tlsFlags struct{ ca, cert, key string }

func (t *tlsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.ca, "cacert", "", "CA certificate `file` to verify https:// servers with (hitch up --secure: DATA/pki/ca.crt)")
	fs.StringVar(&t.cert, "cert", "", "client certificate `file` to present (hitch up --secure: DATA/pki/operator.crt)")
	fs.StringVar(&t.key, "key", "", "private key `file` of --cert")
}

// client is an HTTP client with the flags' TLS settings; nil when none
// is set (the defaults).
func (t *tlsFlags) client() (*http.Client, error) {
	if t.ca == "" && t.cert == "" && t.key == "" {
		return nil, nil
	}
	if (t.cert == "") != (t.key == "") {
		return nil, errors.New("--cert and --key go together")
	}
	var cfg *tls.Config
	if t.ca != "" {
		c, err := tlsconf.ClientConfig(t.ca, t.cert, t.key)
		if err != nil {
			return nil, err
		}
		cfg = c
	} else {
		pair, err := tls.LoadX509KeyPair(t.cert, t.key)
		if err != nil {
			return nil, fmt.Errorf("--cert %s, --key %s: %w", t.cert, t.key, err)
		}
		cfg = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg,
		MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}}, nil
}
