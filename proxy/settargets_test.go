package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/balance"
	"github.com/switchyard/switchyard/breaker"
	"github.com/switchyard/switchyard/upstream"
)

// TestSetTargets: a running pool's target set is replaced; requests use
// the new set, and the breaker of an address that stays is kept.
func TestSetTargets(t *testing.T) {
	srv := func(name string) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(s.Close)
		return strings.TrimPrefix(s.URL, "http://")
	}
	a, b := srv("a"), srv("b")
	targets := []*upstream.Target{upstream.NewTarget(a, 0, 1)}
	pol, _ := balance.New(balance.Config{}, targets)
	bc := breaker.Config{}.WithDefaults()
	pool, err := NewPool(PoolConfig{Name: "u", Targets: targets, Policy: pol, Breaker: &bc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	h := New(staticResolver{&Route{Name: "r", Pool: pool}}, Options{ErrorLog: slog.New(slog.DiscardHandler)})
	body := func() string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "http://gw/", nil))
		return rec.Body.String()
	}
	if got := body(); got != "a" {
		t.Fatalf("before: %q", got)
	}
	br := pool.members.Load().breakers[0]
	for i := 0; i < 1000 && br.State() != breaker.Open; i++ {
		if br.Allow() == nil {
			br.Record(false)
		}
	}
	if br.State() != breaker.Open {
		t.Fatal("could not open a's breaker")
	}

	next := []*upstream.Target{upstream.NewTarget(a, 0, 1), upstream.NewTarget(b, 1, 1)}
	pol2, _ := balance.New(balance.Config{}, next)
	if err := pool.SetTargets(next, pol2, nil); err != nil {
		t.Fatal(err)
	}
	_, _, states := pool.BreakerState()
	if states[0] != "open" || states[1] != "closed" {
		t.Fatalf("breaker states after SetTargets: %v, want a's open breaker kept", states)
	}
	for range 4 {
		if got := body(); got != "b" {
			t.Fatalf("after: %q, want b (a's breaker is open)", got)
		}
	}
	if err := pool.SetTargets([]*upstream.Target{upstream.NewTarget(b, 3, 1)}, pol2, nil); err == nil {
		t.Error("SetTargets accepted a target whose index is not its position")
	}
	if err := pool.SetTargets(next, nil, nil); err == nil {
		t.Error("SetTargets accepted a nil policy")
	}
}
