package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/telemetry"
)

// TestHitchTrace requests a ride through a real Hitch's gateway with a
// traceparent and finds one trace with the spans of at least four
// components (gateway, rides, broker, matching, ...): first in the
// gateway's trace store (hitch up's own receiver, nothing configured),
// then in an OTLP/HTTP receiver of this test that OTEL_EXPORTER_OTLP_ENDPOINT
// points every process at.
func TestHitchTrace(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole Hitch")
	}
	t.Run("hitch up's store", func(t *testing.T) {
		gw, admin := startHitch(t)
		id := rideWithTrace(t, gw, "4bf92f3577b34da6a3ce929d0e0e4736")
		var tr telemetry.Trace
		waitTrace(t, "four components in the gateway's trace "+id, func() bool {
			resp, err := http.Get(admin + "/admin/traces/" + id)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			tr = telemetry.Trace{}
			return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&tr) == nil && hasComponents(tr.Spans)
		}, func() string { return describe(tr.Spans) })
		t.Logf("trace %s: %s", id, describe(tr.Spans))
		if tr.Root == "" || tr.Service != "gateway" {
			t.Errorf("trace summary %+v: want the gateway's root span", tr)
		}
	})
	t.Run("OTLP export", func(t *testing.T) {
		st := telemetry.NewStore(telemetry.Memory{}, "collector", nil)
		mux := http.NewServeMux()
		mux.Handle("POST /v1/traces", st.Receiver(telemetry.ReceiverOptions{}))
		collector := httptest.NewServer(mux)
		defer collector.Close()
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
		t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
		gw, _ := startHitch(t)
		id := rideWithTrace(t, gw, "5bf92f3577b34da6a3ce929d0e0e4737")
		var tr telemetry.Trace
		waitTrace(t, "four components at the collector", func() bool {
			tr, _ = st.Trace(id)
			return hasComponents(tr.Spans)
		}, func() string { return describe(tr.Spans) })
		t.Logf("trace %s at the collector: %s", id, describe(tr.Spans))
	})
}

// rideWithTrace makes a driver available on a route and has a rider
// request a ride along it with the trace id, as a traced client would
// (matching finds the driver, so the trace goes on to rides' consumer of
// match.found); it returns the trace id.
func rideWithTrace(t *testing.T, gw, traceID string) string {
	t.Helper()
	user := func(role string) string {
		email := fmt.Sprintf("%s%d@example.com", role, time.Now().UnixNano())
		if code, b := do(t, "POST", gw+"/v1/auth/register", "", `{"role":"`+role+`","name":"Tracy","email":"`+email+`","password":"a pass word"}`); code != 201 {
			t.Fatalf("register: %d %v", code, b)
		}
		code, b := do(t, "POST", gw+"/v1/auth/login", "", `{"email":"`+email+`","password":"a pass word"}`)
		if code != 200 {
			t.Fatalf("login: %d %v", code, b)
		}
		return b["token"].(string)
	}
	driver, rider := user("driver"), user("rider")
	if code, b := do(t, "POST", gw+"/v1/drivers/me/availability", driver, `{"ready":true,"from":{"lat":40.50,"lon":-74.25},"to":{"lat":40.53,"lon":-74.24},"seats":1}`); code >= 300 {
		t.Fatalf("driver availability: %d %v", code, b)
	}
	req, _ := http.NewRequest("POST", gw+"/v1/rides", strings.NewReader(`{"from":{"lat":40.506,"lon":-74.248},"to":{"lat":40.521,"lon":-74.243}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+rider)
	req.Header.Set("Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 && resp.StatusCode != 202 && resp.StatusCode != 200 {
		t.Fatalf("POST /v1/rides: %d", resp.StatusCode)
	}
	return traceID
}

// hasComponents: spans of the gateway, rides, the broker and matching,
// and the next hop: rides consuming matching's match.found.
func hasComponents(spans []telemetry.Span) bool {
	seen := map[string]bool{}
	for _, s := range spans {
		seen[s.Service] = true
		seen[s.Service+" "+s.Name] = true
	}
	return seen["gateway"] && seen["rides"] && seen["broker"] && seen["matching"] && seen["rides consume queue:rides.matching"]
}

func describe(spans []telemetry.Span) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "\n  %-9s %-34s %s <- %s", s.Service, s.Name, s.SpanID, s.ParentID)
	}
	return b.String()
}

func waitTrace(t *testing.T, what string, cond func() bool, got func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; spans:%s", what, got())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
