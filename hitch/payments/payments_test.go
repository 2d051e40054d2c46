package payments_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/breaker"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/cardprocessor"
	"github.com/switchyard/switchyard/hitch/payments"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

func TestHappyPath(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		s := e.start(e.testConfig())
		fare, fee := hitch.DefaultFares.Fare(10)
		e.finish("ev-1", "ride-1", "ann", "dan", fare, fee)
		p := waitPayment(t, s, "ride-1", payments.StatePaid, 15*time.Second)
		if p.FareCents != 1750 || p.FeeCents != 350 || p.PayoutCents != 1400 || p.ChargeID == "" || p.Saga.State != "completed" {
			t.Fatalf("payment %+v saga %+v", p, p.Saga)
		}
		e.waitEvents("ride-1", map[string]int{hitch.KindPaymentCharged: 1, hitch.KindPayoutPaid: 1})
		reconcile(t, s, e.proc, []payments.Payment{p})

		// The internal HTTP API.
		srv := httptest.NewServer(s.Handler())
		defer srv.Close()
		var got payments.Payment
		if st := getJSON(t, srv.URL+"/v1/payments/ride-1", &got); st != 200 || got.State != "paid" || got.Saga == nil {
			t.Fatalf("GET payment: %d %+v", st, got)
		}
		var bal payments.Balance
		if st := getJSON(t, srv.URL+"/v1/ledger/balance", &bal); st != 200 || !bal.Balanced || bal.Transactions != 2 || len(bal.Accounts) != 4 {
			t.Fatalf("GET balance: %d %+v", st, bal)
		}
		var e404 map[string]string
		if st := getJSON(t, srv.URL+"/v1/payments/nope", &e404); st != 404 || e404["code"] != "not_found" {
			t.Fatalf("unknown ride: %d %v", st, e404)
		}
		if st := getJSON(t, srv.URL+"/v1/payments/"+strings.Repeat("x", 300), &e404); st != 400 {
			t.Fatalf("long ride id: %d", st)
		}
		if st := getJSON(t, srv.URL+"/healthz", &e404); st != 200 {
			t.Fatalf("healthz: %d", st)
		}
	})
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %q: %v", url, b, err)
	}
	return resp.StatusCode
}

func TestDeclined(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		s := e.start(e.testConfig())
		e.finish("ev-1", "ride-1", "decline-ann", "dan", 1000, 200)
		p := waitPayment(t, s, "ride-1", payments.StateFailed, 15*time.Second)
		if !strings.Contains(p.Reason, "declined") || p.Saga.State != "compensated" {
			t.Fatalf("declined payment %+v %+v", p, p.Saga)
		}
		e.waitEvents("ride-1", map[string]int{hitch.KindPaymentFailed: 1})
		reconcile(t, s, e.proc, []payments.Payment{p})
		if sum, _ := e.proc.Summarize(context.Background()); sum.Charges.Succeeded != 0 || sum.Charges.Declined != 1 || sum.Payouts.Paid != 0 {
			t.Fatalf("money moved on a declined card: %+v", sum)
		}
		b, _ := s.Ledger(context.Background())
		if b.Transactions != 0 {
			t.Fatalf("ledger has %d transactions for a declined card", b.Transactions)
		}
	})
}

// A payout that can never be made (the driver's account is closed) turns
// the saga around: the rider is refunded and the payment fails.
func TestPayoutImpossibleRefunds(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		s := e.start(e.testConfig())
		e.finish("ev-1", "ride-1", "ann", "closed-dan", 1000, 200)
		p := waitPayment(t, s, "ride-1", payments.StateFailed, 15*time.Second)
		if !strings.Contains(p.Reason, "account_closed") || !strings.Contains(p.Reason, "refunded") || p.RefundID == "" {
			t.Fatalf("payment %+v", p)
		}
		e.waitEvents("ride-1", map[string]int{hitch.KindPaymentCharged: 1, hitch.KindPaymentFailed: 1})
		reconcile(t, s, e.proc, []payments.Payment{p})
		sum, _ := e.proc.Summarize(context.Background())
		if sum.Charges.AmountCents != 1000 || sum.Refunds.AmountCents != 1000 || sum.Payouts.Paid != 0 || sum.NetCents != 0 {
			t.Fatalf("processor %+v", sum)
		}
	})
}

// The processor answers 500 (after doing the work, half of the time): the
// resilient client retries with the same key, the saga tries again, and
// the ride is charged once.
func TestProcessor500sThenSuccess(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		if err := e.proc.SetFaults(cardprocessor.Faults{FailRate: 0.5, Seed: 3}); err != nil {
			t.Fatal(err)
		}
		s := e.start(e.testConfig())
		var pays []payments.Payment
		for i := range 5 {
			e.finish("ev-"+itoa(i), "ride-"+itoa(i), "ann", "dan", 1000+int64(i), 200)
		}
		for i := range 5 {
			pays = append(pays, waitPayment(t, s, "ride-"+itoa(i), payments.StatePaid, 30*time.Second))
		}
		st := e.proc.Stats()
		if st.Failed == 0 {
			t.Fatalf("no injected failure happened: %+v", st)
		}
		reconcile(t, s, e.proc, pays)
		sum, _ := e.proc.Summarize(context.Background())
		if sum.Charges.Succeeded != 5 || sum.Payouts.Paid != 5 {
			t.Fatalf("processor %+v", sum)
		}
		t.Logf("processor saw %d calls, %d injected 500s, %d replays for 5 charges and 5 payouts", st.Requests, st.Failed, st.Replays)
	})
}

// The processor hangs past the attempt timeout (after charging, at times):
// the attempt is given up, retried with the key, and the ride is charged
// once.
func TestProcessorSlowThenSuccess(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		if err := e.proc.SetFaults(cardprocessor.Faults{TimeoutRate: 0.6, Phase: "after", Seed: 5}); err != nil {
			t.Fatal(err)
		}
		s := e.start(e.testConfig())
		e.finish("ev-1", "ride-1", "ann", "dan", 1234, 234)
		p := waitPayment(t, s, "ride-1", payments.StatePaid, 30*time.Second)
		st := e.proc.Stats()
		if st.Hung == 0 || st.Replays == 0 {
			t.Fatalf("no hang after a charge happened: %+v", st)
		}
		reconcile(t, s, e.proc, []payments.Payment{p})
		if sum, _ := e.proc.Summarize(context.Background()); sum.Charges.Succeeded != 1 || sum.Payouts.Paid != 1 {
			t.Fatalf("processor %+v", sum)
		}
	})
}

// Under sustained failure the breaker opens, calls stop reaching the
// processor, and once it recovers the breaker closes and the payments
// complete, each charged once.
func TestBreakerOpensAndCloses(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	cfg := e.testConfig()
	cfg.Processor.Attempts = 2
	cfg.Processor.Breaker = breaker.Config{MinRequests: 5, FailureRatio: 0.5, Window: 2 * time.Second, OpenFor: 500 * time.Millisecond, HalfOpenProbes: 1}
	if err := e.proc.SetFaults(cardprocessor.Faults{FailRate: 1}); err != nil {
		t.Fatal(err)
	}
	s := e.start(cfg)
	for i := range 4 {
		e.finish("ev-"+itoa(i), "ride-"+itoa(i), "ann", "dan", 500, 100)
	}
	waitFor(t, 10*time.Second, "breaker open", func() (bool, string) { return s.Breaker().State() == breaker.Open, s.Breaker().State().String() })
	// While it is open the processor sees far fewer calls than the sagas
	// make: they fail fast.
	before := e.proc.Stats().Requests
	time.Sleep(400 * time.Millisecond)
	during := e.proc.Stats().Requests - before
	if during > 10 {
		t.Errorf("%d calls reached the processor in 400ms with the breaker open", during)
	}
	p, _ := s.Payment(context.Background(), "ride-0")
	if p.State != payments.StatePending || p.Saga == nil || p.Saga.State != "running" || p.Saga.LastError == "" {
		t.Fatalf("during the outage: %+v %+v", p, p.Saga)
	}
	e.proc.SetFaults(cardprocessor.Faults{})
	var pays []payments.Payment
	for i := range 4 {
		pays = append(pays, waitPayment(t, s, "ride-"+itoa(i), payments.StatePaid, 20*time.Second))
	}
	if st := s.Breaker().State(); st != breaker.Closed {
		t.Fatalf("breaker %s after recovery", st)
	}
	reconcile(t, s, e.proc, pays)
}

// The same ride.finished delivered twice (a redelivery with the same id)
// and a second event for the same ride (another id): one saga, one charge.
func TestDuplicateRideFinished(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		s := e.start(e.testConfig())
		e.finish("ev-1", "ride-1", "ann", "dan", 1000, 200)
		e.finish("ev-1", "ride-1", "ann", "dan", 1000, 200)
		e.finish("ev-2", "ride-1", "ann", "dan", 1000, 200)
		p := waitPayment(t, s, "ride-1", payments.StatePaid, 15*time.Second)
		e.waitEvents("ride-1", map[string]int{hitch.KindPaymentCharged: 1, hitch.KindPayoutPaid: 1})
		reconcile(t, s, e.proc, []payments.Payment{p})
		sagas, err := s.Orchestrator().List(context.Background(), sagaFilterAll())
		if err != nil || len(sagas) != 1 {
			t.Fatalf("%d sagas, %v", len(sagas), err)
		}
		if sum, _ := e.proc.Summarize(context.Background()); sum.Charges.Succeeded != 1 || sum.Stats.Requests != 2 {
			t.Fatalf("processor %+v", sum)
		}
	})
}

// Invalid events and other kinds are acknowledged and change nothing.
func TestHostileEvents(t *testing.T) {
	e := newEnv(t, storetest.SQLite(t))
	s := e.start(e.testConfig())
	e.finish("bad-1", "ride-x", "", "dan", 1000, 200)           // no rider
	e.finish("bad-2", "ride-y", "ann", "dan", -5, 0)            // negative fare
	e.finish("bad-3", "ride-z", "ann", "dan", 100, 200)         // fee above fare
	e.finish("bad-4", strings.Repeat("r", 300), "a", "d", 1, 0) // huge id
	m, _ := hitch.Event(hitch.KindRideStarted, "other-1", "ride-o", hitch.RideRef{RideID: "ride-o", RiderID: "ann"})
	e.bus.Publish(context.Background(), "topic:"+hitch.TopicRides, m)
	m, _ = hitch.Event(hitch.KindRideFinished, "junk-1", "ride-j", "not an object")
	e.bus.Publish(context.Background(), "topic:"+hitch.TopicRides, m)
	// A good one after them proves the bad ones were consumed.
	e.finish("good", "ride-ok", "ann", "dan", 700, 140)
	waitPayment(t, s, "ride-ok", payments.StatePaid, 15*time.Second)
	for _, r := range []string{"ride-x", "ride-y", "ride-z", "ride-o", "ride-j"} {
		if _, err := s.Payment(context.Background(), r); err != payments.ErrNotFound {
			t.Errorf("%s: %v", r, err)
		}
	}
}

// Two replicas on one queue and one database: every ride charged once.
func TestTwoReplicas(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db)
		a := e.start(e.testConfig())
		e.start(e.testConfig())
		const n = 20
		for i := range n {
			e.finish("ev-"+itoa(i), "ride-"+itoa(i), "rider-"+itoa(i%3), "driver-"+itoa(i%4), 500+int64(i), 100)
		}
		var pays []payments.Payment
		for i := range n {
			pays = append(pays, waitPayment(t, a, "ride-"+itoa(i), payments.StatePaid, 30*time.Second))
		}
		for i := range n {
			e.waitEvents("ride-"+itoa(i), map[string]int{hitch.KindPaymentCharged: 1, hitch.KindPayoutPaid: 1})
		}
		reconcile(t, a, e.proc, pays)
		if sum, _ := e.proc.Summarize(context.Background()); sum.Charges.Succeeded != n || sum.Payouts.Paid != n {
			t.Fatalf("processor %+v", sum)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	err := payments.Config{ProcessorURL: "ftp://x", Currency: "dollars", Processor: payments.Calls{Attempts: 20, Timeout: time.Second, AttemptTimeout: 2 * time.Second}}.WithDefaults().Validate()
	for _, want := range []string{"processor_url", "currency", "processor.attempts", "processor.attempt_timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	if err := (payments.Config{}).WithDefaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }
