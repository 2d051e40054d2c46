package payments_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/breaker"
	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/hitch"
	"github.com/switchyard/switchyard/hitch/cardprocessor"
	"github.com/switchyard/switchyard/hitch/hitchtest"
	"github.com/switchyard/switchyard/hitch/payments"
	"github.com/switchyard/switchyard/kit/message"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// The crash test: payments runs as a child process (this test binary,
// re-executed), consuming ride.finished events for 200 rides from a real
// broker and calling a card processor that also fails now and then; the
// test SIGKILLs the child at random moments while the rides flow in,
// restarts it, and at the end checks the money: every ride charged at
// most once at the processor (one row per idempotency key), every paid
// ride charged its fare and its driver paid once, every failed ride left
// with nothing taken, the ledger balanced to the cent and equal to the
// processor's records, and each payment event emitted once.

const (
	crashEnvDB     = "PAYMENTS_CRASH_DB"
	crashEnvBroker = "PAYMENTS_CRASH_BROKER"
	crashEnvProc   = "PAYMENTS_CRASH_PROCESSOR"
)

// TestCrashChild is the payments process of TestCrash; it does nothing in
// a normal run.
func TestCrashChild(t *testing.T) {
	dsn := os.Getenv(crashEnvDB)
	if dsn == "" {
		t.Skip("the crash test's child process")
	}
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	db, err := store.Open(ctx, dsn)
	if err != nil {
		fail(err)
	}
	bus, err := message.Open(ctx, os.Getenv(crashEnvBroker))
	if err != nil {
		fail(err)
	}
	s, err := payments.New(ctx, db, bus, crashConfig(os.Getenv(crashEnvProc), slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))))
	if err != nil {
		fail(err)
	}
	fmt.Println("ready")
	s.Run(ctx)
}

func crashConfig(procURL string, log *slog.Logger) payments.Config {
	return payments.Config{
		ProcessorURL: procURL,
		// A breaker that probes again soon: on a loaded machine slow
		// attempts open it, and the default 10 s open would only make the
		// test wait.
		Processor: payments.Calls{Timeout: 4 * time.Second, AttemptTimeout: time.Second, RetryBase: 10 * time.Millisecond,
			Breaker: breaker.Config{OpenFor: 300 * time.Millisecond, HalfOpenProbes: 1}},
		Saga: payments.SagaConfig{ClaimTTL: time.Second, PollInterval: 100 * time.Millisecond,
			RetryBase: 20 * time.Millisecond, RetryCap: 200 * time.Millisecond},
		RelayPollInterval: 100 * time.Millisecond, RelayLeaseTTL: time.Second,
		Logger: log,
	}
}

type child struct {
	cmd    *exec.Cmd
	stderr *lockedBuf
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<16 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startChild(t *testing.T, env []string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stderr: &lockedBuf{}}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan error, 1)
	go func() {
		br := bufio.NewReader(out)
		line, err := br.ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("child said %q", line)
		}
		ready <- err
		io.Copy(io.Discard, br)
	}()
	select {
	case err := <-ready:
		if err != nil {
			c.kill()
			t.Fatalf("payments child did not start: %v; stderr: %s", err, c.stderr)
		}
	case <-time.After(30 * time.Second):
		c.kill()
		t.Fatalf("payments child not ready in 30 s; stderr: %s", c.stderr)
	}
	return c
}

func (c *child) kill() {
	c.cmd.Process.Kill() // SIGKILL
	c.cmd.Wait()
}

func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	rides := 200
	if n, err := strconv.Atoi(os.Getenv("PAYMENTS_CRASH_RIDES")); err == nil && n > 0 {
		rides = n
	}
	t.Run("sqlite", func(t *testing.T) { crashTest(t, storetest.SQLitePath(t), rides) })
	t.Run("postgres", func(t *testing.T) {
		if storetest.PostgresURL() == "" {
			t.Skip("SWITCHYARD_TEST_POSTGRES=off")
		}
		crashTest(t, storetest.PostgresDSN(t), rides)
	})
}

func crashTest(t *testing.T, dsn string, rides int) {
	began := time.Now()
	ctx := context.Background()
	proc, err := cardprocessor.New(ctx, storetest.SQLite(t), nil, cardprocessor.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// The processor fails one call in ten on top of the kills, before or
	// after doing the work.
	if err := proc.SetFaults(cardprocessor.Faults{FailRate: 0.1}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(proc.Handler())
	defer srv.Close()
	b := hitchtest.StartBroker(t)
	// Twenty kills in a few seconds return the events a replica held to
	// the queue each time, with one more delivery counted; at the default
	// max_deliveries (5) some would be dead-lettered for an operator to
	// redrive. This test is about the money, not the dead-letter queue, so
	// the queue tolerates the crash loop.
	if err := b.Engine.Declare(hitch.QueuePaymentsRides, broker.QueueConfig{VisibilityTimeout: broker.Duration(2 * time.Second), MaxDeliveries: 1000}); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, proc: proc, procURL: srv.URL, broker: b, bus: b.Open(t), events: map[string]map[string]int{}, seen: map[string]bool{}}
	e.collectEvents()

	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The parent's handle reads payments and the ledger; it runs nothing.
	reader, err := payments.New(ctx, db, e.bus, crashConfig(srv.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	childEnv := []string{crashEnvDB + "=" + dsn, crashEnvBroker + "=" + b.URL, crashEnvProc + "=" + srv.URL}

	seed := uint64(time.Now().UnixNano())
	rnd := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d, %d rides", seed, rides)

	// Every 10th rider's card declines; every 17th driver's account is
	// closed (the payout is impossible: refund).
	type ride struct {
		id, rider, driver string
		fare, fee         int64
	}
	var all []ride
	for i := range rides {
		r := ride{id: fmt.Sprintf("ride-%04d", i), rider: fmt.Sprintf("rider-%d", i%13), driver: fmt.Sprintf("driver-%d", i%7),
			fare: 300 + int64(rnd.IntN(5000))}
		r.fee = (r.fare*20 + 50) / 100
		if i%10 == 3 {
			r.rider = "decline-" + r.rider
		}
		if i%17 == 5 {
			r.driver = "closed-" + r.driver
		}
		all = append(all, r)
	}
	kills, inFlight := 0, 0
	c := startChild(t, childEnv)
	next := 0
	for next < len(all) {
		// Publish a batch, then kill the child at a random moment while
		// it works on it.
		n := 5 + rnd.IntN(10)
		for ; n > 0 && next < len(all); n-- {
			r := all[next]
			e.finish("finished-"+r.id, r.id, r.rider, r.driver, r.fare, r.fee)
			next++
		}
		time.Sleep(time.Duration(50+rnd.IntN(600)) * time.Millisecond)
		var busy int
		db.QueryRow(ctx, "SELECT COUNT(*) FROM pay_payments WHERE state IN ('pending', 'charged')").Scan(&busy)
		c.kill()
		kills++
		if busy > 0 {
			inFlight++
		}
		c = startChild(t, childEnv)
	}
	defer func() { c.kill() }()

	// Let the last child finish everything.
	defer func() {
		if q, err := b.Engine.Queue(hitch.QueuePaymentsRides); err == nil && q.DeadLettered > 0 {
			t.Errorf("%d ride.finished events were dead-lettered (delivered %d times to killed replicas)", q.DeadLettered, q.Config.MaxDeliveries)
		}
	}()
	var pays []payments.Payment
	// Normally this takes seconds; the bound is generous because a 2-core
	// machine under a load of 20 (seen while other work ran) commits
	// SQLite transactions slowly, and the test is about exactly-once, not
	// speed.
	waitFor(t, 120*time.Second, "every payment final", func() (bool, string) {
		pays = pays[:0]
		for _, r := range all {
			p, err := reader.Payment(ctx, r.id)
			if err != nil || p.Saga == nil || (p.Saga.State != "completed" && p.Saga.State != "compensated") {
				info, _ := reader.Orchestrator().Get(ctx, r.id)
				return false, fmt.Sprintf("%s: %+v %+v %v; saga owner %s claimed until %v next run %v (now %v), history %+v; child stderr: %.3000s",
					r.id, p, p.Saga, err, info.Owner, info.ClaimedUntil, info.NextRun, time.Now(), info.History, c.stderr)
			}
			pays = append(pays, p)
		}
		return true, ""
	})
	for i, p := range pays {
		r := all[i]
		want := map[string]int{hitch.KindPaymentCharged: 1, hitch.KindPayoutPaid: 1}
		wantState := payments.StatePaid
		switch {
		case strings.HasPrefix(r.rider, "decline"):
			want, wantState = map[string]int{hitch.KindPaymentFailed: 1}, payments.StateFailed
		case strings.HasPrefix(r.driver, "closed"):
			want, wantState = map[string]int{hitch.KindPaymentCharged: 1, hitch.KindPaymentFailed: 1}, payments.StateFailed
		}
		if p.State != wantState {
			t.Errorf("%s (rider %s, driver %s): state %s, want %s", r.id, r.rider, r.driver, p.State, wantState)
		}
		e.waitEvents(r.id, want)
	}
	reconcile(t, reader, proc, pays)
	sum, _ := proc.Summarize(ctx)
	bal, _ := reader.Ledger(ctx)
	if inFlight == 0 {
		t.Errorf("no kill landed while a payment was in flight: the test proved nothing")
	}
	t.Logf("%d kills (%d with payments in flight) in %v; processor: %d charges (%d declined), %d refunds, %d payouts; %d calls, %d answered from a stored key, %d injected 500s; ledger: %d transactions, total %d",
		kills, inFlight, time.Since(began).Round(time.Millisecond), sum.Charges.Succeeded, sum.Charges.Declined, sum.Refunds.Count, sum.Payouts.Paid,
		sum.Stats.Requests, sum.Stats.Replays, sum.Stats.Failed, bal.Transactions, bal.TotalCents)
	if sum.Charges.Succeeded+sum.Charges.Declined != int64(rides) {
		t.Errorf("%d charges at the processor for %d rides", sum.Charges.Succeeded+sum.Charges.Declined, rides)
	}
}
