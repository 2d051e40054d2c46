package cardprocessor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/hitch/cardprocessor"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
	"go.yaml.in/yaml/v3"
)

func start(t *testing.T, db *store.DB) (*cardprocessor.Service, *httptest.Server) {
	t.Helper()
	s, err := cardprocessor.New(context.Background(), db, nil, cardprocessor.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return s, srv
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
}

func call(t *testing.T, client *http.Client, method, url, key, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: not JSON: %q", method, url, b)
		}
	}
	return reply{resp.StatusCode, resp.Header, m}
}

func TestChargeIdempotency(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		s, srv := start(t, db)
		body := `{"amount_cents": 1750, "currency": "usd", "card": "card-ann", "customer": "ann", "description": "ride 1"}`
		first := call(t, nil, "POST", srv.URL+"/v1/charges", "ride/1/charge", body)
		if first.status != 201 || first.body["status"] != "succeeded" || first.body["charge_id"] == "" {
			t.Fatalf("first charge: %d %v", first.status, first.body)
		}
		// Same key, same fields in another order and spacing: the same charge.
		again := call(t, nil, "POST", srv.URL+"/v1/charges", "ride/1/charge",
			`{"description":"ride 1","customer":"ann","card":"card-ann","currency":"usd","amount_cents":1750}`)
		if again.status != 201 || again.body["charge_id"] != first.body["charge_id"] || again.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay: %d %v %v", again.status, again.body, again.header)
		}
		// Same key, another amount: refused.
		reuse := call(t, nil, "POST", srv.URL+"/v1/charges", "ride/1/charge", strings.Replace(body, "1750", "1751", 1))
		if reuse.status != 422 || reuse.body["code"] != "idempotency_key_reuse" {
			t.Fatalf("reuse: %d %v", reuse.status, reuse.body)
		}
		// Concurrent requests with one new key: one charge.
		var wg sync.WaitGroup
		ids := make([]any, 8)
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := call(t, nil, "POST", srv.URL+"/v1/charges", "ride/2/charge", body)
				ids[i] = r.body["charge_id"]
			}()
		}
		wg.Wait()
		for _, id := range ids {
			if id != ids[0] || id == nil {
				t.Fatalf("concurrent charges with one key got ids %v", ids)
			}
		}
		got := call(t, nil, "GET", srv.URL+"/v1/charges/"+first.body["charge_id"].(string), "", "")
		if got.status != 200 || got.body["amount_cents"] != float64(1750) {
			t.Fatalf("get: %d %v", got.status, got.body)
		}
		cs, err := s.Charges(context.Background())
		if err != nil || len(cs) != 2 {
			t.Fatalf("charges: %d, %v", len(cs), err)
		}
	})
}

func TestDeclineRule(t *testing.T) {
	_, srv := start(t, storetest.SQLite(t))
	r := call(t, nil, "POST", srv.URL+"/v1/charges", "k1", `{"amount_cents": 500, "currency": "usd", "card": "decline-me"}`)
	if r.status != 201 || r.body["status"] != "declined" || r.body["decline_code"] != "card_declined" {
		t.Fatalf("declined card: %d %v", r.status, r.body)
	}
	r = call(t, nil, "POST", srv.URL+"/v1/charges", "k2", `{"amount_cents": 500, "currency": "usd", "card": "c", "customer": "decline-7"}`)
	if r.body["status"] != "declined" {
		t.Fatalf("declined customer: %d %v", r.status, r.body)
	}
	// A declined charge cannot be refunded.
	r = call(t, nil, "POST", srv.URL+"/v1/refunds", "k3", fmt.Sprintf(`{"charge_id": %q, "amount_cents": 500}`, r.body["charge_id"]))
	if r.status != 409 || r.body["code"] != "charge_not_refundable" {
		t.Fatalf("refund of a declined charge: %d %v", r.status, r.body)
	}
	// Configured prefixes replace the defaults.
	call(t, nil, "POST", srv.URL+"/v1/faults", "", `{"decline_prefixes": ["rider-9"]}`)
	r = call(t, nil, "POST", srv.URL+"/v1/charges", "k4", `{"amount_cents": 500, "currency": "usd", "card": "x", "customer": "rider-9"}`)
	if r.body["status"] != "declined" {
		t.Fatalf("configured decline: %v", r.body)
	}
	r = call(t, nil, "POST", srv.URL+"/v1/charges", "k5", `{"amount_cents": 500, "currency": "usd", "card": "decline-now-allowed"}`)
	if r.body["status"] != "succeeded" {
		t.Fatalf("default rule should be replaced: %v", r.body)
	}
}

func TestRefundsAndPayouts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		s, srv := start(t, db)
		ch := call(t, nil, "POST", srv.URL+"/v1/charges", "c1", `{"amount_cents": 1000, "currency": "usd", "card": "ok"}`)
		id := ch.body["charge_id"].(string)
		r1 := call(t, nil, "POST", srv.URL+"/v1/refunds", "r1", fmt.Sprintf(`{"charge_id": %q, "amount_cents": 600}`, id))
		if r1.status != 201 {
			t.Fatalf("refund: %d %v", r1.status, r1.body)
		}
		if r := call(t, nil, "POST", srv.URL+"/v1/refunds", "r1", fmt.Sprintf(`{"charge_id": %q, "amount_cents": 600}`, id)); r.body["refund_id"] != r1.body["refund_id"] {
			t.Fatalf("refund replay: %v", r.body)
		}
		if r := call(t, nil, "POST", srv.URL+"/v1/refunds", "r2", fmt.Sprintf(`{"charge_id": %q, "amount_cents": 500}`, id)); r.status != 409 || r.body["code"] != "amount_too_large" {
			t.Fatalf("over-refund: %d %v", r.status, r.body)
		}
		if r := call(t, nil, "POST", srv.URL+"/v1/refunds", "r3", `{"charge_id": "ch_nope", "amount_cents": 5}`); r.status != 404 {
			t.Fatalf("refund of nothing: %d %v", r.status, r.body)
		}
		p := call(t, nil, "POST", srv.URL+"/v1/payouts", "p1", `{"driver": "dan", "amount_cents": 800, "currency": "usd"}`)
		if p.status != 201 || p.body["status"] != "paid" {
			t.Fatalf("payout: %d %v", p.status, p.body)
		}
		p = call(t, nil, "POST", srv.URL+"/v1/payouts", "p2", `{"driver": "closed-dee", "amount_cents": 800, "currency": "usd"}`)
		if p.status != 201 || p.body["status"] != "failed" || p.body["failure_code"] != "account_closed" {
			t.Fatalf("closed payout: %d %v", p.status, p.body)
		}
		sum, err := s.Summarize(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if sum.Charges.AmountCents != 1000 || sum.Refunds.AmountCents != 600 || sum.Payouts.AmountCents != 800 || sum.NetCents != -400 || sum.Payouts.Failed != 1 {
			t.Fatalf("summary %+v", sum)
		}
	})
}

// The attacker's cases: every one answered with a 4xx naming the problem,
// and nothing stored.
func TestHostileRequests(t *testing.T) {
	s, srv := start(t, storetest.SQLite(t))
	ok := `{"amount_cents": 100, "currency": "usd", "card": "c"}`
	cases := []struct {
		name, path, key, body string
		status                int
		code, mention         string
	}{
		{"no key", "/v1/charges", "", ok, 400, "invalid_idempotency_key", "required"},
		{"long key", "/v1/charges", strings.Repeat("k", 256), ok, 400, "invalid_idempotency_key", "at most 255"},
		{"bad JSON", "/v1/charges", "k", `{"amount_cents": `, 400, "invalid_request", "invalid JSON"},
		{"unknown field", "/v1/charges", "k", `{"amount_cents": 1, "currency": "usd", "card": "c", "cvv": "123"}`, 400, "invalid_request", "cvv"},
		{"trailing", "/v1/charges", "k", ok + `{}`, 400, "invalid_request", "trailing"},
		{"negative", "/v1/charges", "k", `{"amount_cents": -5, "currency": "usd", "card": "c"}`, 400, "invalid_request", "amount_cents"},
		{"zero", "/v1/charges", "k", `{"amount_cents": 0, "currency": "usd", "card": "c"}`, 400, "invalid_request", "amount_cents"},
		{"huge amount", "/v1/charges", "k", `{"amount_cents": 1e12, "currency": "usd", "card": "c"}`, 400, "invalid_request", "body"},
		{"overflow", "/v1/charges", "k", `{"amount_cents": 99999999999999999999, "currency": "usd", "card": "c"}`, 400, "invalid_request", "body"},
		{"currency", "/v1/charges", "k", `{"amount_cents": 1, "currency": "USDX", "card": "c"}`, 400, "invalid_request", "currency"},
		{"no card", "/v1/charges", "k", `{"amount_cents": 1, "currency": "usd"}`, 400, "invalid_request", "card"},
		{"control chars", "/v1/charges", "k", `{"amount_cents": 1, "currency": "usd", "card": "c\u0000"}`, 400, "invalid_request", "control"},
		{"huge body", "/v1/charges", "k", `{"description": "` + strings.Repeat("x", 20<<10) + `"}`, 413, "body_too_large", "limit"},
		{"refund no charge", "/v1/refunds", "k", `{"amount_cents": 1}`, 400, "invalid_request", "charge_id"},
		{"payout no driver", "/v1/payouts", "k", `{"amount_cents": 1, "currency": "usd"}`, 400, "invalid_request", "driver"},
		{"faults rate", "/v1/faults", "", `{"fail_rate": 2}`, 400, "invalid_faults", "fail_rate"},
		{"faults latency", "/v1/faults", "", `{"latency": "forever"}`, 400, "invalid_faults", "latency"},
		{"faults phase", "/v1/faults", "", `{"phase": "sometimes"}`, 400, "invalid_faults", "phase"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := call(t, nil, "POST", srv.URL+c.path, c.key, c.body)
			msg, _ := r.body["error"].(string)
			if r.status != c.status || r.body["code"] != c.code || !strings.Contains(msg, c.mention) {
				t.Fatalf("got %d %v; want %d %s mentioning %q", r.status, r.body, c.status, c.code, c.mention)
			}
		})
	}
	if r := call(t, nil, "GET", srv.URL+"/v1/charges/nope", "", ""); r.status != 404 {
		t.Fatalf("unknown charge: %d", r.status)
	}
	if cs, _ := s.Charges(context.Background()); len(cs) != 0 {
		t.Fatalf("hostile requests stored %d charges", len(cs))
	}
}

func TestFaults(t *testing.T) {
	s, srv := start(t, storetest.SQLite(t))
	body := `{"amount_cents": 100, "currency": "usd", "card": "c"}`

	// fail_rate 1 after the work: the charge is made, the caller hears 500,
	// and its retry with the key gets the charge without a second one.
	if r := call(t, nil, "POST", srv.URL+"/v1/faults", "", `{"fail_rate": 1, "phase": "after"}`); r.status != 200 || r.body["fail_rate"] != float64(1) {
		t.Fatalf("set faults: %d %v", r.status, r.body)
	}
	if r := call(t, nil, "POST", srv.URL+"/v1/charges", "k1", body); r.status != 500 || r.body["code"] != "injected_failure" {
		t.Fatalf("injected failure: %d %v", r.status, r.body)
	}
	call(t, nil, "DELETE", srv.URL+"/v1/faults", "", "")
	r := call(t, nil, "POST", srv.URL+"/v1/charges", "k1", body)
	if r.status != 201 || r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry after an injected failure: %d %v", r.status, r.header)
	}
	// Before the work: nothing is made.
	call(t, nil, "POST", srv.URL+"/v1/faults", "", `{"fail_rate": 1, "phase": "before"}`)
	call(t, nil, "POST", srv.URL+"/v1/charges", "k2", body)
	if cs, _ := s.Charges(context.Background()); len(cs) != 1 {
		t.Fatalf("charges after a before-failure: %d, want 1", len(cs))
	}
	// A hang lasts until the client gives up.
	call(t, nil, "POST", srv.URL+"/v1/faults", "", `{"timeout_rate": 1, "max_hang": "10s"}`)
	client := &http.Client{Timeout: 200 * time.Millisecond}
	began := time.Now()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/charges", strings.NewReader(body))
	req.Header.Set("Idempotency-Key", "k3")
	if _, err := client.Do(req); err == nil {
		t.Fatal("a hung call returned")
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("hang took %v", d)
	}
	// Latency.
	call(t, nil, "POST", srv.URL+"/v1/faults", "", `{"latency": "150ms"}`)
	began = time.Now()
	call(t, nil, "POST", srv.URL+"/v1/charges", "k4", body)
	if d := time.Since(began); d < 150*time.Millisecond {
		t.Fatalf("latency 150ms took %v", d)
	}
	// decline_rate 1 with a seed.
	call(t, nil, "POST", srv.URL+"/v1/faults", "", `{"decline_rate": 1, "seed": 7}`)
	if r := call(t, nil, "POST", srv.URL+"/v1/charges", "k5", body); r.body["status"] != "declined" {
		t.Fatalf("decline_rate 1: %v", r.body)
	}
	got := call(t, nil, "GET", srv.URL+"/v1/faults", "", "")
	if got.body["decline_rate"] != float64(1) || got.body["latency"] != "0s" {
		t.Fatalf("GET faults: %v", got.body)
	}
	call(t, nil, "DELETE", srv.URL+"/v1/faults", "", "")
	if st := s.Stats(); st.Failed != 2 || st.Hung != 1 || st.Replays != 1 {
		t.Fatalf("stats %+v", st)
	}
	sum := call(t, nil, "GET", srv.URL+"/v1/summary", "", "")
	if sum.status != 200 {
		t.Fatalf("summary: %d", sum.status)
	}
	if r := call(t, nil, "GET", srv.URL+"/healthz", "", ""); r.status != 200 {
		t.Fatalf("healthz: %d", r.status)
	}
}

// Faults can be configured from the service's YAML config.
func TestFaultsYAML(t *testing.T) {
	var cfg cardprocessor.Config
	if err := yaml.Unmarshal([]byte("faults:\n  fail_rate: 0.25\n  latency: 150ms\n  phase: after\n  decline_prefixes: [x]\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Faults == nil || cfg.Faults.FailRate != 0.25 || time.Duration(cfg.Faults.Latency) != 150*time.Millisecond || cfg.Faults.Phase != "after" {
		t.Fatalf("faults %+v", cfg.Faults)
	}
	if err := yaml.Unmarshal([]byte("faults:\n  latency: later\n"), &cfg); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad latency: %v", err)
	}
	s, err := cardprocessor.New(context.Background(), storetest.SQLite(t), nil, cardprocessor.Config{Faults: &cardprocessor.Faults{FailRate: 3}})
	if err == nil || !strings.Contains(err.Error(), "fail_rate") {
		t.Fatalf("New with bad faults: %v, %v", s, err)
	}
}

// A payout without a currency is in dollars.
func TestPayoutDefaultCurrency(t *testing.T) {
	_, srv := start(t, storetest.SQLite(t))
	p := call(t, nil, "POST", srv.URL+"/v1/payouts", "p1", `{"driver": "dan", "amount_cents": 800}`)
	if p.status != 201 || p.body["currency"] != "usd" {
		t.Fatalf("payout: %d %v", p.status, p.body)
	}
}
