package inbox_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/kit/inbox"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// manualClock is an injectable clock for retention windows.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *manualClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func inboxRows(t *testing.T, db *store.DB, consumer string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), "SELECT COUNT(*) FROM sy_inbox WHERE consumer = ?", consumer).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRetentionBoundsTheTable: a consumer that only calls Inbox.Process
// (the kit/message path; before, only Handler ever expired ids, so such
// a table grew forever) keeps at most the ids of the last Retention
// (plus one ExpireEvery), and still skips every copy within Retention.
func TestRetentionBoundsTheTable(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := counterTable(ctx, db); err != nil {
			t.Fatal(err)
		}
		clock := &manualClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		in, err := inbox.New(ctx, db, inbox.Options{Consumer: "billing", Retention: time.Hour, ExpireEvery: time.Minute, Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		incr := func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE counter SET n = n + 1 WHERE id = 1")
			return err
		}
		// Ten hours of traffic, one id a minute, each delivered twice:
		// once at once and once 59 minutes later (inside the retention).
		applied := 0
		for m := range 600 {
			id := "m" + strconv.Itoa(m)
			if ok, err := in.Process(ctx, id, incr); err != nil {
				t.Fatal(err)
			} else if ok {
				applied++
			}
			if m >= 59 {
				if ok, err := in.Process(ctx, "m"+strconv.Itoa(m-59), incr); err != nil || ok {
					t.Fatalf("minute %d: a copy 59 minutes after its first delivery was applied again (%v, %v)", m, ok, err)
				}
			}
			if rows := inboxRows(t, db, "billing"); rows > 62 {
				t.Fatalf("minute %d: %d ids kept, want at most an hour's (+ one expiry interval)", m, rows)
			}
			clock.Add(time.Minute)
		}
		if applied != 600 || counter(t, db) != 600 {
			t.Fatalf("applied %d, counter %d, want 600", applied, counter(t, db))
		}
	})
}

// TestHandlerRefusesCopiesOlderThanRetention: a delivery whose id is
// not known and which was published longer ago than MaxAge (default
// 90% of Retention) may be a copy whose id already expired: the Handler
// refuses it with ErrTooOld (nacked, dead-lettered for an operator)
// instead of applying it a second time. A known id is still acked.
func TestHandlerRefusesCopiesOlderThanRetention(t *testing.T) {
	ctx := context.Background()
	db := storetest.SQLite(t)
	if err := counterTable(ctx, db); err != nil {
		t.Fatal(err)
	}
	clock := &manualClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	in, err := inbox.New(ctx, db, inbox.Options{Consumer: "c", Retention: 10 * time.Hour, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	var runs int
	h := in.Handler(ctx, "q", func(ctx context.Context, tx *store.Tx, d broker.Delivery) error {
		runs++
		_, err := tx.Exec(ctx, "UPDATE counter SET n = n + 1 WHERE id = 1")
		return err
	})
	pub := clock.Now()
	if err := h(broker.Delivery{MsgID: "fresh", PublishedAt: pub}); err != nil {
		t.Fatal(err)
	}
	clock.Add(9*time.Hour + 30*time.Minute) // past MaxAge (9h), inside Retention
	if err := h(broker.Delivery{MsgID: "fresh", PublishedAt: pub, Deliveries: 2}); err != nil {
		t.Fatalf("a known id past MaxAge: %v, want acked", err)
	}
	err = h(broker.Delivery{MsgID: "old", PublishedAt: pub})
	if !errors.Is(err, inbox.ErrTooOld) {
		t.Fatalf("unknown id published 9.5h ago with 10h retention: %v, want ErrTooOld", err)
	}
	if runs != 1 || counter(t, db) != 1 || inboxRows(t, db, "c") != 1 {
		t.Fatalf("runs %d counter %d rows %d, want 1 1 1", runs, counter(t, db), inboxRows(t, db, "c"))
	}
	// MaxAge -1 accepts any age (the caller takes the risk).
	lax, err := inbox.New(ctx, db, inbox.Options{Consumer: "lax", Retention: 10 * time.Hour, MaxAge: -1, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := lax.Handler(ctx, "q", func(ctx context.Context, tx *store.Tx, d broker.Delivery) error { return nil })(broker.Delivery{MsgID: "old", PublishedAt: pub}); err != nil {
		t.Fatal(err)
	}
	if _, err := inbox.New(ctx, db, inbox.Options{Consumer: "x", Retention: time.Hour, MaxAge: 2 * time.Hour}); err == nil {
		t.Fatal("MaxAge beyond Retention accepted")
	}
}

// TestLongMessageIDs: a producer chooses the Msg-Id, and the broker
// takes ids as long as its max_message_size. On PostgreSQL an id of a
// few KiB overflowed the primary key's btree entry ("index row size
// exceeds btree maximum"): Process failed every delivery of it, a
// message that could never be processed. Long ids are stored by digest;
// they are still applied once, and distinct long ids stay distinct.
func TestLongMessageIDs(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := counterTable(ctx, db); err != nil {
			t.Fatal(err)
		}
		incr := func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE counter SET n = n + 1 WHERE id = 1")
			return err
		}
		var b strings.Builder // incompressible, as PostgreSQL would compress a repeated one
		for i := range 8 << 10 {
			b.WriteString(strconv.FormatUint(uint64(i)*0x9e3779b97f4a7c15>>40, 36))
		}
		long := b.String()
		for i, id := range []string{long + "a", long + "a", long + "b"} {
			applied, err := inbox.Process(ctx, db, "c", id, incr)
			if err != nil || applied != (i != 1) {
				t.Fatalf("delivery %d of a %d-byte id: applied %v, %v", i, len(id), applied, err)
			}
		}
		if n := counter(t, db); n != 2 {
			t.Fatalf("counter %d, want 2", n)
		}
	})
}
