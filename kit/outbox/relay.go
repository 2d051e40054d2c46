package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/store"
)

// RelayOptions configure a Relay. Zero fields take the defaults.
type RelayOptions struct {
	// Holder names this replica in the leases; unique per replica.
	// Default: host name, process id and a random suffix.
	Holder string
	// Partitions is how many partitions keys hash to; every replica of
	// one outbox must use the same number. Default 16.
	Partitions int
	// LeaseTTL is how long a partition stays with a replica that stopped
	// renewing it (died): the takeover delay. Leases are renewed every
	// third of it. Default 10s.
	LeaseTTL time.Duration
	// Batch is the most messages read and published per round. Default 500.
	Batch int
	// PollInterval is how often the relay looks for messages without a
	// notification. Default 1s.
	PollInterval time.Duration
	// MaxBackoff caps the wait after a failed round (it doubles from
	// 50ms). Default 5s.
	MaxBackoff time.Duration
	// OnError, when set, is called with every failed round's error (a
	// publish the broker refused, a lost database); the relay retries.
	// A message parked as refused for good is reported as a *ParkedError
	// (log it: an operator has to look at it).
	OnError func(error)
	// TracerProvider records a producer span ("publish DEST") per message
	// that Add stored with trace context, a child of it (the business
	// request's span), whose context the published message carries on.
	// Default: OpenTelemetry's global provider (no-op unless installed,
	// see package telemetry).
	TracerProvider trace.TracerProvider
}

func (o RelayOptions) withDefaults() RelayOptions {
	if o.Holder == "" {
		host, _ := os.Hostname()
		o.Holder = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), NewID()[:8])
	}
	if o.Partitions == 0 {
		o.Partitions = 16
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 10 * time.Second
	}
	if o.Batch == 0 {
		o.Batch = 500
	}
	if o.PollInterval == 0 {
		o.PollInterval = time.Second
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 5 * time.Second
	}
	return o
}

// Validate reports every bad option at once.
func (o RelayOptions) Validate() error {
	var errs []error
	if o.Partitions < 0 || o.Partitions > 4096 {
		errs = append(errs, fmt.Errorf("partitions %d: want 1..4096", o.Partitions))
	}
	if o.LeaseTTL < 0 || (o.LeaseTTL > 0 && o.LeaseTTL < 30*time.Millisecond) {
		errs = append(errs, fmt.Errorf("lease TTL %s: want at least 30ms", o.LeaseTTL))
	}
	if o.Batch < 0 || o.Batch > 10000 {
		errs = append(errs, fmt.Errorf("batch %d: want 1..10000", o.Batch))
	}
	if o.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("poll interval %s: negative", o.PollInterval))
	}
	if o.MaxBackoff < 0 {
		errs = append(errs, fmt.Errorf("max backoff %s: negative", o.MaxBackoff))
	}
	return errors.Join(errs...)
}

// RelayStats count what a relay did.
type RelayStats struct {
	Published int64 // messages confirmed by the broker and deleted
	Rounds    int64 // batches published
	// Reads counts reads of the outbox, including those that found
	// nothing to send (a wake-up that came for nothing).
	Reads  int64
	Errors int64 // failed rounds
	// Late counts messages of rounds that finished (published and
	// deleted) after the lease of a partition they read had expired: a
	// replica stalled longer than the lease TTL (overload, a GC pause, a
	// slow disk). Another replica may have published those messages too;
	// the broker's dedup drops such copies. Zero in steady state.
	Late int64
	// Lost counts partitions this replica found taken over by another (or
	// expired) when it came to renew them: it stalled past the lease TTL.
	// Zero in steady state.
	Lost int64
	// Parked counts messages the broker refused for good (too large),
	// moved to sy_outbox_parked (see the package doc's Parking).
	Parked int64
}

// Relay publishes committed outbox messages (see the package doc). Run
// it in every replica of the service, or in a process of its own.
type Relay struct {
	db     *store.DB
	pub    Publisher
	opts   RelayOptions
	tracer trace.Tracer

	mu   sync.Mutex
	held map[int]store.Lease // partitions this replica leads

	roundMu sync.Mutex // held by a round's read and the start of its publish
	// reader is the connection the rounds read the outbox on, kept for
	// the relay's life (under roundMu): taken from the shared pool per
	// read, a read found every idle connection busy whenever the
	// service's own transactions grew the pool and waited for a new one
	// to be opened (85-90 ms on PostgreSQL here), holding back every
	// message committed meanwhile.
	reader *sql.Conn

	// Rounds in flight: a round's publish runs beside the next rounds'
	// reads and publishes (up to maxInFlight at once), so a message
	// committed while a batch waits for its confirm goes out at once
	// instead of after it. A later round skips the rows in flight and
	// every row whose key (per destination) has one in flight, so a key's
	// messages are never out at once: if a batch fails, its rows and
	// every later row of its keys are published again in order.
	flightMu   sync.Mutex
	flight     sync.WaitGroup
	flightSem  chan struct{}           // a slot per round in flight
	flightIDs  map[int64]struct{}      // rows being published
	flightKeys map[string]int          // dest + NUL + key -> rows being published
	flightAt   map[*struct{}]time.Time // each round in flight: when it began
	freed      chan struct{}           // a round in flight ended (capacity 1)
	failed     atomic.Bool             // a round in flight failed: back off

	// Deletes of confirmed messages run beside the next round's publish
	// (on SQLite a delete may queue for the write lock behind the
	// service's transactions). pending holds the ids confirmed and not
	// yet deleted; reads skip them, and rebalance waits for them before
	// it may give a partition away. Rounds queue their confirmed rows
	// without waiting for the deleter (a round that waited for a slow
	// delete held up every message committed meanwhile: seconds on a
	// loaded SQLite) unless more than maxPending rows wait.
	delMu   sync.Mutex
	delDone *sync.Cond
	pending map[int64]struct{}
	queued  []confirmed   // confirmed rows the deleter has not taken yet
	delKick chan struct{} // the deleter has work (capacity 1)
	delStop chan struct{} // closed by Run on its way out

	published, rounds, reads, errs, late, lost, parked atomic.Int64
}

// NewRelay prepares the outbox tables and returns a relay that publishes
// through pub. Start it with Run.
func NewRelay(ctx context.Context, db *store.DB, pub Publisher, opts RelayOptions) (*Relay, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("outbox: relay options: %w", err)
	}
	if pub == nil {
		return nil, errors.New("outbox: relay needs a Publisher")
	}
	if err := Prepare(ctx, db); err != nil {
		return nil, err
	}
	if err := db.PrepareLeasesOnce(ctx); err != nil {
		return nil, err
	}
	tp := opts.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	r := &Relay{db: db, pub: pub, opts: opts.withDefaults(), held: map[int]store.Lease{}, pending: map[int64]struct{}{},
		tracer: tp.Tracer("github.com/switchyard/switchyard/kit/outbox")}
	r.delDone = sync.NewCond(&r.delMu)
	r.flightSem = make(chan struct{}, maxInFlight)
	r.flightIDs, r.flightKeys, r.flightAt = map[int64]struct{}{}, map[string]int{}, map[*struct{}]time.Time{}
	r.freed = make(chan struct{}, 1)
	return r, nil
}

// Stats returns the relay's counters.
func (r *Relay) Stats() RelayStats {
	return RelayStats{Published: r.published.Load(), Rounds: r.rounds.Load(), Reads: r.reads.Load(), Errors: r.errs.Load(), Late: r.late.Load(), Lost: r.lost.Load(),
		Parked: r.parked.Load()}
}

// Held returns the partitions this replica leads now, in order.
func (r *Relay) Held() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	ps := make([]int, 0, len(r.held))
	for p := range r.held {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

func (r *Relay) partitionLease(p int) string {
	return fmt.Sprintf("outbox.p%d.of%d", p, r.opts.Partitions)
}

const memberPrefix = "outbox.member."

// Run publishes until ctx ends, then gives its leases up so that other
// replicas take its partitions at once, and returns ctx's error. Failed
// rounds are retried with backoff (and reported to OnError).
func (r *Relay) Run(ctx context.Context) error {
	wake, stop := r.db.Listen(Channel)
	defer stop()
	defer r.releaseAll()
	r.delKick, r.delStop = make(chan struct{}, 1), make(chan struct{})
	deleterDone := make(chan struct{})
	go func() { defer close(deleterDone); r.deleter(ctx) }()
	defer func() { close(r.delStop); <-deleterDone }()
	defer r.flight.Wait() // the rounds in flight queue their deletes first
	defer func() { r.roundMu.Lock(); r.dropReader(); r.roundMu.Unlock() }()
	// Leases are kept by a goroutine of their own, so that a renewal
	// queued behind the service's transactions (SQLite's one writer)
	// never holds up publishing.
	kick := make(chan struct{}, 1)
	lctx, stopLeases := context.WithCancel(ctx)
	leasesDone := make(chan struct{})
	go func() { defer close(leasesDone); r.keepLeases(lctx, kick) }()
	defer func() { stopLeases(); <-leasesDone }()
	o := r.opts
	backoff := time.Duration(0)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, sent, err := r.round(ctx)
		if r.failed.Swap(false) && err == nil {
			err = errFailedInFlight
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != errFailedInFlight {
				r.fail(ctx, err)
			}
			backoff = min(max(2*backoff, 50*time.Millisecond), o.MaxBackoff)
			if !sleep(ctx, backoff) {
				return ctx.Err()
			}
			continue
		}
		backoff = 0
		if n >= o.Batch && sent > 0 {
			continue // more may be waiting
		}
		// Rows skipped because their key was in flight go when that
		// round ends (freed); anything else waits for a wake-up.
		var freed <-chan struct{}
		if sent < n {
			freed = r.freed
		}
		t := time.NewTimer(o.PollInterval)
		select {
		case <-wake:
		case <-kick:
		case <-freed:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// keepLeases rebalances every third of the lease TTL until ctx ends,
// kicking the publishing loop when it took partitions.
func (r *Relay) keepLeases(ctx context.Context, kick chan<- struct{}) {
	every := r.opts.LeaseTTL / 3
	for {
		before := len(r.Held())
		// A publishing loop stuck in one round (a broker that never
		// answers) must not keep its partitions: renew nothing, so that
		// the other replicas take them over after the TTL.
		if st := r.oldestRound(); !st.IsZero() && time.Since(st) > r.opts.LeaseTTL/2 {
			r.fail(ctx, fmt.Errorf("outbox relay: a publish round has run for %s; letting the leases lapse", time.Since(st).Round(time.Millisecond)))
		} else if err := r.rebalance(ctx); err != nil {
			r.fail(ctx, err)
		}
		if len(r.Held()) > before {
			select {
			case kick <- struct{}{}:
			default:
			}
		}
		if !sleep(ctx, every) {
			return
		}
	}
}

func (r *Relay) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	r.errs.Add(1)
	if r.opts.OnError != nil {
		r.opts.OnError(err)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// rebalance renews this replica's membership and partition leases, takes
// free partitions up to its fair share (partitions / live replicas,
// rounded up) and gives up partitions beyond it.
func (r *Relay) rebalance(ctx context.Context) error {
	o := r.opts
	if _, _, err := r.db.TryLease(ctx, memberPrefix+o.Holder, o.Holder, o.LeaseTTL); err != nil {
		return fmt.Errorf("outbox relay: membership lease: %w", err)
	}
	var members int
	if err := r.db.QueryRow(ctx, "SELECT COUNT(*) FROM sy_leases WHERE name LIKE ? AND expires_ms > ?",
		memberPrefix+"%", time.Now().UnixMilli()).Scan(&members); err != nil {
		return fmt.Errorf("outbox relay: counting replicas: %w", err)
	}
	share := (o.Partitions + max(members, 1) - 1) / max(members, 1)
	r.mu.Lock()
	held := make(map[int]store.Lease, len(r.held))
	for p, l := range r.held {
		held[p] = l
	}
	r.mu.Unlock()
	var errs []error
	for p := range held {
		l, ok, err := r.db.TryLease(ctx, r.partitionLease(p), o.Holder, o.LeaseTTL)
		switch {
		case err != nil:
			errs = append(errs, err) // keep it until it expires locally
		case ok:
			if held[p].Expires.Before(time.Now()) {
				r.lost.Add(1) // it had expired before the renewal: someone may have led it meanwhile
			}
			held[p] = l
		default:
			r.lost.Add(1)
			delete(held, p)
		}
	}
	// Start at a random partition so that replicas starting together do
	// not all contend for partition 0 first.
	start := rand.IntN(o.Partitions)
	for i := 0; i < o.Partitions && len(held) < share; i++ {
		p := (start + i) % o.Partitions
		if _, ok := held[p]; ok {
			continue
		}
		l, ok, err := r.db.TryLease(ctx, r.partitionLease(p), o.Holder, o.LeaseTTL)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			held[p] = l
		}
	}
	var extra []int
	for p := range held {
		if len(held)-len(extra) <= share {
			break
		}
		extra = append(extra, p)
	}
	for _, p := range extra {
		delete(held, p)
	}
	r.mu.Lock()
	r.held = held
	r.mu.Unlock()
	if len(extra) > 0 {
		// Before giving partitions away: let the round that may be
		// publishing them finish, and its rows be deleted, so that their
		// next leader does not publish them again.
		r.roundMu.Lock()
		r.flight.Wait()
		r.roundMu.Unlock()
		r.flushDeletes()
		for _, p := range extra {
			if err := r.db.ReleaseLease(ctx, r.partitionLease(p), o.Holder); err != nil && !errors.Is(err, store.ErrNotHeld) {
				errs = append(errs, err) // it expires by itself
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("outbox relay: partition leases: %w", errors.Join(errs...))
	}
	return nil
}

// releaseAll gives up every lease this replica holds (on the way out).
func (r *Relay) releaseAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r.mu.Lock()
	held := r.held
	r.held = map[int]store.Lease{}
	r.mu.Unlock()
	for p := range held {
		r.db.ReleaseLease(ctx, r.partitionLease(p), r.opts.Holder)
	}
	r.db.ReleaseLease(ctx, memberPrefix+r.opts.Holder, r.opts.Holder)
}

// usable returns the partitions whose leases have at least a third of the
// TTL left, enough to publish a batch before anyone may take them over,
// and the earliest expiry among them.
func (r *Relay) usable() ([]int, time.Time) {
	margin := time.Now().Add(r.opts.LeaseTTL / 3)
	r.mu.Lock()
	defer r.mu.Unlock()
	var ps []int
	var first time.Time
	for p, l := range r.held {
		if l.Expires.After(margin) {
			ps = append(ps, p)
			if first.IsZero() || l.Expires.Before(first) {
				first = l.Expires
			}
		}
	}
	slices.Sort(ps)
	return ps, first
}

type row struct {
	id      int64
	dst     string
	deliver int64 // earliest delivery, unix ms; 0 = at once
	msg     broker.Message
}

// maxInFlight is how many rounds may publish at once.
const maxInFlight = 4

// errFailedInFlight says a round in flight failed (reported already):
// the publishing loop backs off.
var errFailedInFlight = errors.New("outbox relay: a round in flight failed")

// oldestRound is when the oldest round in flight began (zero: none).
func (r *Relay) oldestRound() time.Time {
	r.flightMu.Lock()
	defer r.flightMu.Unlock()
	var first time.Time
	for _, t := range r.flightAt {
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	return first
}

func flightKey(rw row) string { return rw.dst + "\x00" + rw.msg.Key }

// round reads one batch of the partitions this replica leads and starts
// publishing it (the confirmed rows are then queued for deletion),
// without waiting for the broker: it returns how many rows it read and
// how many it sent out. Rows in flight and rows whose key has one in
// flight are read but not sent.
func (r *Relay) round(ctx context.Context) (read, sent int, err error) {
	select {
	case r.flightSem <- struct{}{}:
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	slot := true
	defer func() {
		if slot {
			<-r.flightSem
		}
	}()
	r.roundMu.Lock()
	defer r.roundMu.Unlock()
	ps, expires := r.usable()
	if len(ps) == 0 {
		return 0, 0, nil
	}
	q := "SELECT id, msg_id, dest, msg_key, body, headers, deliver_ms, ttl_ms FROM sy_outbox"
	if len(ps) < r.opts.Partitions {
		var b strings.Builder
		for i, p := range ps {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(p))
		}
		q += fmt.Sprintf(" WHERE khash %% %d IN (%s)", r.opts.Partitions, b.String())
	}
	// Skip the rows confirmed but not yet deleted, as they were before the
	// read: a delete that commits during the read has its ids in this
	// copy, while the deleter may already have dropped them from pending.
	// And the rows in flight, which are not pending until confirmed, and
	// the keys in flight, taken together: a round in flight that fails
	// during the read must not free its key for this batch while its
	// rows are skipped.
	// Rows in flight first: one that ends meanwhile is pending by then.
	r.flightMu.Lock()
	skip := make(map[int64]struct{}, len(r.flightIDs))
	for id := range r.flightIDs {
		skip[id] = struct{}{}
	}
	busy := make(map[string]bool, len(r.flightKeys))
	for k := range r.flightKeys {
		busy[k] = true
	}
	r.flightMu.Unlock()
	r.delMu.Lock()
	for id := range r.pending {
		skip[id] = struct{}{}
	}
	r.delMu.Unlock()
	q += " ORDER BY id LIMIT " + strconv.Itoa(r.opts.Batch+len(skip))
	if r.reader == nil && r.keepReader() {
		if r.reader, err = r.db.Conn(ctx); err != nil {
			r.reader = nil
			return 0, 0, fmt.Errorf("outbox relay: a connection to read the outbox on: %w", err)
		}
	}
	var rows *sql.Rows
	if r.reader != nil {
		rows, err = r.reader.QueryContext(ctx, q)
	} else {
		rows, err = r.db.Query(ctx, q)
	}
	if err != nil {
		r.dropReader()
		return 0, 0, fmt.Errorf("outbox relay: reading the outbox: %w", err)
	}
	r.reads.Add(1)
	batch, err := scanRows(rows)
	if err != nil {
		r.dropReader()
		return 0, 0, fmt.Errorf("outbox relay: reading the outbox: %w", err)
	}
	batch = slices.DeleteFunc(batch, func(rw row) bool { _, ok := skip[rw.id]; return ok })
	batch = batch[:min(len(batch), r.opts.Batch)]
	read = len(batch)
	if read == 0 {
		return 0, 0, nil
	}
	// Leave the keys in flight for a later round (their rows in id
	// order behind the ones out), and take this batch's in their place.
	batch = slices.DeleteFunc(batch, func(rw row) bool { return busy[flightKey(rw)] })
	r.flightMu.Lock()
	for _, rw := range batch {
		r.flightIDs[rw.id] = struct{}{}
		r.flightKeys[flightKey(rw)]++
	}
	me := new(struct{})
	if len(batch) > 0 {
		r.flightAt[me] = time.Now()
	}
	r.flightMu.Unlock()
	if len(batch) == 0 {
		return read, 0, nil
	}
	slot = false
	r.flight.Add(1)
	go func() {
		defer r.flight.Done()
		err := r.publishRound(ctx, batch, expires)
		r.flightMu.Lock()
		for _, rw := range batch {
			delete(r.flightIDs, rw.id)
			k := flightKey(rw)
			if r.flightKeys[k]--; r.flightKeys[k] <= 0 {
				delete(r.flightKeys, k)
			}
		}
		delete(r.flightAt, me)
		r.flightMu.Unlock()
		<-r.flightSem
		if err != nil {
			r.fail(ctx, err)
			r.failed.Store(true)
		}
		select {
		case r.freed <- struct{}{}:
		default:
		}
	}()
	return read, len(batch), nil
}

// keepReader reports whether the handle's pool has room for a read
// connection kept for the relay's life: not in a pool of fewer than
// minPoolForReader connections (a service that set SetMaxOpenConns(1)
// would wait forever for its own transactions' connection), where the
// rounds read on a pooled connection each time.
func (r *Relay) keepReader() bool {
	m := r.db.Stats().MaxOpenConnections
	return m == 0 || m >= minPoolForReader
}

// minPoolForReader is the smallest pool the relay keeps a read
// connection of (see keepReader): the service's transactions, the
// deleter and the lease keeper share the rest.
const minPoolForReader = 4

// dropReader gives the read connection back after an error (the pool
// discards a broken one); the next round takes another. Under roundMu.
func (r *Relay) dropReader() {
	if r.reader != nil {
		r.reader.Close()
		r.reader = nil
	}
}

// publishRound publishes a round's batch, one publish per destination,
// parks what the broker refused for good and queues the confirmed rows
// for deletion (they are pending, skipped by reads, from then on).
func (r *Relay) publishRound(ctx context.Context, batch []row, expires time.Time) error {
	// One publish per destination, each in row order (the key order);
	// destinations are independent of each other.
	var dests []string
	byDest := map[string][]row{}
	for _, rw := range batch {
		if _, ok := byDest[rw.dst]; !ok {
			dests = append(dests, rw.dst)
		}
		byDest[rw.dst] = append(byDest[rw.dst], rw)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		done   []int64
		parked []parkedRow
		errs   []error
	)
	for _, d := range dests {
		rs := byDest[d]
		wg.Go(func() {
			msgs := make([]broker.Message, len(rs))
			for i, rw := range rs {
				msgs[i] = rw.msg
				if rw.deliver > 0 { // what is left of the delay
					msgs[i].Delay = max(time.Until(time.UnixMilli(rw.deliver)), 0)
				}
			}
			ok, park, err := r.publish(ctx, d, rs, msgs)
			mu.Lock()
			defer mu.Unlock()
			done = append(done, ok...)
			parked = append(parked, park...)
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if len(parked) > 0 {
		if err := r.park(ctx, parked); err != nil {
			errs = append(errs, err) // they stay, and are tried (and parked) again
		}
	}
	if len(done) > 0 {
		r.rounds.Add(1)
		r.delMu.Lock()
		for _, id := range done {
			r.pending[id] = struct{}{}
		}
		r.queued = append(r.queued, confirmed{ids: done, expires: expires})
		select {
		case r.delKick <- struct{}{}:
		default:
		}
		// Back-pressure only when deletes fall far behind (the next
		// reads fetch and skip every pending row).
		for len(r.pending) > r.maxPending() {
			r.delDone.Wait()
		}
		r.delMu.Unlock()
	}
	return errors.Join(errs...)
}

// parkedRow is a row the broker refused for good, and its answer.
type parkedRow struct {
	rw  row
	err error
}

// ParkedError is what OnError hears when the relay parked a message the
// broker refused for good (see the package doc's Parking).
type ParkedError struct {
	ID    int64  // the row id in sy_outbox_parked (and formerly sy_outbox)
	MsgID string // the message's id
	Dest  string
	Err   error // the broker's answer
}

func (e *ParkedError) Error() string {
	return fmt.Sprintf("outbox relay: parked message %q (row %d) for %s in sy_outbox_parked: %v; see Parked and Redrive, or `switchyard outbox parked`", e.MsgID, e.ID, e.Dest, e.Err)
}

func (e *ParkedError) Unwrap() error { return e.Err }

// refusedForGood reports whether the broker will refuse a message
// whatever the retries.
func refusedForGood(err error) bool { return errors.Is(err, broker.ErrTooLarge) }

// publish publishes the rows rs of destination d (as msgs) in one batch.
// If the broker refuses the batch for good (a message too large), it
// publishes them one at a time, in order, to tell the refused ones
// (park) from the rest; it stops at the first other error. ok are the
// rows the broker confirmed.
func (r *Relay) publish(ctx context.Context, d string, rs []row, msgs []broker.Message) (ok []int64, park []parkedRow, err error) {
	err = r.publishSpans(ctx, d, msgs)
	if err == nil {
		for _, rw := range rs {
			ok = append(ok, rw.id)
		}
		return ok, nil, nil
	}
	if !refusedForGood(err) {
		return nil, nil, err
	}
	if len(rs) == 1 {
		return nil, []parkedRow{{rw: rs[0], err: err}}, nil
	}
	for i, rw := range rs {
		err := r.publishSpans(ctx, d, msgs[i:i+1])
		switch {
		case err == nil:
			ok = append(ok, rw.id)
		case refusedForGood(err):
			park = append(park, parkedRow{rw: rw, err: err})
		default:
			return ok, park, err
		}
	}
	return ok, park, nil
}

// publishSpans publishes msgs to d within producer spans.
func (r *Relay) publishSpans(ctx context.Context, d string, msgs []broker.Message) error {
	spans := r.startSpans(d, msgs)
	err := r.pub.Publish(ctx, d, msgs...)
	for _, sp := range spans {
		if err != nil {
			sp.SetStatus(otelcodes.Error, err.Error())
		}
		sp.End()
	}
	return err
}

// park moves refused rows to sy_outbox_parked, one transaction each, and
// reports them.
func (r *Relay) park(ctx context.Context, ps []parkedRow) error {
	now := time.Now().UnixMilli()
	for _, p := range ps {
		err := r.db.InTx(ctx, func(tx *store.Tx) error {
			res, err := tx.Exec(ctx, `INSERT INTO sy_outbox_parked (id, msg_id, dest, msg_key, khash, seq, body, headers, deliver_ms, ttl_ms, created_ms, error, parked_ms)
				SELECT id, msg_id, dest, msg_key, khash, seq, body, headers, deliver_ms, ttl_ms, created_ms, ?, ? FROM sy_outbox WHERE id = ?`,
				p.err.Error(), now, p.rw.id)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				return err // gone already (another replica parked it)
			}
			_, err = tx.Exec(ctx, "DELETE FROM sy_outbox WHERE id = ?", p.rw.id)
			return err
		})
		if err != nil {
			return fmt.Errorf("outbox relay: parking message %q (row %d) refused by the broker (%v): %w", p.rw.msg.ID, p.rw.id, p.err, err)
		}
		r.parked.Add(1)
		if r.opts.OnError != nil { // not a failed round: Errors stays
			r.opts.OnError(&ParkedError{ID: p.rw.id, MsgID: p.rw.msg.ID, Dest: p.rw.dst, Err: p.err})
		}
	}
	return nil
}

// startSpans starts a producer span for each message stored with trace
// context, a child of it, and puts the span's context in the message
// instead (its headers are the relay's own copy, decoded from the row).
func (r *Relay) startSpans(dest string, msgs []broker.Message) []trace.Span {
	var spans []trace.Span
	for i := range msgs {
		m := &msgs[i]
		if _, ok := m.Headers[broker.HeaderTraceparent]; !ok {
			continue
		}
		ctx, sp := r.tracer.Start(broker.TraceContext(context.Background(), m.Headers), "publish "+dest, trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(attribute.String("messaging.destination.name", dest), attribute.String("messaging.message.id", m.ID)))
		if !sp.SpanContext().IsValid() {
			sp.End()
			continue
		}
		delete(m.Headers, broker.HeaderTraceparent)
		delete(m.Headers, broker.HeaderTracestate)
		propagation.TraceContext{}.Inject(ctx, propagation.MapCarrier(m.Headers))
		spans = append(spans, sp)
	}
	return spans
}

// confirmed are rows the broker confirmed, to delete; expires is the
// earliest lease expiry of the round that published them.
type confirmed struct {
	ids     []int64
	expires time.Time
}

// maxPending is how many confirmed rows may wait for their delete
// before a round waits for the deleter: 64 full batches.
func (r *Relay) maxPending() int { return 64 * r.opts.Batch }

// deleter deletes confirmed rows, every round's queued so far at a time,
// until Run closes r.delStop (then once more, for what is queued).
func (r *Relay) deleter(ctx context.Context) {
	for stopping := false; !stopping; {
		select {
		case <-r.delKick:
		case <-r.delStop:
			stopping = true
		}
		r.delMu.Lock()
		cs := r.queued
		r.queued = nil
		r.delMu.Unlock()
		if len(cs) == 0 {
			continue
		}
		var ids []int64
		for _, c := range cs {
			ids = append(ids, c.ids...)
		}
		err := r.delete(ctx, ids)
		now := time.Now()
		if err != nil {
			r.fail(ctx, err) // they stay and are published again: the broker drops the copies
		} else {
			r.published.Add(int64(len(ids)))
			for _, c := range cs {
				if now.After(c.expires) {
					r.late.Add(int64(len(c.ids)))
				}
			}
		}
		r.delMu.Lock()
		for _, id := range ids {
			delete(r.pending, id)
		}
		r.delDone.Broadcast()
		r.delMu.Unlock()
	}
}

// flushDeletes waits until every confirmed row is deleted (or its delete
// failed), so that no partition changes hands with rows its next leader
// would publish again.
func (r *Relay) flushDeletes() {
	r.delMu.Lock()
	for len(r.pending) > 0 {
		r.delDone.Wait()
	}
	r.delMu.Unlock()
}

func scanRows(rows *sql.Rows) ([]row, error) {
	defer rows.Close()
	var out []row
	for rows.Next() {
		var (
			rw             row
			headers        string
			deliver, ttlMS int64
		)
		if err := rows.Scan(&rw.id, &rw.msg.ID, &rw.dst, &rw.msg.Key, &rw.msg.Body, &headers, &deliver, &ttlMS); err != nil {
			return nil, err
		}
		if headers != "" {
			if err := json.Unmarshal([]byte(headers), &rw.msg.Headers); err != nil {
				return nil, fmt.Errorf("message %q: headers: %w", rw.msg.ID, err)
			}
		}
		rw.msg.TTL = time.Duration(ttlMS) * time.Millisecond
		out = append(out, rw)
	}
	return out, rows.Err()
}

// delete removes published rows. It needs no fencing: a row is deleted
// only after the broker confirmed it, whoever leads its partition now.
func (r *Relay) delete(ctx context.Context, ids []int64) error {
	// The broker has the messages: finish the delete even if ctx ends now,
	// or the next leader publishes them again (harmless, but wasted).
	ctx = context.WithoutCancel(ctx)
	for chunk := range slices.Chunk(ids, 500) {
		var b strings.Builder
		args := make([]any, len(chunk))
		for i, id := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('?')
			args[i] = id
		}
		if _, err := r.db.Exec(ctx, "DELETE FROM sy_outbox WHERE id IN ("+b.String()+")", args...); err != nil {
			return fmt.Errorf("outbox relay: deleting %d published messages: %w", len(chunk), err)
		}
	}
	return nil
}
