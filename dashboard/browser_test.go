package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/httpapi"
	"github.com/switchyard/switchyard/dashboard"
	"github.com/switchyard/switchyard/gateway"
)

// Names an attacker could put in a config, a registry or a broker: if the
// page ever parsed one as HTML, an element would appear or a dialog open.
const (
	xssRoute    = `<img src=x onerror=alert(1)>`
	xssUpstream = `<svg onload=alert(2)>`
	xssProcess  = `<script>alert(3)</script>`
)

// browser starts headless Chromium (Debian's chromium; the test skips
// without one) and returns a tab, and a counter of JavaScript dialogs
// (alert, confirm, prompt) the tab opened.
func browser(t *testing.T) (context.Context, *atomic.Int64) {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: not in -short")
	}
	path := os.Getenv("HITCH_CHROMIUM")
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path != "" {
			break
		}
		path, _ = exec.LookPath(name)
	}
	if path == "" {
		t.Skip("no chromium binary on PATH (apt-get install chromium, or set HITCH_CHROMIUM): the browser test cannot run")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	t.Cleanup(cancel)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1400, 1000))
	alloc, allocCancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(allocCancel)
	tab, tabCancel := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(tabCancel)
	var dialogs atomic.Int64
	if err := chromedp.Listen(tab, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			dialogs.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	return tab, &dialogs
}

// run runs actions in tab, failing the test with the page's text.
func run(t *testing.T, tab context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(tab, actions...); err != nil {
		text, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("%s: %v\npage text:\n%s", what, err, text)
	}
}

func poll(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))
}

// text is a JS expression: the text of the first element matching sel, or "".
func text(sel string) string {
	return fmt.Sprintf(`((document.querySelector(%q)||{}).textContent||"")`, sel)
}

// noInjection checks that no untrusted name became markup: no image,
// no script but the page's own, no inline SVG besides the topology's
// own shapes, no CSP violation, no dialog.
func noInjection(t *testing.T, tab context.Context, dialogs *atomic.Int64) {
	t.Helper()
	type found struct{ Imgs, Scripts, Foreign, Violations int }
	f, err := chromedp.Run(tab, chromedp.Evaluate[found](`({
		Imgs: document.querySelectorAll("img, image").length,
		Scripts: document.querySelectorAll("script").length,
		Foreign: document.querySelectorAll("#topology svg, [onload], [onerror]").length,
		Violations: window.violations || 0})`))
	if err != nil {
		t.Fatal(err)
	}
	if f.Imgs != 0 || f.Scripts != 1 || f.Foreign != 0 || f.Violations != 0 || dialogs.Load() != 0 {
		t.Errorf("untrusted names became markup: %+v, dialogs %d", f, dialogs.Load())
	}
}

// watchViolations counts the page's CSP violations from now on (an
// injected inline handler would be one).
const watchViolations = `window.violations = 0; document.addEventListener("securitypolicyviolation", () => window.violations++); true`

// backend is a real HTTP server whose status can be switched.
type backend struct {
	srv    *httptest.Server
	status atomic.Int32
}

func newBackend(t *testing.T) *backend {
	b := &backend{}
	b.status.Store(200)
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(b.status.Load()))
		_, _ = io.WriteString(w, "hello")
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

// TestBrowserGateway runs a real gateway with two backends and a real
// broker, and watches the dashboard in Chromium: the topology appears; a
// target that starts answering 500 is shown with its circuit open; a queue
// nobody consumes fills and the depth shown rises; hostile route, upstream
// and process names show as text and never run.
func TestBrowserGateway(t *testing.T) {
	tab, dialogs := browser(t)
	good, flaky := newBackend(t), newBackend(t)

	b, err := engine.Open(engine.Config{Dir: t.TempDir(), TickInterval: broker.Duration(5 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	brokerSrv := httptest.NewServer(httpapi.New(b))
	t.Cleanup(func() { brokerSrv.Close(); b.Close() })
	if err := b.Declare("jobs", broker.QueueConfig{}); err != nil {
		t.Fatal(err)
	}

	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
admin: 127.0.0.1:0
access_log: "off"
tracing: {disabled: true}
dashboard:
  brokers: [%q]
upstreams:
  pool:
    targets: [{address: %q}, {address: %q}]
    # 100%% failures open a target's circuit; the pool as a whole (50%%) stays closed.
    circuit_breaker: {failure_ratio: 0.9, min_requests: 5, window: 10s, open_for: 1m, half_open_probes: 1}
  %q:
    targets: [{address: %q}]
routes:
  - name: api
    match: {path_prefix: /api}
    upstream: pool
  - name: %q
    match: {path_prefix: /x}
    upstream: %q
`, brokerSrv.URL, good.addr(), flaky.addr(), xssUpstream, good.addr(), xssRoute, xssUpstream)
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	processes := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"processes":[{"name":%q,"replica":1,"pid":42,"address":%q,"health":"up","role":"service"}]}`, xssProcess, flaky.addr())
	})
	g, err := gateway.New(gateway.Options{ConfigPath: path, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		AdminExtensions: map[string]http.Handler{"GET /admin/test/processes": processes}, DashboardProcesses: "/admin/test/processes"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("gateway did not stop within 10s (a dashboard stream holding the admin listener?)")
		}
	})
	select {
	case <-g.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	proxyURL, adminURL := "http://"+g.Addr().String(), "http://"+g.AdminAddr().String()

	// The topology: clients -> gateway -> routes -> upstreams -> targets -> broker queues.
	flakyNode := fmt.Sprintf(`[data-kind=target][data-name=%q]`, flaky.addr())
	run(t, tab, "the page shows the topology",
		chromedp.Navigate(adminURL+dashboard.PathPage),
		poll(`document.querySelector("#conn").textContent === "live"`),
		poll(`document.querySelector("[data-kind=client]") && document.querySelector("[data-kind=gateway]")`),
		poll(`document.querySelector('[data-kind=route][data-name="api"]') && document.querySelector('[data-kind=upstream][data-name="pool"]')`),
		poll(fmt.Sprintf(`document.querySelectorAll("[data-kind=target]").length === 3 && !!document.querySelector(%q)`, flakyNode)),
		poll(`!!document.querySelector('[data-kind=queue][data-name="jobs"]')`),
		poll(`document.querySelector("#slos-status").textContent === "not available"`),
		chromedp.Evaluate[chromedp.Void](watchViolations))

	// Hostile names are text.
	run(t, tab, "hostile names shown as text",
		poll(fmt.Sprintf(`document.querySelector("#routes").textContent.includes(%q)`, xssRoute)),
		poll(fmt.Sprintf(`document.querySelector("#targets").textContent.includes(%q)`, xssUpstream)),
		poll(fmt.Sprintf(`document.querySelector("#processes").textContent.includes(%q)`, xssProcess)),
		poll(fmt.Sprintf(`document.querySelector('[data-kind=route][data-name=%q]') !== null`, xssRoute)))

	// A target starts failing: its circuit opens, and the page shows it.
	flaky.status.Store(500)
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < 40; i++ {
		resp, err := client.Get(proxyURL + "/api/ride")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	row := fmt.Sprintf(`tr[data-target=%q]`, flaky.addr())
	run(t, tab, "the breaker is shown open",
		poll(fmt.Sprintf(`document.querySelector(%q).classList.contains("circuit-open")`, flakyNode)),
		poll(fmt.Sprintf(`(document.querySelector(%q)||{}).dataset.state === "circuit-open"`, row)),
		poll(fmt.Sprintf(`%s.includes("open")`, text(row+" td:nth-child(5)"))),
		poll(fmt.Sprintf(`%s.includes(%q)`, text(row+" td:nth-child(3)"), xssProcess)))

	// A queue nobody consumes fills: the depth shown rises.
	publish := func(n int) {
		for i := 0; i < n; i++ {
			resp, err := client.Post(brokerSrv.URL+"/v1/queues/jobs/messages", "application/octet-stream", strings.NewReader("job"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode >= 300 {
				t.Fatalf("publish: %s", resp.Status)
			}
		}
	}
	depth := text(`tr[data-queue="jobs"] td:nth-child(3)`)
	run(t, tab, "the queue is empty", poll(depth+` === "0"`))
	publish(5)
	run(t, tab, "the depth rises to 5", poll(depth+` === "5"`))
	publish(7)
	run(t, tab, "the depth rises to 12", poll(depth+` === "12"`),
		poll(`document.querySelector('[data-kind=queue][data-name="jobs"]').classList.contains("backlog")`))

	noInjection(t, tab, dialogs)
	screenshot(t, tab, "gateway.png")
}

// screenshot keeps a picture of the page in $DASHBOARD_SCREENSHOTS, for
// people, when set.
func screenshot(t *testing.T, tab context.Context, name string) {
	dir := os.Getenv("DASHBOARD_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil || os.WriteFile(filepath.Join(dir, name), png, 0o644) != nil {
		t.Errorf("screenshot %s: %v", name, err)
	}
}

// TestBrowserPanels renders the operations panels from the admin
// contract's shapes (SLOs with a firing alert, a canary rollout, a fault,
// a failed trace) with hostile names, says "not available" where a
// source is missing, and frees the event stream when the page goes.
func TestBrowserPanels(t *testing.T) {
	tab, dialogs := browser(t)
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	answers := map[string]string{
		"/admin/status": `{"config_file":"g.yaml","routes":[{"name":"api","upstream":"rides"}],
			"upstreams":[{"name":"rides","balance":"round_robin","targets":[{"address":"127.0.0.1:9001","healthy":true,"available":true,"circuit":"closed"},
			{"address":"127.0.0.1:9002","healthy":true,"available":true,"draining":true,"circuit":"half-open"}]}]}`,
		"/admin/slos": `{"slos":[{"name":"<img src=x onerror=alert(4)>","kind":"availability","route":"api","objective":0.999,"window":"672h0m0s",
			"good":9990,"total":10000,"sli":0.999,"budget_remaining":-0.2,"alerts":[{"name":"fast-burn","severity":"page","burn_rate":14.4,
			"long_window":"1h0m0s","short_window":"5m0s","long_burn":15.2,"short_burn":20.1,"firing":true,"since":"2026-12-04T21:30:00Z"}]}]}`,
		"/admin/rollouts": `{"rollouts":[{"upstream":"rides","strategy":"canary","state":"rolled_back","step":2,"steps":4,"canary_weight":25,
			"stable":["127.0.0.1:9001"],"canary":["127.0.0.1:9002"],"analysis":{"stable":{"requests":100,"error_rate":0,"p99_ms":12.5},
			"canary":{"requests":30,"error_rate":0.2,"p99_ms":40.1},"verdict":"fail","reason":"<b onmouseover=alert(5)>canary error rate 0.2</b>"}}]}`,
		"/admin/faults": `{"faults":[{"route":"api","active":true,"delay":"200ms","delay_percent":10,"abort_status":503,"abort_percent":5,
			"header":"x-switchyard-fault","injected_delays":12,"injected_aborts":3}]}`,
		"/admin/traces": `{"traces":[{"trace_id":"` + id + `","root":"<iframe src=javascript:alert(6)>","service":"gw","start":"2026-12-04T21:00:00Z",
			"duration_ns":1500000000,"error":true,"slow":true}]}`,
	}
	admin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := answers[r.URL.Path]
		if !ok {
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
			return
		}
		_, _ = io.WriteString(w, body)
	})
	d, err := dashboard.New(dashboard.Options{Sources: dashboard.FromAdmin(admin, ""), Interval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/dashboard", d)
	mux.Handle("/admin/dashboard/", d)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { d.Close(); srv.Close() })

	run(t, tab, "the panels render the contract's shapes",
		chromedp.Navigate(srv.URL+dashboard.PathPage),
		poll(`document.querySelector("#conn").textContent === "live"`),
		chromedp.Evaluate[chromedp.Void](watchViolations),
		poll(`document.querySelector("#slos").textContent.includes("<img src=x onerror=alert(4)>")`),
		poll(`document.querySelector("tr[data-slo]").dataset.firing === "true"`),
		poll(`document.querySelector("#slos").textContent.includes("fast-burn")`),
		poll(`document.querySelector("#slos").textContent.includes("-20.0%")`),
		poll(`document.querySelector("#rollouts").textContent.includes("rolled_back")`),
		poll(`document.querySelector("#rollouts").textContent.includes("<b onmouseover=alert(5)>canary error rate 0.2</b>")`),
		poll(`document.querySelector("#faults").textContent.includes("503 for 5%")`),
		poll(`document.querySelector("#faults").textContent.includes("x-switchyard-fault")`),
		poll(`document.querySelector("#traces").textContent.includes("<iframe src=javascript:alert(6)>")`),
		poll(`document.querySelector("#traces a").getAttribute("href") === "traces/`+id+`"`),
		poll(`document.querySelector("#traces a").href.endsWith("/admin/traces/`+id+`")`),
		poll(`document.querySelector("#queues-status").textContent === "not available"`),
		poll(`document.querySelector("#processes-status").textContent === "not available"`),
		poll(`document.querySelector('[data-kind=target][data-name="127.0.0.1:9002"]').classList.contains("draining")`),
		poll(`Number(document.body.dataset.snapshots) >= 3`))
	noInjection(t, tab, dialogs)
	screenshot(t, tab, "panels.png")
	if n := d.Streams(); n != 1 {
		t.Fatalf("streams while the page is open: %d, want 1", n)
	}

	// The page goes: its stream ends on the server.
	run(t, tab, "leave the page", chromedp.Navigate("about:blank"))
	deadline := time.Now().Add(10 * time.Second)
	for d.Streams() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the stream outlived the page: %d open", d.Streams())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
