package gateway

import (
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/breaker"
	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/httpserver"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/retry"
)

// docBlock returns the first ```yaml block after marker in docs/gateway.md.
func docBlock(t *testing.T, marker string) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/gateway.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatalf("docs/gateway.md lacks %q", marker)
	}
	s = s[i:]
	start := strings.Index(s, "```yaml\n")
	if start < 0 {
		t.Fatal("no yaml block after the marker")
	}
	s = s[start+len("```yaml\n"):]
	return s[:strings.Index(s, "```")]
}

// TestDocDefaultsMatchLoader parses the "every key with its default" block
// of docs/gateway.md and checks each value against the default the
// gateway really applies, so the docs cannot drift. Every leaf of the
// block must be either checked here or listed as having no default.
func TestDocDefaultsMatchLoader(t *testing.T) {
	block := docBlock(t, "Every load-balancer key, each showing its default")
	cfg, err := ParseConfig([]byte(block), "docs/gateway.md")
	if err != nil {
		t.Fatalf("the doc block does not load: %v", err)
	}
	u := cfg.Upstreams["rides"]
	bc := breaker.Config{}.WithDefaults()
	rc := retry.Config{}.WithDefaults()
	hc := health.CheckConfig{}.WithDefaults()
	oc := health.OutlierConfig{}.WithDefaults()
	d := func(v time.Duration) time.Duration { return v }
	// path -> (value in the doc, default applied)
	checks := map[string][2]any{
		"access_log":                   {cfg.AccessLog, DefaultAccessLog},
		"h2c":                          {cfg.H2C, false},
		"server.read_header_timeout":   {d(cfg.Server.ReadHeaderTimeout), DefaultReadHeaderTimeout},
		"server.idle_timeout":          {d(cfg.Server.IdleTimeout), DefaultIdleTimeout},
		"server.shutdown_timeout":      {d(cfg.Server.ShutdownTimeout), DefaultShutdownTimeout},
		"server.max_body_buffer":       {cfg.Server.MaxBodyBuffer, DefaultMaxBodyBuffer},
		"server.max_body_buffer_total": {cfg.Server.MaxBodyBufferTotal, int64(proxy.DefaultMaxBodyBufferTotal)},
		"server.read_body_timeout":     {d(cfg.Server.ReadBodyTimeout), httpserver.DefaultReadBodyTimeout},
		"server.write_timeout":         {d(cfg.Server.WriteTimeout), httpserver.DefaultWriteTimeout},
		"server.max_header_bytes":      {cfg.Server.MaxHeaderBytes, httpserver.DefaultMaxHeaderBytes},
		"server.http1":                 {cfg.Server.HTTP1, DefaultHTTP1},
		"server.http2":                 {cfg.Server.HTTP2, DefaultHTTP2},
		"upstreams.rides.balance":      {u.Policy, balance.DefaultPolicy},
		"upstreams.rides.hash_on":      {u.HashOn, balance.DefaultHashOn},
		"upstreams.rides.cookie.name":  {u.Cookie.Name, balance.DefaultCookie},
		"upstreams.rides.cookie.ttl":   {d(u.Cookie.TTL), time.Duration(0)},

		"upstreams.rides.targets[0].weight": {u.Targets[0].Weight, DefaultWeight},

		"upstreams.rides.health_check.path":            {u.HealthCheck.Path, hc.Path},
		"upstreams.rides.health_check.interval":        {d(u.HealthCheck.Interval), hc.Interval},
		"upstreams.rides.health_check.timeout":         {d(u.HealthCheck.Timeout), hc.Timeout},
		"upstreams.rides.health_check.healthy_after":   {u.HealthCheck.HealthyAfter, hc.HealthyAfter},
		"upstreams.rides.health_check.unhealthy_after": {u.HealthCheck.UnhealthyAfter, hc.UnhealthyAfter},

		"upstreams.rides.outlier.consecutive_failures": {u.Outlier.ConsecutiveFailures, oc.ConsecutiveFailures},
		"upstreams.rides.outlier.ejection":             {d(u.Outlier.Ejection), oc.Ejection},
		"upstreams.rides.outlier.max_ejection":         {d(u.Outlier.MaxEjection), oc.MaxEjection},
		"upstreams.rides.outlier.max_ejected":          {u.Outlier.MaxEjected, oc.MaxEjected},

		"upstreams.rides.circuit_breaker.failure_ratio":    {u.CircuitBreaker.FailureRatio, bc.FailureRatio},
		"upstreams.rides.circuit_breaker.min_requests":     {u.CircuitBreaker.MinRequests, bc.MinRequests},
		"upstreams.rides.circuit_breaker.window":           {d(u.CircuitBreaker.Window), bc.Window},
		"upstreams.rides.circuit_breaker.open_for":         {d(u.CircuitBreaker.OpenFor), bc.OpenFor},
		"upstreams.rides.circuit_breaker.half_open_probes": {u.CircuitBreaker.HalfOpenProbes, bc.HalfOpenProbes},

		"upstreams.rides.retry.attempts":               {u.Retry.Attempts, rc.Attempts},
		"upstreams.rides.retry.backoff":                {u.Retry.Backoff, rc.Backoff},
		"upstreams.rides.retry.base":                   {d(u.Retry.Base), rc.Base},
		"upstreams.rides.retry.cap":                    {d(u.Retry.Cap), rc.Cap},
		"upstreams.rides.retry.jitter":                 {u.Retry.Jitter, rc.Jitter},
		"upstreams.rides.retry.on":                     {u.Retry.On, rc.On},
		"upstreams.rides.retry.budget":                 {u.Retry.Budget, rc.Budget},
		"upstreams.rides.retry.min_retries_per_second": {u.Retry.MinRetriesPerSecond, rc.MinRetriesPerSecond},
		"upstreams.rides.virtual_nodes":                {u.VirtualNodes, balance.DefaultVirtualNodes},
		"upstreams.rides.load_factor":                  {u.LoadFactor, balance.DefaultLoadFactor},
		"upstreams.rides.balance_fallback":             {u.Fallback, balance.DefaultFallback},
		"upstreams.rides.health_check.expect_status":   {u.HealthCheck.ExpectStatus, hc.ExpectStatus},
		"upstreams.rides.health_check.host":            {u.HealthCheck.Host, ""},

		"upstreams.rides.timeout.connect":  {d(u.Timeout.Connect), proxy.DefaultConnectTimeout},
		"upstreams.rides.timeout.header":   {d(u.Timeout.Header), time.Duration(0)},
		"upstreams.rides.timeout.response": {d(u.Timeout.Response), proxy.DefaultResponseTimeout},
		"upstreams.rides.max_idle_conns":   {u.MaxIdleConns, DefaultMaxIdleConns},
		"upstreams.rides.max_in_flight":    {u.MaxInFlight, 0},
		"routes[0].name":                   {cfg.Routes[0].Name, "route0"},
	}
	noDefault := map[string]bool{
		"listen": true, "admin": true, "tls.cert": true, "tls.key": true,
		"upstreams.rides.targets[0].address": true,
		"routes[0].upstream":                 true, "routes[0].strip_prefix": true,
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(block), &doc); err != nil {
		t.Fatal(err)
	}
	leaves := map[string]bool{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			walk(n.Content[0], path)
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := n.Content[i].Value
				if path != "" {
					p = path + "." + p
				}
				walk(n.Content[i+1], p)
			}
		case yaml.SequenceNode:
			if strings.HasSuffix(path, ".on") || strings.HasSuffix(path, ".expect_status") {
				leaves[path] = true // a list value
				return
			}
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		default:
			leaves[path] = true
		}
	}
	walk(&doc, "")
	for p := range leaves {
		if strings.HasPrefix(p, "routes[0].match.") {
			continue // examples of matching, no defaults
		}
		c, ok := checks[p]
		switch {
		case ok:
			if !reflect.DeepEqual(c[0], c[1]) {
				t.Errorf("docs/gateway.md shows %s: %v, but the default is %v", p, c[0], c[1])
			}
		case !noDefault[p]:
			t.Errorf("docs/gateway.md shows %s, which this test neither checks nor lists as having no default", p)
		}
	}
	for p := range checks {
		if !leaves[p] {
			t.Errorf("docs/gateway.md no longer shows %s", p)
		}
	}
	// The server defaults must be what the gateway's listener gets.
	empty, err := ParseConfig([]byte("listen: 127.0.0.1:0\nupstreams: {a: {targets: [{address: 'h:1'}]}}\nroutes: [{upstream: a}]\n"), "min.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{log: slog.New(slog.DiscardHandler)}
	srv, _, err := g.newServer(empty, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rv := reflect.ValueOf(srv).Elem(); rv.FieldByName("ReadHeaderTimeout").Interface() != DefaultReadHeaderTimeout ||
		rv.FieldByName("IdleTimeout").Interface() != DefaultIdleTimeout {
		t.Errorf("listener timeouts %v / %v differ from the documented defaults", rv.FieldByName("ReadHeaderTimeout"), rv.FieldByName("IdleTimeout"))
	}
}
