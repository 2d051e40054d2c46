package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/httpx"
)

// runRollout is `switchyard rollout start|status|promote|rollback|pause|resume|abort`:
// the gateway's rollouts through its admin API.
func runRollout(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rollout", "start|status|promote|rollback|pause|resume|abort --admin HOST:PORT [--upstream NAME] [flags]",
		"Roll out a new version of an upstream's targets through a gateway's admin API:\n"+
			"  start     begin a rollout: --upstream, --strategy, --targets or --selector, and the strategy's flags\n"+
			"  status    print every rollout, or --upstream's\n"+
			"  promote   move a canary to its next step; with --full (or for other strategies) make the new version the stable set now\n"+
			"  rollback  send all traffic back to the stable set\n"+
			"  pause     hold the rollout at its step; resume continues it\n"+
			"  abort     stop the rollout (as a rollback)", stderr)
	admin := fs.String("admin", "127.0.0.1:9901", "the gateway's admin address: HOST:PORT or http(s)://HOST:PORT")
	up := fs.String("upstream", "", "the upstream being rolled out")
	strategy := fs.String("strategy", "canary", "canary, blue-green, ab, rolling or shadow")
	targetsFlag := fs.String("targets", "", "the new version's addresses, comma-separated (static upstreams)")
	selector := fs.String("selector", "", "the new version's instances by metadata or tag, KEY=VALUE[,KEY=VALUE] (discovered upstreams)")
	steps := fs.String("steps", "", "canary traffic shares in percent, comma-separated (default 5,25,50,100)")
	pause := fs.Duration("pause", 0, "how long each canary step lasts before it is judged (default 1m)")
	minReq := fs.Int("min-requests", 0, "fewest canary requests a step is judged on (default 20)")
	maxInc := fs.String("max-error-rate-increase", "", "how far (0..1) the canary's error rate may exceed the stable's (default 0.01)")
	maxErr := fs.String("max-error-rate", "", "absolute bound (0..1) of the new version's error rate (default none)")
	p99Ratio := fs.Float64("max-p99-ratio", 0, "bound of the canary's p99 relative to the stable's (default 1.5)")
	p99Inc := fs.Duration("min-p99-increase", 0, "p99 increase always tolerated (default 50ms)")
	header := fs.String("header", "", "ab: the header whose value picks the cohort")
	cookie := fs.String("cookie", "", "ab: the cookie whose value picks the cohort")
	percent := fs.Float64("percent", 0, "ab: share of header/cookie values sent to the new version (default 50)")
	healthTimeout := fs.Duration("health-timeout", 0, "rolling: how long a new target may take to pass its health checks (default 1m)")
	drainTimeout := fs.Duration("drain-timeout", 0, "rolling: bound of the wait for a drained old target's requests (default 30s)")
	concurrency := fs.Int("concurrency", 0, "shadow: most copies in flight at once (default 32)")
	full := fs.Bool("full", false, "promote: skip a canary's remaining steps (the new version becomes the stable set now)")
	var verb string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		verb, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if verb == "" && fs.NArg() > 0 {
		verb = fs.Arg(0)
		if err := parseFlags(fs, fs.Args()[1:], stdout); err != nil {
			return err
		}
	}
	usage := func(format string, a ...any) error {
		fmt.Fprintf(stderr, "switchyard rollout: "+format+"\n", a...)
		fs.Usage()
		return errUsage
	}
	if verb == "" {
		return usage("missing command: expected start, status, promote, rollback, pause, resume or abort")
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q", fs.Arg(0))
	}
	base, err := adminBase("--admin", *admin)
	if err != nil {
		return usage("%v", err)
	}
	path := "/admin/rollouts"
	method := http.MethodPost
	var body []byte
	ok := http.StatusOK
	switch verb {
	case "start":
		if *up == "" {
			return usage("start: --upstream is required")
		}
		spec := map[string]any{"upstream": *up, "strategy": *strategy}
		if *targetsFlag != "" {
			spec["targets"] = splitList(*targetsFlag)
		}
		if *selector != "" {
			sel := map[string]string{}
			for _, kv := range splitList(*selector) {
				k, v, found := strings.Cut(kv, "=")
				if !found || k == "" || v == "" {
					return usage("start: invalid --selector entry %q: expected KEY=VALUE", kv)
				}
				sel[k] = v
			}
			spec["selector"] = sel
		}
		if *steps != "" {
			var ws []float64
			for _, s := range splitList(*steps) {
				w, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
				if err != nil {
					return usage("start: invalid --steps entry %q: expected percentages such as 5,25,50,100", s)
				}
				ws = append(ws, w)
			}
			spec["steps"] = ws
		}
		if *pause != 0 {
			spec["pause"] = pause.String()
		}
		analysis := map[string]any{}
		if *minReq != 0 {
			analysis["min_requests"] = *minReq
		}
		for _, f := range []struct{ flag, key, v string }{
			{"max-error-rate-increase", "max_error_rate_increase", *maxInc}, {"max-error-rate", "max_error_rate", *maxErr}} {
			if f.v == "" {
				continue
			}
			x, err := strconv.ParseFloat(f.v, 64)
			if err != nil {
				return usage("start: invalid --%s %q: expected a ratio from 0 to 1", f.flag, f.v)
			}
			analysis[f.key] = x
		}
		if *p99Ratio != 0 {
			analysis["max_p99_ratio"] = *p99Ratio
		}
		if *p99Inc != 0 {
			analysis["min_p99_increase"] = p99Inc.String()
		}
		if len(analysis) > 0 {
			spec["analysis"] = analysis
		}
		if *header != "" {
			spec["header"] = *header
		}
		if *cookie != "" {
			spec["cookie"] = *cookie
		}
		if *percent != 0 {
			spec["percent"] = *percent
		}
		if *healthTimeout != 0 {
			spec["health_timeout"] = healthTimeout.String()
		}
		if *drainTimeout != 0 {
			spec["drain_timeout"] = drainTimeout.String()
		}
		if *concurrency != 0 {
			spec["concurrency"] = *concurrency
		}
		body, _ = json.Marshal(spec)
		ok = http.StatusCreated
	case "status":
		method = http.MethodGet
		if *up != "" {
			path += "/" + url.PathEscape(*up)
		}
	case "promote", "rollback", "pause", "resume", "abort":
		if *up == "" {
			return usage("%s: --upstream is required", verb)
		}
		path += "/" + url.PathEscape(*up)
		if verb == "abort" {
			method = http.MethodDelete
		} else {
			path += "/" + verb
		}
		if *full {
			if verb != "promote" {
				return usage("%s: --full only applies to promote", verb)
			}
			path += "?full=true"
		}
	default:
		return usage("unknown command %q: expected start, status, promote, rollback, pause, resume or abort", verb)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	out, link, err := rolloutCall(ctx, client, method, base+path, body, ok, *admin)
	if err != nil {
		return err
	}
	if verb == "status" && *up == "" {
		// The list comes in cursor pages: follow rel="next" to the end
		// and print every rollout as one {"rollouts": [...]}.
		if out, err = rolloutPages(ctx, client, base, out, link, *admin); err != nil {
			return err
		}
	}
	_, err = stdout.Write(out)
	return err
}

// maxRolloutPages bounds the pages `rollout status` follows (a gateway
// whose links loop would otherwise keep it asking).
const maxRolloutPages = 10000

// rolloutPages reads the pages after first (whose Link values are link)
// and returns every page's rollouts as one indented {"rollouts": [...]}.
// A next link must stay on the admin API (base's scheme and host).
func rolloutPages(ctx context.Context, c *http.Client, base string, first []byte, link []string, admin string) ([]byte, error) {
	var all []json.RawMessage
	page, target := first, base+"/admin/rollouts"
	for n := 0; ; n++ {
		var v struct {
			Rollouts []json.RawMessage `json:"rollouts"`
		}
		if err := json.Unmarshal(page, &v); err != nil {
			return nil, fmt.Errorf("reading the admin API's rollouts at %s: %w", target, err)
		}
		all = append(all, v.Rollouts...)
		next := httpx.NextLink(link)
		if next == "" {
			break
		}
		if n+1 >= maxRolloutPages {
			return nil, fmt.Errorf("the admin API's rollout list has more than %d pages: stopped following its links", maxRolloutPages)
		}
		cur, _ := url.Parse(target)
		ref, err := url.Parse(next)
		if err != nil {
			return nil, fmt.Errorf("the admin API's Link rel=\"next\" %q: %w", next, err)
		}
		nu := cur.ResolveReference(ref)
		if nu.Scheme != cur.Scheme || nu.Host != cur.Host {
			return nil, fmt.Errorf("the admin API's Link rel=\"next\" %q leaves %s", next, admin)
		}
		target = nu.String()
		if page, link, err = rolloutCall(ctx, c, http.MethodGet, target, nil, http.StatusOK, admin); err != nil {
			return nil, err
		}
	}
	if all == nil {
		all = []json.RawMessage{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any{"rollouts": all}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// rolloutCall makes one admin API request and returns the answer's body
// and Link header values; a status other than ok is an error with the
// admin API's message.
func rolloutCall(ctx context.Context, client *http.Client, method, target string, body []byte, ok int, admin string) ([]byte, []string, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("building the request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(withAdminToken(req))
	if err != nil {
		return nil, nil, fmt.Errorf("asking the admin API at %s: %w", admin, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the admin API's answer: %w", err)
	}
	if resp.StatusCode != ok {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(out, &e) == nil && e.Error != "" {
			return nil, nil, fmt.Errorf("%s (%s)", e.Error, resp.Status)
		}
		return nil, nil, fmt.Errorf("admin API answered %s", resp.Status)
	}
	return out, resp.Header.Values("Link"), nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
