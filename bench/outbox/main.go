// Command outbox measures the transactional outbox against a real broker
// (in this process, native protocol over loopback TCP, default fsync
// policy): the relay's drain throughput (messages committed ahead, then
// published and confirmed per second) and the commit-to-confirm latency
// of messages committed one per transaction at a fixed rate.
//
//	go run ./bench/outbox -db sqlite
//	go run ./bench/outbox -db postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//
// It prints RESULT lines. A PostgreSQL run uses a schema of its own,
// dropped at the end.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/native"
	"github.com/switchyard/switchyard/kit/outbox"
	"github.com/switchyard/switchyard/kit/store"
)

func main() {
	dbURL := flag.String("db", "sqlite", "`database`: sqlite (a temporary file) or a postgres:// URL")
	n := flag.Int("messages", 20000, "messages for the throughput run")
	rate := flag.Int("rate", 500, "messages per `second` for the latency run (one per transaction)")
	dur := flag.Duration("duration", 5*time.Second, "length of the latency run")
	batch := flag.Int("batch", 500, "relay batch size")
	size := flag.Int("size", 256, "message body size in `bytes`")
	flag.IntVar(&producers, "producers", 4, "concurrent producer transactions in the latency run")
	flag.Parse()
	if err := run(*dbURL, *n, *rate, *dur, *batch, *size); err != nil {
		fmt.Fprintln(os.Stderr, "outbox bench:", err)
		os.Exit(1)
	}
}

var producers int

// cpuTime is this process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// confirmer publishes through the broker client and notes when each
// message was confirmed.
type confirmer struct {
	pub     outbox.Publisher
	mu      sync.Mutex
	at      map[string]time.Time // confirmed
	started map[string]time.Time // handed to the broker client (the relay's read is done)
	done    chan struct{}
	want    int
	// The relay's side, per publish call: messages in it, and how many
	// other publishes were in flight when it began (a relay that waits
	// for each batch's confirm before reading the next has none).
	inFlight int
	sizes    []int
	overlap  []int
}

func (c *confirmer) Publish(ctx context.Context, dest string, msgs ...broker.Message) error {
	start := time.Now()
	c.mu.Lock()
	c.sizes = append(c.sizes, len(msgs))
	c.overlap = append(c.overlap, c.inFlight)
	c.inFlight++
	c.mu.Unlock()
	err := c.pub.Publish(ctx, dest, msgs...)
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inFlight--
	if err != nil {
		return err
	}
	for _, m := range msgs {
		c.at[m.ID] = now
		c.started[m.ID] = start
	}
	if len(c.at) >= c.want && c.done != nil {
		close(c.done)
		c.done = nil
	}
	return nil
}

func run(dbURL string, n, rate int, dur time.Duration, batch, size int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tmp, err := os.MkdirTemp("", "outbox-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	b, err := engine.Open(engine.Config{Dir: filepath.Join(tmp, "broker")})
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.Declare("bench", broker.QueueConfig{MaxLength: 10_000_000, MaxMessageSize: 1 << 20}); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go native.New(b, native.Options{}).Serve(ctx, ln)
	conn, err := client.Dial(ctx, ln.Addr().String(), client.Options{})
	if err != nil {
		return err
	}
	defer conn.Close()

	dialect := "sqlite"
	dsn := "sqlite:" + filepath.Join(tmp, "svc.db")
	if strings.HasPrefix(dbURL, "postgres") {
		dialect = "postgres"
		admin, err := store.Open(ctx, dbURL)
		if err != nil {
			return err
		}
		var r [6]byte
		rand.Read(r[:])
		schema := "sybench_" + hex.EncodeToString(r[:])
		if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
			return err
		}
		defer func() { admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); admin.Close() }()
		sep := "?"
		if strings.Contains(dbURL, "?") {
			sep = "&"
		}
		dsn = dbURL + sep + "search_path=" + schema
	} else if dbURL != "sqlite" {
		return fmt.Errorf("-db %q: want sqlite or a postgres:// URL", dbURL)
	}
	db, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := outbox.Prepare(ctx, db); err != nil {
		return err
	}
	if _, err := db.Exec(ctx, "CREATE TABLE rides (id TEXT PRIMARY KEY, v INTEGER)"); err != nil {
		return err
	}
	body := make([]byte, size)

	// Throughput: commit n messages ahead (1000 per transaction, keys
	// spread over 64 aggregates), then time the relay draining them.
	for i := 0; i < n; i += 1000 {
		err := db.InTx(ctx, func(tx *store.Tx) error {
			msgs := make([]broker.Message, 0, 1000)
			for j := i; j < min(i+1000, n); j++ {
				msgs = append(msgs, broker.Message{Key: "k" + strconv.Itoa(j%64), Body: body})
			}
			return outbox.Add(ctx, tx, "queue:bench", msgs...)
		})
		if err != nil {
			return err
		}
	}
	c := &confirmer{pub: outbox.NewBroker(conn), at: map[string]time.Time{}, started: map[string]time.Time{}, done: make(chan struct{}), want: n}
	done := c.done
	relay, err := outbox.NewRelay(ctx, db, c, outbox.RelayOptions{Batch: batch, Partitions: 4, PollInterval: 100 * time.Millisecond})
	if err != nil {
		return err
	}
	start := time.Now()
	rctx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan struct{})
	go func() { relay.Run(rctx); close(relayDone) }()
	defer func() { stopRelay(); <-relayDone }()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		return errors.New("throughput run did not finish in 5 minutes")
	}
	el := time.Since(start)
	fmt.Printf("RESULT outbox_relay_throughput db=%s messages=%d batch=%d size=%d msgs_per_s=%.0f\n", dialect, n, batch, size, float64(n)/el.Seconds())

	// Between the runs: wait until the burst's rows are deleted, so the
	// latency run starts with an idle relay, and time one message alone
	// (the first after a burst: reported on its own line).
	for deadline := time.Now().Add(time.Minute); relay.Stats().Published < int64(n); {
		if time.Now().After(deadline) {
			return errors.New("the throughput run's rows were not deleted within a minute")
		}
		time.Sleep(time.Millisecond)
	}
	c.mu.Lock()
	c.want = len(c.at) + 1
	c.done = make(chan struct{})
	done = c.done
	c.mu.Unlock()
	firstID := outbox.NewID()
	if err := db.InTx(ctx, func(tx *store.Tx) error {
		return outbox.Add(ctx, tx, "queue:bench", broker.Message{ID: firstID, Key: "k0", Body: body})
	}); err != nil {
		return err
	}
	firstCommitted := time.Now()
	select {
	case <-done:
	case <-time.After(time.Minute):
		return errors.New("the first message after the burst was not confirmed within a minute")
	}
	c.mu.Lock()
	fmt.Printf("RESULT outbox_first_after_burst db=%s commit_to_confirm=%.2fms (one message, after %d were relayed and deleted)\n", dialect, float64(c.at[firstID].Sub(firstCommitted))/1e6, n)
	c.mu.Unlock()

	// Latency: one message per transaction at a fixed rate, one
	// producer per 100 msg/s; commit done -> broker confirm.
	total := int(float64(rate) * dur.Seconds())
	c.mu.Lock()
	c.at = map[string]time.Time{}
	c.started = map[string]time.Time{}
	c.sizes, c.overlap = nil, nil
	c.want = total
	c.done = make(chan struct{})
	done = c.done
	c.mu.Unlock()
	committed := make([]time.Time, total)
	ids := make([]string, total)
	var wg sync.WaitGroup
	every := time.Second / time.Duration(rate)
	var errOnce sync.Once
	var perr error
	// A fixed pool of producers (fewer than the database handle's
	// connections, so the relay is not starved of one) takes the
	// scheduled sends; commit-to-confirm starts when the commit returns.
	work := make(chan int, total)
	for range producers {
		wg.Go(func() {
			for i := range work {
				err := db.InTx(ctx, func(tx *store.Tx) error {
					if _, err := tx.Exec(ctx, "INSERT INTO rides (id, v) VALUES (?, ?)", ids[i], i); err != nil {
						return err
					}
					return outbox.Add(ctx, tx, "queue:bench", broker.Message{ID: ids[i], Key: "k" + strconv.Itoa(i%64), Body: body})
				})
				committed[i] = time.Now()
				if err != nil {
					errOnce.Do(func() { perr = err })
				}
			}
		})
	}
	cpu0 := cpuTime()
	reads0 := relay.Stats().Reads
	t0 := time.Now()
	for i := range total {
		time.Sleep(time.Until(t0.Add(time.Duration(i) * every)))
		ids[i] = outbox.NewID()
		work <- i
	}
	close(work)
	wg.Wait()
	if perr != nil {
		return perr
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		return errors.New("latency run: not every message was confirmed within a minute")
	}
	cpu := cpuTime() - cpu0
	reads := relay.Stats().Reads - reads0
	// The whole (commit -> confirm) and its two parts: commit -> the
	// relay hands the message to the broker client (wake-up, read), and
	// that -> the broker's durability confirm.
	c.mu.Lock()
	lat := make([]time.Duration, 0, total)
	toPub := make([]time.Duration, 0, total)
	toConf := make([]time.Duration, 0, total)
	for i, id := range ids {
		lat = append(lat, max(c.at[id].Sub(committed[i]), 0))
		toPub = append(toPub, max(c.started[id].Sub(committed[i]), 0))
		toConf = append(toConf, c.at[id].Sub(c.started[id]))
	}
	c.mu.Unlock()
	quant := func(d []time.Duration) func(float64) string {
		slices.Sort(d)
		return func(p float64) string { return fmt.Sprintf("%.2fms", float64(d[int(p*float64(len(d)-1))])/1e6) }
	}
	q, qp, qc := quant(lat), quant(toPub), quant(toConf)
	fmt.Printf("RESULT outbox_commit_to_confirm db=%s rate=%d producers=%d messages=%d p50=%s p90=%s p99=%s max=%s\n", dialect, rate, producers, total, q(0.5), q(0.9), q(0.99), q(1))
	fmt.Printf("RESULT outbox_commit_to_publish db=%s p50=%s p90=%s p99=%s max=%s\n", dialect, qp(0.5), qp(0.9), qp(0.99), qp(1))
	fmt.Printf("RESULT outbox_publish_to_confirm db=%s p50=%s p90=%s p99=%s max=%s\n", dialect, qc(0.5), qc(0.9), qc(0.99), qc(1))
	c.mu.Lock()
	sizes, overlap := c.sizes, c.overlap
	c.mu.Unlock()
	qi := func(d []int) func(float64) int {
		slices.Sort(d)
		return func(p float64) int { return d[int(p*float64(len(d)-1))] }
	}
	qs, qo := qi(sizes), qi(overlap)
	over := 0
	for _, o := range overlap {
		if o > 0 {
			over++
		}
	}
	fmt.Printf("RESULT outbox_relay_publishes db=%s publishes=%d msgs_per_publish_p50=%d p99=%d max=%d overlapping=%.0f%% in_flight_at_start_p99=%d max=%d\n",
		dialect, len(sizes), qs(0.5), qs(0.99), qs(1), 100*float64(over)/float64(len(sizes)), qo(0.99), qo(1))
	fmt.Printf("RESULT outbox_latency_run_cpu db=%s process_cpu_per_msg=%.0fus relay_reads_per_msg=%.2f (producers, relay, broker: one process)\n", dialect, float64(cpu.Microseconds())/float64(total), float64(reads)/float64(total))
	return nil
}
