package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The dashboard block: located errors for bad values, brokers defaulting
// to the publish routes' broker, the page served on the admin listener,
// and its paths refused as admin extensions.
func TestDashboardConfig(t *testing.T) {
	base := "listen: 127.0.0.1:0\nupstreams: {a: {targets: [{address: 127.0.0.1:9}]}}\nroutes: [{upstream: a}]\n"
	_, err := ParseConfig([]byte(base+"dashboard: {brokers: [ftp://x], max_streams: 5000, colour: red}\n"), "g.yaml")
	if err == nil || !strings.Contains(err.Error(), "colour") {
		t.Errorf("unknown key: %v", err)
	}
	_, err = ParseConfig([]byte(base+"dashboard: {brokers: [ftp://x], max_streams: 5000}\n"), "g.yaml")
	for _, want := range []string{`g.yaml:4`, `dashboard.brokers[0]: invalid URL "ftp://x"`, "dashboard.max_streams: 5000 out of range"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}

	cfg, err := ParseConfig([]byte(base+"broker: {url: http://127.0.0.1:7401}\n"), "g.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := dashboardBrokers(cfg); len(got) != 1 || got[0] != "http://127.0.0.1:7401" {
		t.Errorf("default brokers %v, want the publish broker", got)
	}
	cfg, err = ParseConfig([]byte(base+"broker: {url: http://127.0.0.1:7401}\ndashboard: {brokers: [http://10.0.0.1:7401]}\n"), "g.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := dashboardBrokers(cfg); len(got) != 1 || got[0] != "http://10.0.0.1:7401" {
		t.Errorf("brokers %v, want the dashboard's", got)
	}
	if err := checkAdminExtensions(map[string]http.Handler{"GET /admin/dashboard/mine": http.NotFoundHandler()}); err == nil ||
		!strings.Contains(err.Error(), "the dashboard serves /admin/dashboard itself") {
		t.Errorf("extension under the dashboard: %v", err)
	}

	r := startGateway(t, "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nupstreams: {a: {targets: [{address: 127.0.0.1:9}]}}\nroutes: [{upstream: a}]\n")
	resp, err := http.Get(r.admin + "/admin/dashboard")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "dashboard/static/app.js") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("dashboard page: %s %q", resp.Status, resp.Header)
	}
	// An open stream does not hold up the gateway's shutdown.
	resp, err = http.Get(r.admin + "/admin/dashboard/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	if n, _ := resp.Body.Read(buf); !strings.HasPrefix(string(buf[:n]), "retry:") {
		t.Fatalf("stream starts %q", buf[:n])
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an open dashboard stream held the gateway's shutdown")
	}
	r.done <- nil // for the harness's cleanup
}
