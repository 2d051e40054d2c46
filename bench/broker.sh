#!/usr/bin/env bash
# bench/broker.sh — publish throughput with confirms, then consume+ack
# throughput, of switchyard's broker against NATS JetStream and RabbitMQ, on
# this machine, side by side, alternating runs (A B C A B C ...), median of
# each; then latency: the disk's fsync floor, synchronous durable publish
# latency, and end-to-end latency at half load.
#
#   bench/broker.sh [-n MESSAGES] [-s SIZE] [-w WINDOW] [-r ROUNDS] [-d durable|buffered]
#                   [-t SECONDS] [-p PHASES]
#
# -p (or $PHASES) is a comma list of phases, default all:
#   throughput  publish N messages with confirms, then consume them (below)
#   fsync       the fsync baseline: 128 B append + fdatasync in a loop on a
#               file next to the brokers' data (CPU 1), p50/p90/p99/p99.9/max;
#               the same into space preallocated with fallocate (as
#               switchyard's log writes); and a 64 B loopback TCP round trip
#               between an echo process on CPU 1 and the generator on CPU 0
#               (what any networked synchronous publish pays on top of its
#               fsync)
#   sync        synchronous durable publish latency: one publisher, one
#               message at a time, each waiting for its confirm; switchyard
#               (native protocol) with --fsync always and with --fsync batch,
#               NATS JetStream sync Publish (file store, sync_interval:
#               always), RabbitMQ one persistent publish + wait for its
#               confirm. Durable mode only.
#   e2e         end-to-end latency at half load: first each broker's peak
#               publish+consume rate (WINDOW publishes in flight, consumers
#               acking, concurrently, closed loop), then an open-loop
#               publisher at 50% of that peak ($E2E_RATE msg/s for all
#               instead, if set) with consumers acking; latency = consume
#               time - the due send time carried in the payload (a late send
#               does not hide queueing). Consumers: switchyard
#               Conn.Consume (at most WINDOW unacked); NATS push
#               consumer, explicit ack per message (MaxAckPending WINDOW);
#               RabbitMQ prefetch WINDOW, multiple-ack per 16 or when idle.
# Each latency measurement runs -t SECONDS (or $DURATION, default 10), of
# which the first fifth (at most 1 s) is warm-up and not recorded; ROUNDS
# alternating rounds, median of each percentile. Latencies are HDR
# histograms (hdrhistogram-go) in microseconds.
#
# Throughput-phase consumers, each with at most WINDOW messages unacked:
# switchyard client.Conn.Consume (push, acks batched and pipelined, credit
# back when an ack is answered); NATS a push consumer, MaxAckPending
# WINDOW, Ack per message (NATS_CONSUMER=pull: a pull consumer fetching
# WINDOW, slower here); RabbitMQ prefetch WINDOW, multiple-ack per WINDOW/4.
# SY_QUEUE='{"async_acks": true}' (any queue settings as JSON) declares the
# throughput phase's switchyard queue with those settings; async_acks
# answers acks before their fsync, as JetStream does (its file store
# flushes consumer state about ten times a second).
#
# Durability is the same for all three. With -d durable (the default) a
# publish counts only when the broker confirmed it, and each broker confirms
# only after fsync:
#   switchyard  --fsync batch (group commit)
#   NATS        JetStream file store with sync_interval: always (nats-server
#               v2.15.2 built here; the Debian 2.9 server on :4222 cannot
#               fsync per message, so it is not used)
#   RabbitMQ    durable classic queue, persistent messages, publisher confirms
#               (the server already running on 127.0.0.1:5672, guest/guest)
# With -d buffered, confirms come after the write to the OS and fsync runs
# every 2 minutes (NATS's default sync_interval): switchyard --fsync
# interval:2m, NATS default, RabbitMQ transient messages.
# Each producer keeps WINDOW messages in flight (switchyard: WINDOW goroutines
# pipelining on one native-protocol connection; NATS: PublishAsync window;
# RabbitMQ: confirm window). The broker under test runs on CPU 1
# (GOMAXPROCS=1 for Go brokers; RabbitMQ's beam is pinned to CPU 1 for the
# run and restored after), the load generator on CPU 0.
#
# Prints every round and the medians, then the RESULT lines of the phases
# run (latencies in µs; the last line is the publish throughput):
#   RESULT broker_fsync_latency_us p50=... p90=... p99=... p999=... max=...
#   RESULT broker_fsync_prealloc_latency_us ... and broker_loopback_rtt_us ...
#   RESULT broker_sync_publish_p50_us switchyard_always=... switchyard_batch=... nats_js=... rabbitmq=...
#   RESULT broker_sync_publish_p99_us ... fsync_p99=... goal_us=... goal_met_always=yes|no goal_met_batch=yes|no
#   RESULT broker_sync_publish_p999_us ...
#   RESULT broker_e2e_p50_us_DURABILITY switchyard=... nats_js=... rabbitmq=...
#   RESULT broker_e2e_p99_us_DURABILITY switchyard=... nats_js=... rabbitmq=... rate_switchyard=... rate_nats_js=... rate_rabbitmq=...
#   RESULT broker_e2e_p999_us_DURABILITY ...
#   RESULT broker_publish_msgs_per_s_DURABILITY switchyard=... nats_js=... rabbitmq=... ratio_vs_nats=... ratio_vs_rabbitmq=...
# The sync-publish goal (from the issue) is p99 <= fsync p99 + 100 µs.
set -euo pipefail

N=20000 SIZE=256 WINDOW=256 ROUNDS=3 DUR=durable
DURATION=${DURATION:-10} PHASES=${PHASES:-throughput,fsync,sync,e2e} E2E_RATE=${E2E_RATE:-}
usage() {
	echo "usage: $0 [-n MESSAGES] [-s SIZE] [-w WINDOW] [-r ROUNDS] [-d durable|buffered] [-t SECONDS] [-p throughput,fsync,sync,e2e]" >&2
	exit 2
}
while getopts "n:s:w:r:d:t:p:" o; do
	case $o in
	n) N=$OPTARG ;; s) SIZE=$OPTARG ;; w) WINDOW=$OPTARG ;; r) ROUNDS=$OPTARG ;; d) DUR=$OPTARG ;;
	t) DURATION=$OPTARG ;; p) PHASES=$OPTARG ;;
	*) usage ;;
	esac
done
case $DUR in
durable) SY_FSYNC=batch NATS_SYNC="sync_interval: always" PERSISTENT=true ;;
buffered) SY_FSYNC=interval:2m NATS_SYNC="" PERSISTENT=false ;;
*) echo "-d $DUR: want durable or buffered" >&2; exit 2 ;;
esac
for v in N SIZE WINDOW ROUNDS; do
	if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then echo "$v=${!v}: want a positive integer" >&2; exit 2; fi
done
if ! [[ $DURATION =~ ^[0-9]+(\.[0-9]+)?$ ]] || [ "$(awk "BEGIN{print ($DURATION > 0)}")" != 1 ]; then
	echo "-t / DURATION=$DURATION: want a positive number of seconds" >&2; exit 2
fi
if [ -n "$E2E_RATE" ] && ! [[ $E2E_RATE =~ ^[1-9][0-9]*$ ]]; then
	echo "E2E_RATE=$E2E_RATE: want a positive integer (messages per second)" >&2; exit 2
fi
IFS=, read -r -a PHASE_LIST <<<"$PHASES"
for ph in "${PHASE_LIST[@]}"; do
	case $ph in
	throughput | fsync | sync | e2e) ;;
	*) echo "-p $PHASES: unknown phase \"$ph\" (want throughput, fsync, sync, e2e)" >&2; exit 2 ;;
	esac
done
has() { [[ ",$PHASES," == *",$1,"* ]]; }
if has sync && [ "$DUR" != durable ]; then
	echo "note: the sync phase measures durable publishes only; skipped with -d $DUR"
	kept=()
	for ph in "${PHASE_LIST[@]}"; do if [ "$ph" != sync ]; then kept+=("$ph"); fi; done
	PHASES=$(IFS=,; echo "${kept[*]}")
fi
if ! has throughput && ! has fsync && ! has sync && ! has e2e; then
	echo "-p \"$PHASES\": no phase to run" >&2; exit 2
fi
if { has sync || has e2e; } && [ "$SIZE" -lt 16 ]; then
	echo "-s $SIZE: the latency phases need at least 16 bytes (message index and timestamp)" >&2; exit 2
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${SWITCHYARD_BENCH_CACHE:-$HOME/.cache/switchyard-bench}
WORK=$(mktemp -d)
PIDS=()
BEAM_PID=""
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	if [ -n "$BEAM_PID" ]; then taskset -a -p -c 0-"$(($(nproc) - 1))" "$BEAM_PID" >/dev/null 2>&1 || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$CACHE/bin"

# --- peers -------------------------------------------------------------------
NATS_BIN=$CACHE/bin/nats-server
if [ ! -x "$NATS_BIN" ]; then
	echo "building nats-server v2.15.2 into $CACHE/bin (a few minutes, once)..."
	GOBIN=$CACHE/bin GOFLAGS= go install github.com/nats-io/nats-server/v2@v2.15.2
fi

# --- load generator (its own module; uses the repo's client via replace) ------
mkdir -p "$WORK/gen"
cat >"$WORK/gen/go.mod" <<EOF
module brokerbench

go 1.26

require (
	github.com/switchyard/switchyard v0.0.0
	github.com/HdrHistogram/hdrhistogram-go v1.4.0
	github.com/nats-io/nats.go v1.55.0
	github.com/rabbitmq/amqp091-go v1.16.0
)

replace github.com/switchyard/switchyard => $ROOT
EOF
cat >"$WORK/gen/main.go" <<'EOF'
// Command brokerbench measures a broker. -mode throughput (the default)
// publishes N messages with confirms, then consumes them with acks, and
// prints both rates; the latency modes (fsync, sync, peak, e2e) are in
// latency.go.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
)

func main() {
	target := flag.String("target", "", "switchyard | nats | rabbit")
	addr := flag.String("addr", "", "broker address")
	httpAddr := flag.String("http", "", "switchyard HTTP address (queue setup)")
	n := flag.Int("n", 20000, "messages")
	size := flag.Int("size", 256, "message size")
	window := flag.Int("window", 256, "messages in flight")
	persistent := flag.Bool("persistent", true, "RabbitMQ: persistent messages (fsynced before confirm)")
	mode := flag.String("mode", "throughput", "throughput | fsync | sync | peak | e2e")
	duration := flag.Duration("duration", 10*time.Second, "latency modes: how long to measure")
	rate := flag.Float64("rate", 0, "e2e: messages per second")
	dir := flag.String("dir", "", "fsync: directory of the probe file")
	flag.Parse()
	if *mode != "throughput" {
		err := runLatency(latencyOpts{mode: *mode, target: *target, addr: *addr, httpAddr: *httpAddr, size: *size,
			window: *window, duration: *duration, rate: *rate, persistent: *persistent, dir: *dir})
		if err != nil {
			fmt.Fprintf(os.Stderr, "brokerbench -mode %s -target %s: %v\n", *mode, *target, err)
			os.Exit(1)
		}
		return
	}
	body := bytes.Repeat([]byte("x"), *size)
	var (
		d, dc time.Duration
		err   error
	)
	switch *target {
	case "switchyard":
		d, dc, err = runSwitchyard(*addr, *httpAddr, *n, *window, body)
	case "nats":
		d, dc, err = runNATS(*addr, *n, *window, body)
	case "rabbit":
		d, dc, err = runRabbit(*addr, *n, *window, body, *persistent)
	default:
		err = fmt.Errorf("unknown target %q", *target)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "brokerbench:", err)
		os.Exit(1)
	}
	// publish rate, then consume (receive + ack) rate
	fmt.Printf("%.0f %.0f\n", float64(*n)/d.Seconds(), float64(*n)/dc.Seconds())
}

func runSwitchyard(addr, httpAddr string, n, window int, body []byte) (time.Duration, time.Duration, error) {
	settings := os.Getenv("SY_QUEUE") // e.g. {"async_acks": true}
	if settings == "" {
		settings = `{}`
	}
	req, _ := http.NewRequest("PUT", "http://"+httpAddr+"/v1/queues/bench", bytes.NewReader([]byte(settings)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("declaring queue bench with SY_QUEUE=%s: %s: %s", settings, resp.Status, msg)
	}
	ctx := context.Background()
	c, err := client.Dial(ctx, addr, client.Options{})
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range window {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := c.Publish(ctx, "bench", broker.Message{Body: body}); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	if f := failed.Load(); f > 0 {
		return 0, 0, fmt.Errorf("%d publishes failed", f)
	}
	// Consume: a push consumer with at most window messages unacked
	// (client.Conn.Consume: acks batched and pipelined, credit returned
	// only when an ack is answered, i.e. after its fsync unless the queue
	// has async_acks).
	var got atomic.Int64
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start = time.Now()
	err = c.Consume(cctx, "bench", client.ConsumeOptions{MaxUnacked: window}, func(broker.Delivery) error {
		if got.Add(1) == int64(n) {
			cancel()
		}
		return nil
	})
	dc := time.Since(start)
	if !errors.Is(err, context.Canceled) || got.Load() != int64(n) {
		return 0, 0, fmt.Errorf("consume: %v, %d of %d messages", err, got.Load(), n)
	}
	req, _ = http.NewRequest("DELETE", "http://"+httpAddr+"/v1/queues/bench", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	return d, dc, nil
}

func runNATS(addr string, n, window int, body []byte) (time.Duration, time.Duration, error) {
	nc, err := nats.Connect("nats://" + addr)
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	js, err := nc.JetStream(nats.PublishAsyncMaxPending(window))
	if err != nil {
		return 0, 0, err
	}
	js.DeleteStream("BENCH")
	if _, err := js.AddStream(&nats.StreamConfig{Name: "BENCH", Subjects: []string{"bench"}, Storage: nats.FileStorage}); err != nil {
		return 0, 0, err
	}
	defer js.DeleteStream("BENCH")
	futures := make([]nats.PubAckFuture, 0, n)
	start := time.Now()
	for range n {
		f, err := js.PublishAsync("bench", body)
		for errors.Is(err, nats.ErrTooManyStalledMsgs) { // window full: wait for acks
			f, err = js.PublishAsync("bench", body)
		}
		if err != nil {
			return 0, 0, err
		}
		futures = append(futures, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		return 0, 0, fmt.Errorf("timed out waiting for acks")
	}
	d := time.Since(start)
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return 0, 0, err
		}
	}
	if os.Getenv("NATS_CONSUMER") != "pull" {
		// A push consumer, MaxAckPending window, explicit ack per message.
		var got atomic.Int64
		var ackErr atomic.Value
		done := make(chan struct{})
		start = time.Now()
		sub, err := js.Subscribe("bench", func(m *nats.Msg) {
			if err := m.Ack(); err != nil {
				ackErr.Store(err)
			}
			if got.Add(1) == int64(n) {
				close(done)
			}
		}, nats.Durable("benchpush"), nats.ManualAck(), nats.AckExplicit(), nats.DeliverAll(), nats.MaxAckPending(window))
		if err != nil {
			return 0, 0, err
		}
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			return 0, 0, fmt.Errorf("push consume: %d of %d after 5 minutes", got.Load(), n)
		}
		dc := time.Since(start)
		sub.Unsubscribe()
		if e, ok := ackErr.Load().(error); ok {
			return 0, 0, fmt.Errorf("ack: %w", e)
		}
		return d, dc, nil
	}
	// Consume: a durable pull consumer, batches of window, explicit acks
	// (AckSync on the last of each batch, so the batch is acknowledged).
	sub, err := js.PullSubscribe("bench", "bench", nats.AckExplicit())
	if err != nil {
		return 0, 0, err
	}
	got := 0
	start = time.Now()
	for got < n {
		ms, err := sub.Fetch(window, nats.MaxWait(5*time.Second))
		if err != nil {
			return 0, 0, fmt.Errorf("fetch after %d: %w", got, err)
		}
		for i, m := range ms {
			if i == len(ms)-1 {
				err = m.AckSync()
			} else {
				err = m.Ack()
			}
			if err != nil {
				return 0, 0, err
			}
		}
		got += len(ms)
	}
	return d, time.Since(start), nil
}

func runRabbit(addr string, n, window int, body []byte, persistent bool) (time.Duration, time.Duration, error) {
	mode := amqp.Transient
	if persistent {
		mode = amqp.Persistent
	}
	conn, err := amqp.Dial("amqp://guest:guest@" + addr + "/")
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, 0, err
	}
	ch.QueueDelete("bench", false, false, false)
	if _, err := ch.QueueDeclare("bench", true, false, false, false, nil); err != nil {
		return 0, 0, err
	}
	defer ch.QueueDelete("bench", false, false, false)
	if err := ch.Confirm(false); err != nil {
		return 0, 0, err
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, window+1))
	sem := make(chan struct{}, window)
	done := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			c, ok := <-confirms
			if !ok || !c.Ack {
				done <- fmt.Errorf("publish %d not confirmed", c.DeliveryTag)
				return
			}
			<-sem
		}
		done <- nil
	}()
	start := time.Now()
	for range n {
		sem <- struct{}{}
		if err := ch.PublishWithContext(context.Background(), "", "bench", false, false,
			amqp.Publishing{DeliveryMode: mode, Body: body}); err != nil {
			return 0, 0, err
		}
	}
	if err := <-done; err != nil {
		return 0, 0, err
	}
	d := time.Since(start)
	// Consume: prefetch window, one multiple-ack per window/4 messages.
	cch, err := conn.Channel()
	if err != nil {
		return 0, 0, err
	}
	if err := cch.Qos(window, 0, false); err != nil {
		return 0, 0, err
	}
	start = time.Now()
	msgs, err := cch.Consume("bench", "", false, false, false, false, nil)
	if err != nil {
		return 0, 0, err
	}
	step := max(window/4, 1)
	for got := 1; got <= n; got++ {
		m, ok := <-msgs
		if !ok {
			return 0, 0, fmt.Errorf("consume channel closed after %d", got)
		}
		if got%step == 0 || got == n {
			if err := m.Ack(true); err != nil {
				return 0, 0, err
			}
		}
	}
	return d, time.Since(start), nil
}
EOF
cat >"$WORK/gen/latency.go" <<'EOF'
package main

// Latency modes of brokerbench. Every latency is recorded in an HDR
// histogram (1 µs .. 60 s, 3 significant digits) and printed as one line
//   p50=US p90=US p99=US p999=US max=US n=SAMPLES [extra=...]
//
//   fsync  append 128 B + fdatasync in a loop on a file in -dir: the disk's
//          floor for one durable write.
//   sync   one publisher, one message at a time, each waiting for its
//          confirm (closed loop by definition): the latency of a
//          synchronous durable publish.
//   peak   publishers (WINDOW in flight) and consumers (acking) running
//          together as fast as they can: prints the consumed rate, msg/s.
//   e2e    an open-loop publisher at a fixed -rate (message i is due at
//          start + i/rate; a late send does not delay later ones) with
//          consumers acking; the latency of a message is the time it is
//          consumed minus its due time, which the payload carries (so
//          queueing behind a slow send counts: no coordinated omission).
// A warm-up (a fifth of -duration, at most 1 s) is run but not recorded.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/nats-io/nats.go"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/switchyard/switchyard/broker"
	"github.com/switchyard/switchyard/broker/client"
)

type latencyOpts struct {
	mode, target, addr, httpAddr string
	size, window                 int
	duration                     time.Duration
	rate                         float64
	persistent                   bool
	dir                          string
}

// epoch is the time base of the timestamps carried in payloads (publisher
// and consumers run in this process, so a monotonic offset is exact).
var epoch = time.Now()

func stamp() int64 { return int64(time.Since(epoch)) }

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 3) }

func record(h *hdrhistogram.Histogram, ns int64) {
	h.RecordValue(max(1, ns/1000)) // a value above 60 s is dropped
}

func stats(h *hdrhistogram.Histogram) string {
	return fmt.Sprintf("p50=%d p90=%d p99=%d p999=%d max=%d n=%d",
		h.ValueAtQuantile(50), h.ValueAtQuantile(90), h.ValueAtQuantile(99), h.ValueAtQuantile(99.9), h.Max(), h.TotalCount())
}

func warmup(d time.Duration) time.Duration { return min(d/5, time.Second) }

func runLatency(o latencyOpts) error {
	if o.duration <= 0 {
		return fmt.Errorf("-duration %s: must be positive", o.duration)
	}
	if o.size < 16 {
		return fmt.Errorf("-size %d: latency modes need at least 16 bytes (index and timestamp)", o.size)
	}
	switch o.mode {
	case "fsync", "fsync-prealloc":
		if o.dir == "" {
			return fmt.Errorf("-mode %s needs -dir", o.mode)
		}
		return runFsync(o, o.mode == "fsync-prealloc")
	case "echo":
		return runEcho(o)
	case "rtt":
		return runRTT(o)
	case "sync":
		return runSync(o)
	case "peak", "e2e":
		if o.mode == "e2e" && o.rate <= 0 {
			return fmt.Errorf("-rate %g: -mode e2e needs a positive rate", o.rate)
		}
		p, err := openPubSub(o)
		if err != nil {
			return err
		}
		defer p.close()
		if o.mode == "peak" {
			return runPeak(o, p)
		}
		return runE2E(o, p)
	}
	return fmt.Errorf("-mode %q: want throughput, fsync, fsync-prealloc, echo, rtt, sync, peak or e2e", o.mode)
}

// --- fsync baseline ------------------------------------------------------------

// runFsync appends 128 B and fdatasyncs, in a loop. With prealloc the file
// is first given 256 MiB with fallocate, so that the writes land in space
// the file already has (what switchyard's log does) and an fdatasync does
// not also commit a new file size.
func runFsync(o latencyOpts, prealloc bool) error {
	path := filepath.Join(o.dir, "fsync-probe")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("opening fsync probe: %w", err)
	}
	defer os.Remove(path)
	defer f.Close()
	if prealloc {
		if err := syscall.Fallocate(int(f.Fd()), 0, 0, 256<<20); err != nil {
			return fmt.Errorf("fallocate %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			return err
		}
	}
	buf := bytes.Repeat([]byte("f"), 128)
	h := newHist()
	start := time.Now()
	warm, end := start.Add(warmup(o.duration)), start.Add(o.duration)
	var off int64
	for now := start; now.Before(end); now = time.Now() {
		_, err := f.WriteAt(buf, off)
		off += int64(len(buf))
		if err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return fmt.Errorf("fdatasync %s: %w", path, err)
		}
		if now.After(warm) {
			record(h, int64(time.Since(now)))
		}
	}
	fmt.Println(stats(h))
	return nil
}

// --- loopback round trip ---------------------------------------------------------

// runEcho serves -addr: it echoes every byte back, for -mode rtt.
func runEcho(o latencyOpts) error {
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go io.Copy(c, c)
	}
}

// runRTT sends 64 B to the echo server at -addr and waits for them back,
// one at a time: the cost of one request/response between two idle
// processes on this machine, which every networked sync publish pays on
// top of its fsync.
func runRTT(o latencyOpts) error {
	c, err := net.Dial("tcp", o.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 64)
	h := newHist()
	start := time.Now()
	warm, end := start.Add(warmup(o.duration)), start.Add(o.duration)
	for now := start; now.Before(end); now = time.Now() {
		if _, err := c.Write(buf); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if now.After(warm) {
			record(h, int64(time.Since(now)))
		}
	}
	fmt.Println(stats(h))
	return nil
}

// --- synchronous publish ---------------------------------------------------------

// runSync publishes one message at a time, each after the previous one's
// confirm, for o.duration, and prints the publish latencies.
func runSync(o latencyOpts) error {
	body := bytes.Repeat([]byte("s"), o.size)
	var publish func() error
	var cleanup func()
	switch o.target {
	case "switchyard":
		if err := syQueue(o.httpAddr, "PUT", "lat-sync"); err != nil {
			return err
		}
		cleanup = func() { syQueue(o.httpAddr, "DELETE", "lat-sync") }
		c, err := client.Dial(context.Background(), o.addr, client.Options{})
		if err != nil {
			return err
		}
		defer c.Close()
		publish = func() error {
			_, err := c.Publish(context.Background(), "lat-sync", broker.Message{Body: body})
			return err
		}
	case "nats":
		nc, err := nats.Connect("nats://" + o.addr)
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := nc.JetStream()
		if err != nil {
			return err
		}
		js.DeleteStream("LATSYNC")
		if _, err := js.AddStream(&nats.StreamConfig{Name: "LATSYNC", Subjects: []string{"latsync"}, Storage: nats.FileStorage}); err != nil {
			return err
		}
		cleanup = func() { js.DeleteStream("LATSYNC") }
		publish = func() error { _, err := js.Publish("latsync", body); return err }
	case "rabbit":
		conn, err := amqp.Dial("amqp://guest:guest@" + o.addr + "/")
		if err != nil {
			return err
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		ch.QueueDelete("lat-sync", false, false, false)
		if _, err := ch.QueueDeclare("lat-sync", true, false, false, false, nil); err != nil {
			return err
		}
		cleanup = func() { ch.QueueDelete("lat-sync", false, false, false) }
		if err := ch.Confirm(false); err != nil {
			return err
		}
		confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1))
		mode := amqp.Transient
		if o.persistent {
			mode = amqp.Persistent
		}
		publish = func() error {
			if err := ch.PublishWithContext(context.Background(), "", "lat-sync", false, false,
				amqp.Publishing{DeliveryMode: mode, Body: body}); err != nil {
				return err
			}
			c, ok := <-confirms
			if !ok || !c.Ack {
				return fmt.Errorf("publish %d not confirmed", c.DeliveryTag)
			}
			return nil
		}
	default:
		return fmt.Errorf("-target %q: want switchyard, nats or rabbit", o.target)
	}
	defer cleanup()
	h := newHist()
	start := time.Now()
	warm, end := start.Add(warmup(o.duration)), start.Add(o.duration)
	for now := start; now.Before(end); now = time.Now() {
		if err := publish(); err != nil {
			return fmt.Errorf("sync publish: %w", err)
		}
		if now.After(warm) {
			record(h, int64(time.Since(now)))
		}
	}
	fmt.Println(stats(h))
	return nil
}

func syQueue(httpAddr, method, name string) error {
	req, err := http.NewRequest(method, "http://"+httpAddr+"/v1/queues/"+name, bytes.NewReader([]byte(`{}`)))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s queue %q: %w", method, name, err)
	}
	resp.Body.Close()
	if method == "PUT" && resp.StatusCode != 200 {
		return fmt.Errorf("PUT queue %q: status %d", name, resp.StatusCode)
	}
	return nil
}

// --- publish + consume -------------------------------------------------------------

// pubSub is one broker with a queue "lat" (NATS: stream LAT): publish
// sends a message and returns without waiting for its confirm (it blocks
// only while WINDOW publishes await confirms); consume delivers messages to
// handle, on one goroutine, acking them, until ctx ends; drain waits for
// the confirms of every publish and returns how many failed.
type pubSub interface {
	publish(body []byte) error
	consume(ctx context.Context, handle func(body []byte)) error
	drain(timeout time.Duration) (failed int64, err error)
	close()
}

func openPubSub(o latencyOpts) (pubSub, error) {
	switch o.target {
	case "switchyard":
		return openSwitchyard(o)
	case "nats":
		return openNATS(o)
	case "rabbit":
		return openRabbit(o)
	}
	return nil, fmt.Errorf("-target %q: want switchyard, nats or rabbit", o.target)
}

// switchyard: WINDOW goroutines publish with confirms on one native
// connection; Conn.Consume on a second connection consumes with at most
// WINDOW unacked (acks batched and pipelined, each answered after its
// fsync), like the NATS consumer's MaxAckPending.
type syPubSub struct {
	o       latencyOpts
	pub     *client.Conn
	sub     *client.Conn
	jobs    chan []byte
	pending sync.WaitGroup
	failed  atomic.Int64
	workers sync.WaitGroup
}

func openSwitchyard(o latencyOpts) (*syPubSub, error) {
	syQueue(o.httpAddr, "DELETE", "lat")
	if err := syQueue(o.httpAddr, "PUT", "lat"); err != nil {
		return nil, err
	}
	ctx := context.Background()
	pub, err := client.Dial(ctx, o.addr, client.Options{})
	if err != nil {
		return nil, err
	}
	sub, err := client.Dial(ctx, o.addr, client.Options{})
	if err != nil {
		pub.Close()
		return nil, err
	}
	p := &syPubSub{o: o, pub: pub, sub: sub, jobs: make(chan []byte)}
	for range o.window {
		p.workers.Add(1)
		go func() {
			defer p.workers.Done()
			for body := range p.jobs {
				if _, err := pub.Publish(ctx, "lat", broker.Message{Body: body}); err != nil {
					p.failed.Add(1)
				}
				p.pending.Done()
			}
		}()
	}
	return p, nil
}

func (p *syPubSub) publish(body []byte) error {
	p.pending.Add(1)
	p.jobs <- body
	return nil
}

func (p *syPubSub) consume(ctx context.Context, handle func([]byte)) error {
	err := p.sub.Consume(ctx, "lat", client.ConsumeOptions{MaxUnacked: p.o.window}, func(d broker.Delivery) error {
		handle(d.Body)
		return nil
	})
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

func (p *syPubSub) drain(timeout time.Duration) (int64, error) {
	done := make(chan struct{})
	go func() { p.pending.Wait(); close(done) }()
	select {
	case <-done:
		return p.failed.Load(), nil
	case <-time.After(timeout):
		return p.failed.Load(), fmt.Errorf("publish confirms still missing after %s", timeout)
	}
}

func (p *syPubSub) close() {
	close(p.jobs)
	p.workers.Wait()
	p.pub.Close()
	p.sub.Close()
	syQueue(p.o.httpAddr, "DELETE", "lat")
}

// NATS: PublishAsync with WINDOW acks pending at most on one connection; a
// push consumer (explicit acks, MaxAckPending WINDOW) on a second connection
// acks every message.
type natsPubSub struct {
	pc, sc *nats.Conn
	js     nats.JetStreamContext
	window int
	failed atomic.Int64
}

func openNATS(o latencyOpts) (*natsPubSub, error) {
	pc, err := nats.Connect("nats://" + o.addr)
	if err != nil {
		return nil, err
	}
	p := &natsPubSub{pc: pc, window: o.window}
	p.js, err = pc.JetStream(nats.PublishAsyncMaxPending(o.window),
		nats.PublishAsyncErrHandler(func(nats.JetStream, *nats.Msg, error) { p.failed.Add(1) }))
	if err != nil {
		pc.Close()
		return nil, err
	}
	p.js.DeleteStream("LAT")
	if _, err := p.js.AddStream(&nats.StreamConfig{Name: "LAT", Subjects: []string{"lat"}, Storage: nats.FileStorage}); err != nil {
		pc.Close()
		return nil, err
	}
	if p.sc, err = nats.Connect("nats://" + o.addr); err != nil {
		p.js.DeleteStream("LAT")
		pc.Close()
		return nil, err
	}
	return p, nil
}

func (p *natsPubSub) publish(body []byte) error {
	_, err := p.js.PublishAsync("lat", body)
	for errors.Is(err, nats.ErrTooManyStalledMsgs) { // window full: wait for acks
		_, err = p.js.PublishAsync("lat", body)
	}
	return err
}

func (p *natsPubSub) consume(ctx context.Context, handle func([]byte)) error {
	js, err := p.sc.JetStream()
	if err != nil {
		return err
	}
	var ackErr atomic.Value
	sub, err := js.Subscribe("lat", func(m *nats.Msg) {
		handle(m.Data)
		if err := m.Ack(); err != nil {
			ackErr.Store(err)
		}
	}, nats.ManualAck(), nats.AckExplicit(), nats.DeliverAll(), nats.MaxAckPending(p.window))
	if err != nil {
		return err
	}
	<-ctx.Done()
	sub.Unsubscribe()
	if e, ok := ackErr.Load().(error); ok {
		return fmt.Errorf("ack: %w", e)
	}
	return nil
}

func (p *natsPubSub) drain(timeout time.Duration) (int64, error) {
	select {
	case <-p.js.PublishAsyncComplete():
		return p.failed.Load(), nil
	case <-time.After(timeout):
		return p.failed.Load(), fmt.Errorf("%d publish acks still missing after %s", p.js.PublishAsyncPending(), timeout)
	}
}

func (p *natsPubSub) close() {
	p.sc.Close()
	p.js.DeleteStream("LAT")
	p.pc.Close()
}

// RabbitMQ: one confirm-mode channel publishes with WINDOW unconfirmed at
// most; a consumer on a second connection (prefetch WINDOW) acks with one
// multiple-ack per 16 messages, or at once when no more are buffered.
type rabbitPubSub struct {
	pc, cc   *amqp.Connection
	pch      *amqp.Channel
	mode     uint8
	sem      chan struct{}
	window   int
	failed   atomic.Int64
	confirms sync.WaitGroup
}

func openRabbit(o latencyOpts) (*rabbitPubSub, error) {
	pc, err := amqp.Dial("amqp://guest:guest@" + o.addr + "/")
	if err != nil {
		return nil, err
	}
	p := &rabbitPubSub{pc: pc, mode: amqp.Transient, sem: make(chan struct{}, o.window), window: o.window}
	if o.persistent {
		p.mode = amqp.Persistent
	}
	if p.pch, err = pc.Channel(); err != nil {
		pc.Close()
		return nil, err
	}
	p.pch.QueueDelete("lat", false, false, false)
	if _, err := p.pch.QueueDeclare("lat", true, false, false, false, nil); err != nil {
		pc.Close()
		return nil, err
	}
	if err := p.pch.Confirm(false); err != nil {
		pc.Close()
		return nil, err
	}
	confirms := p.pch.NotifyPublish(make(chan amqp.Confirmation, o.window+1))
	go func() {
		for c := range confirms {
			if !c.Ack {
				p.failed.Add(1)
			}
			<-p.sem
			p.confirms.Done()
		}
	}()
	if p.cc, err = amqp.Dial("amqp://guest:guest@" + o.addr + "/"); err != nil {
		p.pch.QueueDelete("lat", false, false, false)
		pc.Close()
		return nil, err
	}
	return p, nil
}

func (p *rabbitPubSub) publish(body []byte) error {
	p.sem <- struct{}{}
	p.confirms.Add(1)
	if err := p.pch.PublishWithContext(context.Background(), "", "lat", false, false,
		amqp.Publishing{DeliveryMode: p.mode, Body: body}); err != nil {
		<-p.sem
		p.confirms.Done()
		return err
	}
	return nil
}

func (p *rabbitPubSub) consume(ctx context.Context, handle func([]byte)) error {
	ch, err := p.cc.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.Qos(p.window, 0, false); err != nil {
		return err
	}
	msgs, err := ch.Consume("lat", "lat", false, false, false, false, nil)
	if err != nil {
		return err
	}
	unacked := 0
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				return errors.New("consumer channel closed")
			}
			handle(m.Body)
			if unacked++; unacked >= 16 || len(msgs) == 0 {
				if err := m.Ack(true); err != nil {
					return fmt.Errorf("ack: %w", err)
				}
				unacked = 0
			}
		case <-ctx.Done():
			return nil
		}
	}
}

func (p *rabbitPubSub) drain(timeout time.Duration) (int64, error) {
	done := make(chan struct{})
	go func() { p.confirms.Wait(); close(done) }()
	select {
	case <-done:
		return p.failed.Load(), nil
	case <-time.After(timeout):
		return p.failed.Load(), fmt.Errorf("publish confirms still missing after %s", timeout)
	}
}

func (p *rabbitPubSub) close() {
	p.cc.Close()
	p.pch.QueueDelete("lat", false, false, false)
	p.pc.Close()
}

// message bodies: index (8 bytes) | due time, ns since epoch (8 bytes) | padding
func newBody(size int, i uint64, due int64) []byte {
	b := make([]byte, size)
	binary.LittleEndian.PutUint64(b, i)
	binary.LittleEndian.PutUint64(b[8:], uint64(due))
	for j := 16; j < size; j++ {
		b[j] = 'p'
	}
	return b
}

// consumeAsync starts p.consume on its own goroutine and returns a function
// that stops it and returns its error.
func consumeAsync(p pubSub, handle func([]byte)) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.consume(ctx, handle) }()
	return func() error {
		cancel()
		return <-errc
	}
}

// runPeak publishes as fast as the window allows while consuming, and
// prints the rate messages were consumed at after the warm-up.
func runPeak(o latencyOpts, p pubSub) error {
	var got atomic.Int64
	stop := consumeAsync(p, func([]byte) { got.Add(1) })
	start := time.Now()
	warm, end := start.Add(warmup(o.duration)), start.Add(o.duration)
	var sent, atWarm int64
	warmed := false
	for i := uint64(0); time.Now().Before(end); i++ {
		if !warmed && time.Now().After(warm) {
			atWarm, warmed = got.Load(), true
		}
		if err := p.publish(newBody(o.size, i, stamp())); err != nil {
			stop()
			return fmt.Errorf("publish: %w", err)
		}
		sent++
	}
	rate := float64(got.Load()-atWarm) / time.Since(warm).Seconds()
	failed, derr := p.drain(30 * time.Second)
	// Let the consumers empty the queue so the next run starts clean.
	for deadline := time.Now().Add(30 * time.Second); got.Load() < sent-failed && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if err := stop(); err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	if derr != nil {
		return derr
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d publishes failed", failed, sent)
	}
	fmt.Printf("%.0f\n", rate)
	return nil
}

// runE2E publishes at o.rate for o.duration (open loop) while consuming and
// prints the end-to-end latencies of the messages due after the warm-up.
func runE2E(o latencyOpts, p pubSub) error {
	n := int(o.rate * o.duration.Seconds())
	if n < 1 {
		return fmt.Errorf("-rate %g for %s sends no message", o.rate, o.duration)
	}
	seen := make([]bool, n)
	h := newHist()
	var got, dups atomic.Int64
	start := stamp() + int64(10*time.Millisecond)
	warm := start + int64(warmup(o.duration))
	stop := consumeAsync(p, func(b []byte) {
		now := stamp()
		i := binary.LittleEndian.Uint64(b)
		due := int64(binary.LittleEndian.Uint64(b[8:]))
		if i >= uint64(n) {
			return
		}
		if seen[i] {
			dups.Add(1)
			return
		}
		seen[i] = true
		got.Add(1)
		if due >= warm {
			record(h, now-due)
		}
	})
	interval := 1e9 / o.rate
	var sendErr error
	for i := 0; i < n && sendErr == nil; {
		now := stamp()
		for ; i < n; i++ {
			due := start + int64(float64(i)*interval)
			if due > now {
				break
			}
			if err := p.publish(newBody(o.size, uint64(i), due)); err != nil {
				sendErr = fmt.Errorf("publish %d: %w", i, err)
				break
			}
		}
		if i < n {
			if wait := start + int64(float64(i)*interval) - stamp(); wait > 0 {
				time.Sleep(time.Duration(wait))
			}
		}
	}
	sendTime := time.Duration(stamp() - start)
	failed, derr := p.drain(30 * time.Second)
	for deadline := time.Now().Add(30 * time.Second); got.Load() < int64(n)-failed && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	cerr := stop()
	switch {
	case sendErr != nil:
		return sendErr
	case derr != nil:
		return derr
	case cerr != nil:
		return fmt.Errorf("consume: %w", cerr)
	case failed > 0:
		return fmt.Errorf("%d of %d publishes failed", failed, n)
	}
	lost := int64(n) - got.Load()
	fmt.Printf("%s sent=%d lost=%d dup=%d send_rate=%.0f\n", stats(h), n, lost, dups.Load(), float64(n)/sendTime.Seconds())
	return nil
}
EOF
(cd "$WORK/gen" && GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 && GOFLAGS=-mod=mod go build -o "$WORK/brokerbench" .)
# The broker under test: the switchyard binary; if the rest of the tree does
# not build right now, the same broker packages behind a minimal main.
SY_CMD=("$WORK/switchyard" broker)
if ! (cd "$ROOT" && go build -o "$WORK/switchyard" ./cmd/switchyard) 2>"$WORK/build.log"; then
	echo "note: cmd/switchyard does not build ($(head -c 200 "$WORK/build.log" | tr '\n' ' ')); using the broker packages behind a minimal main"
	mkdir -p "$WORK/srv"
	cat >"$WORK/srv/go.mod" <<EOF
module sysrv

go 1.26

require github.com/switchyard/switchyard v0.0.0

replace github.com/switchyard/switchyard => $ROOT
EOF
	cat >"$WORK/srv/main.go" <<'EOF'
// Command sysrv runs switchyard's broker packages like `switchyard broker`
// (HTTP + native listener), for benchmarks independent of the other
// subcommands.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchyard/switchyard/broker/engine"
	"github.com/switchyard/switchyard/broker/httpapi"
	"github.com/switchyard/switchyard/broker/native"
	"github.com/switchyard/switchyard/wal"
)

func main() {
	data := flag.String("data", "", "data dir")
	httpAddr := flag.String("http", "127.0.0.1:7401", "http")
	listen := flag.String("listen", "127.0.0.1:7400", "native")
	fsync := flag.String("fsync", "batch", "fsync policy")
	flag.Parse()
	p, err := wal.ParseSyncPolicy(*fsync)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	b, err := engine.Open(engine.Config{Dir: *data, Fsync: p})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer b.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	nln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go http.Serve(ln, httpapi.New(b))
	native.New(b, native.Options{}).Serve(ctx, nln)
}
EOF
	(cd "$WORK/srv" && GOFLAGS=-mod=mod go build -o "$WORK/switchyard-broker" .)
	SY_CMD=("$WORK/switchyard-broker")
fi

# --- brokers under test ---------------------------------------------------------
SY_DATA=$WORK/sy-data
GOMAXPROCS=1 taskset -c 1 "${SY_CMD[@]}" --data "$SY_DATA" --http 127.0.0.1:17401 --listen 127.0.0.1:17400 --fsync "$SY_FSYNC" >"$WORK/sy.log" 2>&1 &
PIDS+=($!)
PORTS=(17400 14222)
if has sync; then
	# A second switchyard with --fsync always, for the sync-publish phase.
	GOMAXPROCS=1 taskset -c 1 "${SY_CMD[@]}" --data "$WORK/sy-always-data" --http 127.0.0.1:17411 --listen 127.0.0.1:17410 --fsync always >"$WORK/sy-always.log" 2>&1 &
	PIDS+=($!)
	PORTS+=(17410)
fi
cat >"$WORK/nats.conf" <<EOF
listen: 127.0.0.1:14222
jetstream { store_dir: "$WORK/nats-data"${NATS_SYNC:+, $NATS_SYNC} }
EOF
GOMAXPROCS=1 taskset -c 1 "$NATS_BIN" -c "$WORK/nats.conf" >"$WORK/nats.log" 2>&1 &
PIDS+=($!)
BEAM_PID=$(pgrep -u rabbitmq -x beam.smp | head -1 || true)
if [ -n "$BEAM_PID" ]; then taskset -a -p -c 1 "$BEAM_PID" >/dev/null; fi
up() { for port in "${PORTS[@]}"; do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null || return 1; done; }
for i in $(seq 50); do
	if up; then break; fi
	sleep 0.1
done
for port in "${PORTS[@]}"; do
	if ! (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
		echo "broker on port $port did not start:" >&2
		cat "$WORK"/sy*.log "$WORK/nats.log" >&2
		exit 1
	fi
done

echo "durability: $DUR"
echo "ran: switchyard $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo dev) (+ working tree) --fsync $SY_FSYNC (GOMAXPROCS=1, CPU 1)"
if has sync; then echo "ran: switchyard, second instance with --fsync always for the sync phase (GOMAXPROCS=1, CPU 1)"; fi
echo "ran: $("$NATS_BIN" --version) JetStream file store ${NATS_SYNC:-default sync_interval (2m)} (GOMAXPROCS=1, CPU 1)"
echo "ran: RabbitMQ $(rabbitmqctl version 2>/dev/null || echo '?') durable classic queue, persistent=$PERSISTENT, confirms (beam pinned to CPU 1: ${BEAM_PID:-not found})"
echo "load: $N messages of $SIZE B, window $WINDOW, $ROUNDS rounds alternating, generator on CPU 0"
echo "phases: $PHASES; latency runs ${DURATION}s each (warm-up excluded)${E2E_RATE:+, e2e at $E2E_RATE msg/s for all}"

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# field NAME LINE prints the value of NAME=VALUE in LINE.
field() { awk -v k="$1" '{for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[1] == k) { print a[2]; exit } }}' <<<"$2"; }
# medfield NAME LINE... prints the median of NAME over the lines.
medfield() {
	local k=$1 l vals=()
	shift
	for l in "$@"; do vals+=("$(field "$k" "$l")"); done
	median "${vals[@]}"
}
ratio() { awk "BEGIN{printf \"%.2f\", $1/$2}"; }
RESULTS=()
TP_RESULT=""

# settle waits (up to about 10 s) until CPU 1 is at least 80% idle over
# 0.3 s, so that one contender's leftover work (queue deletion, GC,
# RabbitMQ's busy-waiting schedulers) does not land in the next one's
# latency measurement.
cpu1() { awk '$1 == "cpu1" { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
settle() {
	local i idle0 all0 idle1 all1
	for i in $(seq 30); do
		read -r idle0 all0 < <(cpu1)
		sleep 0.3
		read -r idle1 all1 < <(cpu1)
		if awk "BEGIN { exit !(($idle1 - $idle0) >= 0.8 * ($all1 - $all0)) }"; then return 0; fi
	done
	echo "note: CPU 1 still busy after 9 s of waiting; measuring anyway" >&2
}
gen() { taskset -c 0 "$WORK/brokerbench" -n "$N" -size "$SIZE" -window "$WINDOW" "$@"; }
if has throughput; then
	declare -a SY NJ RB SYC NJC RBC
	for r in $(seq "$ROUNDS"); do
		# settle: RabbitMQ's schedulers busy-wait on CPU 1 for a while
		# after a run, which would land in the next contender's numbers.
		settle
		read -r p c < <(gen -target switchyard -addr 127.0.0.1:17400 -http 127.0.0.1:17401); SY+=("$p"); SYC+=("$c")
		settle
		read -r p c < <(gen -target nats -addr 127.0.0.1:14222); NJ+=("$p"); NJC+=("$c")
		settle
		read -r p c < <(gen -target rabbit -addr 127.0.0.1:5672 -persistent=$PERSISTENT); RB+=("$p"); RBC+=("$c")
		echo "round $r publish: switchyard=${SY[-1]} nats_js=${NJ[-1]} rabbitmq=${RB[-1]} msgs/s; consume+ack: switchyard=${SYC[-1]} nats_js=${NJC[-1]} rabbitmq=${RBC[-1]} msgs/s"
	done
	sc=$(median "${SYC[@]}") nc=$(median "${NJC[@]}") qc=$(median "${RBC[@]}")
	echo "consume+ack median: switchyard=$sc nats_js=$nc rabbitmq=$qc ratio_vs_nats=$(ratio "$sc" "$nc") ratio_vs_rabbitmq=$(ratio "$sc" "$qc")"
	s=$(median "${SY[@]}") n=$(median "${NJ[@]}") q=$(median "${RB[@]}")
	TP_RESULT="RESULT broker_publish_msgs_per_s_$DUR switchyard=$s nats_js=$n rabbitmq=$q ratio_vs_nats=$(ratio "$s" "$n") ratio_vs_rabbitmq=$(ratio "$s" "$q")"
fi

# --- latency ---------------------------------------------------------------------
lat() {
	settle
	taskset -c 0 "$WORK/brokerbench" -size "$SIZE" -window "$WINDOW" -duration "${DURATION}s" "$@"
}
# target KEY prints the generator flags of a contender.
target() {
	case $1 in
	switchyard | switchyard_batch) echo "-target switchyard -addr 127.0.0.1:17400 -http 127.0.0.1:17401" ;;
	switchyard_always) echo "-target switchyard -addr 127.0.0.1:17410 -http 127.0.0.1:17411" ;;
	nats_js) echo "-target nats -addr 127.0.0.1:14222" ;;
	rabbitmq) echo "-target rabbit -addr 127.0.0.1:5672 -persistent=$PERSISTENT" ;;
	esac
}

FSYNC_P99=""
if has fsync; then
	FS=() FP=() RT=()
	# The echo server for the round-trip probe, on the brokers' CPU.
	taskset -c 1 "$WORK/brokerbench" -mode echo -addr 127.0.0.1:17499 -duration 1s >/dev/null 2>&1 &
	PIDS+=($!)
	for r in $(seq "$ROUNDS"); do
		# On CPU 1, where the brokers' log writers run; the file sits next
		# to their data directories.
		settle
		FS+=("$(taskset -c 1 "$WORK/brokerbench" -mode fsync -dir "$WORK" -duration "${DURATION}s")")
		echo "round $r fsync (128 B append + fdatasync) µs: ${FS[-1]}"
		settle
		FP+=("$(taskset -c 1 "$WORK/brokerbench" -mode fsync-prealloc -dir "$WORK" -duration "${DURATION}s")")
		echo "round $r fsync (128 B into preallocated space + fdatasync) µs: ${FP[-1]}"
		settle
		RT+=("$(taskset -c 0 "$WORK/brokerbench" -mode rtt -addr 127.0.0.1:17499 -duration "${DURATION}s")")
		echo "round $r loopback round trip (64 B, CPU 0 -> CPU 1 -> CPU 0) µs: ${RT[-1]}"
	done
	FSYNC_P99=$(medfield p99 "${FS[@]}")
	RESULTS+=("RESULT broker_fsync_latency_us p50=$(medfield p50 "${FS[@]}") p90=$(medfield p90 "${FS[@]}") p99=$FSYNC_P99 p999=$(medfield p999 "${FS[@]}") max=$(medfield max "${FS[@]}")")
	RESULTS+=("RESULT broker_fsync_prealloc_latency_us p50=$(medfield p50 "${FP[@]}") p90=$(medfield p90 "${FP[@]}") p99=$(medfield p99 "${FP[@]}") p999=$(medfield p999 "${FP[@]}") max=$(medfield max "${FP[@]}")")
	RESULTS+=("RESULT broker_loopback_rtt_us p50=$(medfield p50 "${RT[@]}") p90=$(medfield p90 "${RT[@]}") p99=$(medfield p99 "${RT[@]}") p999=$(medfield p999 "${RT[@]}") max=$(medfield max "${RT[@]}")")
fi

if has sync; then
	SYNC_KEYS=(switchyard_always switchyard_batch nats_js rabbitmq)
	declare -A SYNC
	for r in $(seq "$ROUNDS"); do
		for k in "${SYNC_KEYS[@]}"; do
			# shellcheck disable=SC2046 # target prints several flags
			SYNC[$k,$r]=$(lat -mode sync $(target "$k"))
			echo "round $r sync publish $k µs: ${SYNC[$k,$r]}"
		done
	done
	declare -A SYNC_MED
	for pct in p50 p99 p999; do
		line="RESULT broker_sync_publish_${pct}_us"
		for k in "${SYNC_KEYS[@]}"; do
			rows=()
			for r in $(seq "$ROUNDS"); do rows+=("${SYNC[$k,$r]}"); done
			SYNC_MED[$k,$pct]=$(medfield "$pct" "${rows[@]}")
			line+=" $k=${SYNC_MED[$k,$pct]}"
		done
		if [ "$pct" = p99 ]; then
			if [ -n "$FSYNC_P99" ]; then
				goal=$((FSYNC_P99 + 100))
				met() { if [ "$1" -le "$goal" ]; then echo yes; else echo no; fi; }
				line+=" fsync_p99=$FSYNC_P99 goal_us=$goal goal_met_always=$(met "${SYNC_MED[switchyard_always,p99]}") goal_met_batch=$(met "${SYNC_MED[switchyard_batch,p99]}")"
			else
				line+=" goal=unchecked(no fsync phase)"
			fi
		fi
		RESULTS+=("$line")
	done
fi

if has e2e; then
	E2E_KEYS=(switchyard nats_js rabbitmq)
	declare -A PEAK RATE E2E
	for r in $(seq "$ROUNDS"); do
		for k in "${E2E_KEYS[@]}"; do
			# shellcheck disable=SC2046
			PEAK[$k,$r]=$(lat -mode peak $(target "$k"))
		done
		echo "round $r peak publish+consume msg/s: switchyard=${PEAK[switchyard,$r]} nats_js=${PEAK[nats_js,$r]} rabbitmq=${PEAK[rabbitmq,$r]}"
	done
	for k in "${E2E_KEYS[@]}"; do
		rows=()
		for r in $(seq "$ROUNDS"); do rows+=("${PEAK[$k,$r]}"); done
		PEAK[$k]=$(median "${rows[@]}")
		RATE[$k]=${E2E_RATE:-$(awk "BEGIN{printf \"%d\", ${PEAK[$k]}/2}")}
		if [ "${RATE[$k]}" -lt 1 ]; then echo "$k: peak ${PEAK[$k]} msg/s is too low for an e2e run" >&2; exit 1; fi
	done
	how="50% of each one's median peak"
	if [ -n "$E2E_RATE" ]; then how="E2E_RATE for all"; fi
	echo "e2e rates (msg/s): switchyard=${RATE[switchyard]} nats_js=${RATE[nats_js]} rabbitmq=${RATE[rabbitmq]} ($how)"
	for r in $(seq "$ROUNDS"); do
		for k in "${E2E_KEYS[@]}"; do
			# shellcheck disable=SC2046
			E2E[$k,$r]=$(lat -mode e2e -rate "${RATE[$k]}" $(target "$k"))
			echo "round $r e2e $k at ${RATE[$k]} msg/s, µs: ${E2E[$k,$r]}"
			if [ "$(field lost "${E2E[$k,$r]}")" != 0 ]; then echo "warning: $k lost messages in round $r" >&2; fi
			if awk "BEGIN { exit !($(field send_rate "${E2E[$k,$r]}") < 0.95 * ${RATE[$k]}) }"; then
				echo "warning: the generator sent $k only $(field send_rate "${E2E[$k,$r]}") of ${RATE[$k]} msg/s in round $r: its own lag (CPU 0) is in these latencies" >&2
			fi
		done
	done
	for pct in p50 p99 p999; do
		line="RESULT broker_e2e_${pct}_us_$DUR"
		for k in "${E2E_KEYS[@]}"; do
			rows=()
			for r in $(seq "$ROUNDS"); do rows+=("${E2E[$k,$r]}"); done
			line+=" $k=$(medfield "$pct" "${rows[@]}")"
		done
		if [ "$pct" = p99 ]; then
			for k in "${E2E_KEYS[@]}"; do line+=" rate_$k=${RATE[$k]}"; done
		fi
		RESULTS+=("$line")
	done
fi

if [ ${#RESULTS[@]} -gt 0 ]; then printf '%s\n' "${RESULTS[@]}"; fi
if [ -n "$TP_RESULT" ]; then echo "$TP_RESULT"; fi
