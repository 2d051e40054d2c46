package payments_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/breaker"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/cardprocessor"
	"github.com/switchyard/switchyard/hitch/hitchtest"
	"github.com/switchyard/switchyard/hitch/payments"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/saga"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// env is one test's world: a card processor on its own SQLite database
// behind an HTTP server, a broker with Hitch's topology, and the payments
// database.
type env struct {
	t       *testing.T
	proc    *cardprocessor.Service
	procURL string
	broker  *hitchtest.Broker
	bus     message.Backend
	db      *store.DB

	mu     sync.Mutex
	events map[string]map[string]int // ride -> kind -> distinct events
	seen   map[string]bool           // event ids
}

func newEnv(t *testing.T, db *store.DB) *env {
	t.Helper()
	proc, err := cardprocessor.New(context.Background(), storetest.SQLite(t), nil, cardprocessor.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(proc.Handler())
	t.Cleanup(srv.Close)
	b := hitchtest.StartBroker(t)
	e := &env{t: t, proc: proc, procURL: srv.URL, broker: b, bus: b.Open(t), db: db,
		events: map[string]map[string]int{}, seen: map[string]bool{}}
	e.collectEvents()
	return e
}

// testConfig is quick to retry and to give up, so tests stay short.
func (e *env) testConfig() payments.Config {
	cfg := payments.Config{
		ProcessorURL: e.procURL,
		Processor:    payments.Calls{Timeout: 3 * time.Second, AttemptTimeout: 400 * time.Millisecond, RetryBase: 10 * time.Millisecond},
		Saga: payments.SagaConfig{ClaimTTL: 2 * time.Second, PollInterval: 100 * time.Millisecond,
			RetryBase: 20 * time.Millisecond, RetryCap: 200 * time.Millisecond},
		RelayPollInterval: 100 * time.Millisecond, RelayLeaseTTL: 2 * time.Second,
	}
	// A breaker that probes again soon, so a test that injects failures
	// does not wait out the default 10 s; one probe closes it.
	cfg.Processor.Breaker = breaker.Config{OpenFor: 200 * time.Millisecond, HalfOpenProbes: 1}
	return cfg
}

// start runs a payments replica until the test ends.
func (e *env) start(cfg payments.Config) *payments.Service {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := payments.New(ctx, e.db, e.broker.Open(e.t), cfg)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
	return s
}

// finish publishes a ride.finished event (as rides' outbox would).
func (e *env) finish(eventID, ride, rider, driver string, fare, fee int64) {
	e.t.Helper()
	m, err := hitch.Event(hitch.KindRideFinished, eventID, ride, hitch.RideFinished{
		RideRef: hitch.RideRef{RideID: ride, RiderID: rider, DriverID: driver, At: time.Now()}, FareCents: fare, FeeCents: fee})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.bus.Publish(ctx, "topic:"+hitch.TopicRides, m); err != nil {
		e.t.Fatal(err)
	}
}

// collectEvents reads what payments emits, from rides' queue.
func (e *env) collectEvents() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.bus.Subscribe(ctx, "queue:"+hitch.QueueRidesPayments, message.SubscribeOptions{}, func(d *message.Delivery) {
			var ref hitch.RideRef
			hitch.Decode(d.Headers["kind"], d.Body, &ref)
			e.mu.Lock()
			if !e.seen[d.ID] {
				e.seen[d.ID] = true
				if e.events[ref.RideID] == nil {
					e.events[ref.RideID] = map[string]int{}
				}
				e.events[ref.RideID][d.Headers["kind"]]++
			}
			e.mu.Unlock()
			d.Ack(ctx)
		})
	}()
	e.t.Cleanup(func() { cancel(); <-done })
}

func (e *env) eventsOf(ride string) map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]int{}
	for k, v := range e.events[ride] {
		out[k] = v
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last: %s", what, d, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitPayment waits until the ride's payment reaches state.
func waitPayment(t *testing.T, s *payments.Service, ride, state string, d time.Duration) payments.Payment {
	t.Helper()
	var p payments.Payment
	waitFor(t, d, "payment of "+ride+" "+state, func() (bool, string) {
		var err error
		p, err = s.Payment(context.Background(), ride)
		return err == nil && p.State == state && p.Saga != nil && (p.Saga.State == "completed" || p.Saga.State == "compensated"),
			fmt.Sprintf("%+v %+v %v", p, p.Saga, err)
	})
	return p
}

// waitEvents waits until ride's emitted events are exactly want.
func (e *env) waitEvents(ride string, want map[string]int) {
	e.t.Helper()
	waitFor(e.t, 15*time.Second, "events of "+ride, func() (bool, string) {
		got := e.eventsOf(ride)
		if len(got) != len(want) {
			return false, fmt.Sprint(got)
		}
		for k, v := range want {
			if got[k] != v {
				return false, fmt.Sprint(got)
			}
		}
		return true, ""
	})
}

// reconcile checks the money: at the processor every ride was charged at
// most once (by key), paid rides were charged the fare and their driver
// paid fare - fee once, failed rides kept nothing; the ledger balances to
// the cent and agrees with the processor account by account.
func reconcile(t *testing.T, s *payments.Service, proc *cardprocessor.Service, pays []payments.Payment) {
	t.Helper()
	ctx := context.Background()
	charges, err := proc.Charges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	refunds, _ := proc.Refunds(ctx)
	payouts, _ := proc.Payouts(ctx)
	chargeBy := map[string]cardprocessor.Charge{}
	for _, c := range charges {
		if _, dup := chargeBy[c.IdempotencyKey]; dup {
			t.Fatalf("two charges with key %s", c.IdempotencyKey)
		}
		chargeBy[c.IdempotencyKey] = c
	}
	refundBy := map[string]int64{}
	for _, r := range refunds {
		refundBy[r.ChargeID] += r.AmountCents
	}
	payoutBy := map[string]cardprocessor.Payout{}
	for _, p := range payouts {
		payoutBy[p.IdempotencyKey] = p
	}
	wantRider, wantDriver := map[string]int64{}, map[string]int64{}
	var fees int64
	for _, p := range pays {
		c, charged := chargeBy["hitch/ride/"+p.RideID+"/charge"]
		succeeded := charged && c.Status == cardprocessor.StatusSucceeded
		po, paidOut := payoutBy["hitch/ride/"+p.RideID+"/payout"]
		paidOut = paidOut && po.Status == cardprocessor.StatusPaid
		switch p.State {
		case payments.StatePaid:
			if !succeeded || c.AmountCents != p.FareCents || c.ID != p.ChargeID || refundBy[c.ID] != 0 {
				t.Errorf("ride %s paid: charge %+v (refunded %d), payment %+v", p.RideID, c, refundBy[c.ID], p)
			}
			if p.FareCents > p.FeeCents && (!paidOut || po.AmountCents != p.FareCents-p.FeeCents || po.Driver != p.DriverID) {
				t.Errorf("ride %s paid: payout %+v, want %d cents to %s", p.RideID, po, p.FareCents-p.FeeCents, p.DriverID)
			}
			wantRider[p.RiderID] -= p.FareCents
			wantDriver[p.DriverID] += p.FareCents - p.FeeCents
			fees += p.FeeCents
		case payments.StateFailed:
			if succeeded && refundBy[c.ID] != c.AmountCents {
				t.Errorf("ride %s failed but its charge %s kept %d cents", p.RideID, c.ID, c.AmountCents-refundBy[c.ID])
			}
			if paidOut {
				t.Errorf("ride %s failed but its driver was paid %+v", p.RideID, po)
			}
		default:
			t.Errorf("ride %s ended in state %s", p.RideID, p.State)
		}
	}
	b, err := s.Ledger(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Balanced || b.TotalCents != 0 {
		t.Fatalf("ledger does not balance: %+v", b)
	}
	got := map[string]int64{}
	for _, a := range b.Accounts {
		got[a.Account] = a.Cents
	}
	for r, v := range wantRider {
		if got["rider:"+r] != v {
			t.Errorf("ledger rider:%s = %d, want %d", r, got["rider:"+r], v)
		}
	}
	for d, v := range wantDriver {
		if got["driver:"+d] != v {
			t.Errorf("ledger driver:%s = %d, want %d", d, got["driver:"+d], v)
		}
	}
	sum, err := proc.Summarize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got[payments.AccountFees] != fees || got[payments.AccountClearing] != 0 {
		t.Errorf("ledger fees %d clearing %d, want %d and 0", got[payments.AccountFees], got[payments.AccountClearing], fees)
	}
	if sum.NetCents != got[payments.AccountFees]+got[payments.AccountClearing] {
		t.Errorf("the processor holds %d cents net, the ledger says fees %d + clearing %d", sum.NetCents, got[payments.AccountFees], got[payments.AccountClearing])
	}
}

func sagaFilterAll() saga.Filter { return saga.Filter{} }
