package inbox_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/kit/inbox"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// TestMain lets the crash test re-execute this binary as the consumer.
func TestMain(m *testing.M) {
	if os.Getenv("INBOX_CHILD") == "consumer" {
		if err := consumerChild(); err != nil {
			fmt.Fprintln(os.Stderr, "consumer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func counterTable(ctx context.Context, db *store.DB) error {
	return db.Migrate(ctx, "inbox-test", []store.Migration{{Version: 1, Name: "counter",
		SQL: "CREATE TABLE counter (id INTEGER PRIMARY KEY, n BIGINT NOT NULL);\nINSERT INTO counter (id, n) VALUES (1, 0);"}})
}

func counter(t testing.TB, db *store.DB) int {
	var n int
	if err := db.QueryRow(context.Background(), "SELECT n FROM counter WHERE id = 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestInbox(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := counterTable(ctx, db); err != nil {
			t.Fatal(err)
		}
		incr := func(tx *store.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE counter SET n = n + 1 WHERE id = 1")
			return err
		}
		// Once per id and consumer; a second consumer applies it too.
		for i, want := range []bool{true, false, false} {
			applied, err := inbox.Process(ctx, db, "billing", "m1", incr)
			if err != nil || applied != want {
				t.Fatalf("call %d: applied %v err %v, want %v", i, applied, err, want)
			}
		}
		if applied, err := inbox.Process(ctx, db, "stats", "m1", incr); err != nil || !applied {
			t.Fatalf("other consumer: %v %v", applied, err)
		}
		// A failing handler records nothing: the retry applies it.
		boom := errors.New("boom")
		if _, err := inbox.Process(ctx, db, "billing", "m2", func(tx *store.Tx) error { incr(tx); return boom }); !errors.Is(err, boom) {
			t.Fatal(err)
		}
		if applied, err := inbox.Process(ctx, db, "billing", "m2", incr); err != nil || !applied {
			t.Fatalf("retry after failure: %v %v", applied, err)
		}
		if n := counter(t, db); n != 3 {
			t.Fatalf("counter %d, want 3", n)
		}
		if _, err := inbox.Process(ctx, db, "", "x", incr); err == nil {
			t.Fatal("empty consumer accepted")
		}
		// Concurrent deliveries of the same ids: each applied once.
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for i := range 20 {
					if _, err := inbox.Process(ctx, db, "billing", "c"+strconv.Itoa(i), incr); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		if n := counter(t, db); n != 23 {
			t.Fatalf("counter %d after concurrent duplicates, want 23", n)
		}
		// Expiry forgets old ids only.
		if _, err := db.Exec(ctx, "UPDATE sy_inbox SET processed_ms = 0 WHERE msg_id = 'm1'"); err != nil {
			t.Fatal(err)
		}
		if n, err := inbox.Expire(ctx, db, "billing", time.Hour); err != nil || n != 1 {
			t.Fatalf("expire: %d %v", n, err)
		}
		if applied, _ := inbox.Process(ctx, db, "billing", "m1", incr); !applied {
			t.Fatal("an expired id was not applied again")
		}
		if applied, _ := inbox.Process(ctx, db, "billing", "m2", incr); applied {
			t.Fatal("a young id was forgotten")
		}
	})
}

// TestHandler consumes from a real broker through Inbox.Handler: a
// message published twice with one Msg-Id past the broker's dedup
// (dedup disabled on this queue) is applied once and acked twice.
func TestHandler(t *testing.T) {
	b, addr := startBroker(t)
	if err := b.Declare("incr", broker.QueueConfig{DedupWindow: -1}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn, err := client.Dial(ctx, addr, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	db := storetest.SQLite(t)
	if err := counterTable(ctx, db); err != nil {
		t.Fatal(err)
	}
	in, err := inbox.New(ctx, db, inbox.Options{Consumer: "counter"})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "a"} {
		if _, err := conn.Publish(ctx, "incr", broker.Message{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	var seen atomic.Int32
	h := in.Handler(ctx, "incr", func(ctx context.Context, tx *store.Tx, d broker.Delivery) error {
		_, err := tx.Exec(ctx, "UPDATE counter SET n = n + 1 WHERE id = 1")
		return err
	})
	done := make(chan error, 1)
	go func() {
		done <- conn.Consume(ctx, "incr", client.ConsumeOptions{}, func(d broker.Delivery) error { seen.Add(1); return h(d) })
	}()
	waitFor(t, 10*time.Second, "three deliveries acked", func() bool {
		q, _ := b.Queue("incr")
		return seen.Load() == 3 && q.Depth == 0 && q.InFlight == 0
	})
	cancel()
	<-done
	if n := counter(t, db); n != 2 || in.Skipped() != 1 {
		t.Fatalf("counter %d skipped %d, want 2 and 1", n, in.Skipped())
	}
}

// consumerChild is the crash test's consumer process: it consumes the
// queue through an inbox and increments the counter, printing "dup" for
// each delivery the inbox skipped, until it is killed.
func consumerChild() error {
	ctx := context.Background()
	db, err := store.Open(ctx, os.Getenv("INBOX_DB"))
	if err != nil {
		return err
	}
	conn, err := client.Dial(ctx, os.Getenv("INBOX_BROKER"), client.Options{})
	if err != nil {
		return err
	}
	in, err := inbox.New(ctx, db, inbox.Options{Consumer: "counter"})
	if err != nil {
		return err
	}
	h := in.Handler(ctx, "incr", func(ctx context.Context, tx *store.Tx, d broker.Delivery) error {
		_, err := tx.Exec(ctx, "UPDATE counter SET n = n + 1 WHERE id = 1")
		return err
	})
	fmt.Println("ready")
	for {
		err := conn.Consume(ctx, "incr", client.ConsumeOptions{MaxUnacked: 16}, func(d broker.Delivery) error {
			before := in.Skipped()
			err := h(d)
			if in.Skipped() > before {
				fmt.Println("dup")
			}
			return err
		})
		if !errors.Is(err, client.ErrDisconnected) {
			return err
		}
	}
}

// TestCrash kills the consumer at random moments while it works through
// N increments; after restarts the counter is exactly N.
func TestCrash(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			dsn := storetest.SQLitePath(t)
			if dialect == "postgres" {
				dsn = storetest.PostgresDSN(t)
			}
			crash(t, dsn)
		})
	}
}

func crash(t *testing.T, dsn string) {
	const n = 400
	ctx := context.Background()
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := counterTable(ctx, db); err != nil {
		t.Fatal(err)
	}
	b, addr := startBroker(t)
	if err := b.Declare("incr", broker.QueueConfig{VisibilityTimeout: broker.Duration(300 * time.Millisecond), MaxDeliveries: 1000}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := b.Publish(ctx, "incr", broker.Message{ID: "inc-" + strconv.Itoa(i), Body: []byte("1")}, broker.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var dups atomic.Int64
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "INBOX_CHILD=consumer", "INBOX_DB="+dsn, "INBOX_BROKER="+addr)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				switch strings.TrimSpace(sc.Text()) {
				case "ready":
					close(ready)
				case "dup":
					dups.Add(1)
				}
			}
		}()
		select {
		case <-ready:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatal("consumer did not start")
		}
		return cmd
	}
	kills := 0
	deadline := time.Now().Add(5 * time.Second)
	for counter(t, db) < n && time.Now().Before(deadline) {
		cmd := start()
		// Let it work a random while, then SIGKILL: mid-transaction,
		// between commit and ack, or idle.
		time.Sleep(time.Duration(20+rand.IntN(150)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		kills++
		if c := counter(t, db); c > n {
			t.Fatalf("counter %d exceeds %d after %d kills", c, n, kills)
		}
	}
	// The last one runs to the end.
	cmd := start()
	defer func() { cmd.Process.Signal(syscall.SIGKILL); cmd.Wait() }()
	waitFor(t, 30*time.Second, "every message acked", func() bool {
		q, _ := b.Queue("incr")
		return q.Depth == 0 && q.InFlight == 0
	})
	var rows int
	db.QueryRow(ctx, "SELECT COUNT(*) FROM sy_inbox WHERE consumer = 'counter'").Scan(&rows)
	if c := counter(t, db); c != n || rows != n {
		t.Fatalf("after %d kills: counter %d, inbox rows %d, want %d", kills, c, rows, n)
	}
	t.Logf("%d kills; counter %d == %d; %d redeliveries of processed messages skipped (seen by surviving stdout)", kills, n, n, dups.Load())
}
