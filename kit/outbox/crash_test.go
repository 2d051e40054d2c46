package outbox_test

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
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/kit/outbox"
	"github.com/switchyard/switchyard/kit/store"
	"github.com/switchyard/switchyard/kit/store/storetest"
)

// TestMain lets the crash test re-execute this binary as the service or
// a relay.
func TestMain(m *testing.M) {
	switch os.Getenv("OUTBOX_CHILD") {
	case "service":
		exitWith(serviceChild())
	case "relay":
		exitWith(relayChild())
	}
	os.Exit(m.Run())
}

func exitWith(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, os.Getenv("OUTBOX_CHILD")+":", err)
		os.Exit(1)
	}
	os.Exit(0)
}

const crashKeys = 8

var crashMigrations = []store.Migration{{Version: 1, Name: "crash test business tables",
	SQL: "CREATE TABLE seqs (k TEXT PRIMARY KEY, n BIGINT NOT NULL);\nCREATE TABLE sent (msg_id TEXT PRIMARY KEY, k TEXT NOT NULL, n BIGINT NOT NULL);"}}

// serviceChild commits business rows with outbox messages as fast as it
// can, rolling every fifth transaction back after adding its message.
// The business rows: seqs counts per key, sent lists the committed ids.
func serviceChild() error {
	ctx := context.Background()
	db, err := store.Open(ctx, os.Getenv("OUTBOX_DB"))
	if err != nil {
		return err
	}
	fmt.Println("ready")
	errRollback := errors.New("deliberate rollback")
	for i := 0; ; i++ {
		k := "k" + strconv.Itoa(rand.IntN(crashKeys))
		rollback := i%5 == 4
		err := db.InTx(ctx, func(tx *store.Tx) error {
			var n int64
			if err := tx.QueryRow(ctx, "UPDATE seqs SET n = n + 1 WHERE k = ? RETURNING n", k).Scan(&n); err != nil {
				return err
			}
			id := fmt.Sprintf("%s-%d-%s", k, n, outbox.NewID()[:8])
			if rollback {
				id = "rb-" + id
			}
			if err := outbox.Add(ctx, tx, "queue:rides", broker.Message{ID: id, Key: k, Body: []byte(strconv.FormatInt(n, 10))}); err != nil {
				return err
			}
			if rollback {
				return errRollback
			}
			_, err := tx.Exec(ctx, "INSERT INTO sent (msg_id, k, n) VALUES (?, ?, ?)", id, k, n)
			return err
		})
		if err != nil && !errors.Is(err, errRollback) {
			return err
		}
	}
}

// relayChild runs a relay to the broker until it is killed.
func relayChild() error {
	ctx := context.Background()
	db, err := store.Open(ctx, os.Getenv("OUTBOX_DB"))
	if err != nil {
		return err
	}
	conn, err := client.Dial(ctx, os.Getenv("OUTBOX_BROKER"), client.Options{})
	if err != nil {
		return err
	}
	r, err := outbox.NewRelay(ctx, db, outbox.NewBroker(conn), outbox.RelayOptions{
		Partitions: 4, LeaseTTL: 600 * time.Millisecond, PollInterval: 20 * time.Millisecond, Batch: 50,
		OnError: func(err error) { fmt.Fprintln(os.Stderr, "relay:", err) },
	})
	if err != nil {
		return err
	}
	fmt.Println("ready")
	return r.Run(ctx)
}

func startChild(t *testing.T, role, dsn, addr string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "OUTBOX_CHILD="+role, "OUTBOX_DB="+dsn, "OUTBOX_BROKER="+addr)
	// A child never outlives the test: one orphaned by a failed run kept
	// committing to a deleted database, using most of a CPU for an hour.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
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
			if strings.TrimSpace(sc.Text()) == "ready" {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("%s did not start", role)
	}
	return cmd
}

func kill(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
}

// TestCrash SIGKILLs the service and two relays at random moments while
// they commit and publish to a real broker, restarts them, and then
// checks the queue against the committed business rows: every committed
// message arrived, no rolled-back one did, nothing twice, per-key order.
func TestCrash(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			dsn := storetest.SQLitePath(t)
			if dialect == "postgres" {
				dsn = storetest.PostgresDSN(t)
			}
			crashOutbox(t, dsn)
		})
	}
}

func crashOutbox(t *testing.T, dsn string) {
	ctx := context.Background()
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := outbox.Prepare(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, "outbox-crash", crashMigrations); err != nil {
		t.Fatal(err)
	}
	for k := range crashKeys {
		db.Exec(ctx, "INSERT INTO seqs (k, n) VALUES (?, 0)", "k"+strconv.Itoa(k))
	}
	b, addr := startBroker(t)
	if err := b.Declare("rides", broker.QueueConfig{MaxLength: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	procs := []*exec.Cmd{startChild(t, "service", dsn, addr), startChild(t, "relay", dsn, addr), startChild(t, "relay", dsn, addr)}
	roles := []string{"service", "relay", "relay"}
	defer func() {
		for _, p := range procs {
			kill(p)
		}
	}()
	kills := 0
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); {
		time.Sleep(time.Duration(20+rand.IntN(200)) * time.Millisecond)
		i := rand.IntN(len(procs))
		kill(procs[i])
		kills++
		procs[i] = startChild(t, roles[i], dsn, addr)
	}
	kill(procs[0]) // the service stops; the relays drain the outbox
	procs[0] = startChild(t, "relay", dsn, addr)
	waitFor(t, 30*time.Second, "the outbox drained", func() bool { n, err := outbox.Pending(ctx, db); return err == nil && n == 0 })

	committed := map[string][2]any{}
	rows, err := db.Query(ctx, "SELECT msg_id, k, n FROM sent")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, k string
		var n int64
		rows.Scan(&id, &k, &n)
		committed[id] = [2]any{k, n}
	}
	rows.Close()
	if len(committed) < 50 {
		t.Fatalf("only %d messages committed: the service barely ran", len(committed))
	}
	seen := map[string]int{}
	last := map[string]int64{}
	raw := 0
	for {
		q, err := b.Queue("rides")
		if err != nil {
			t.Fatal(err)
		}
		if q.Depth == 0 && q.InFlight == 0 {
			break
		}
		ds, err := b.Receive(ctx, "rides", broker.ReceiveOptions{Max: 1000, AutoAck: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			raw++
			seen[d.MsgID]++
			if strings.HasPrefix(d.MsgID, "rb-") {
				t.Errorf("rolled-back message %s reached the broker", d.MsgID)
				continue
			}
			c, ok := committed[d.MsgID]
			if !ok {
				t.Errorf("message %s reached the broker but its transaction did not commit", d.MsgID)
				continue
			}
			n, _ := strconv.ParseInt(string(d.Body), 10, 64)
			if n != c[1].(int64) || d.Key != c[0].(string) {
				t.Errorf("message %s: key %q body %d, committed %v", d.MsgID, d.Key, n, c)
			}
			if seen[d.MsgID] == 1 {
				if n <= last[d.Key] {
					t.Errorf("key %s: %d after %d: order broken", d.Key, n, last[d.Key])
				}
				last[d.Key] = n
			}
		}
	}
	for id := range committed {
		if seen[id] == 0 {
			t.Errorf("committed message %s never reached the broker", id)
		}
	}
	if len(seen) != len(committed) {
		t.Errorf("%d distinct messages at the broker, %d committed", len(seen), len(committed))
	}
	t.Logf("%d kills; %d committed messages, %d distinct delivered, %d raw deliveries (%d duplicates past the broker's dedup)",
		kills, len(committed), len(seen), raw, raw-len(seen))
}
