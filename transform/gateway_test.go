package transform

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/retry"
	"github.com/switchyard/switchyard/upstream"
)

type staticResolver struct{ rt *proxy.Route }

func (s staticResolver) Resolve(*http.Request) (*proxy.Route, bool) { return s.rt, true }

// newGateway serves rt through a real proxy to a real backend and returns
// the gateway's URL. rt.Name and rt.Pool are filled in.
func newGateway(t *testing.T, rt *proxy.Route, retryCfg *retry.Config, backend http.Handler) string {
	t.Helper()
	be := httptest.NewServer(backend)
	t.Cleanup(be.Close)
	targets := []*upstream.Target{upstream.NewTarget(strings.TrimPrefix(be.URL, "http://"), 0, 1)}
	pol, err := balance.New(balance.Config{}, targets)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := proxy.NewPool(proxy.PoolConfig{Name: "u", Targets: targets, Policy: pol, Retry: retryCfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	rt.Name, rt.Pool = "r", pool
	h := proxy.New(staticResolver{rt}, proxy.Options{})
	h.Prepare(rt)
	gw := httptest.NewServer(h)
	t.Cleanup(gw.Close)
	return gw.URL
}

// gatewayError decodes a gateway error body's code.
func gatewayError(t *testing.T, body []byte) string {
	t.Helper()
	var e struct{ Code string }
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e.Code
}

func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, body
}
