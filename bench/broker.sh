#!/usr/bin/env bash
# bench/broker.sh — publish throughput with confirms, then consume+ack
# throughput, of switchyard's broker against NATS JetStream and RabbitMQ, on
# this machine, side by side, alternating runs (A B C A B C ...), median of
# each.
#
#   bench/broker.sh [-n MESSAGES] [-s SIZE] [-w WINDOW] [-r ROUNDS] [-d durable|buffered]
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
# Prints every round and the consume+ack medians, and ends with one line
# (publish throughput):
#   RESULT broker_publish_msgs_per_s_DURABILITY switchyard=... nats_js=... rabbitmq=... ratio_vs_nats=... ratio_vs_rabbitmq=...
set -euo pipefail

N=20000 SIZE=256 WINDOW=256 ROUNDS=3 DUR=durable
while getopts "n:s:w:r:d:" o; do
	case $o in
	n) N=$OPTARG ;; s) SIZE=$OPTARG ;; w) WINDOW=$OPTARG ;; r) ROUNDS=$OPTARG ;; d) DUR=$OPTARG ;;
	*) echo "usage: $0 [-n MESSAGES] [-s SIZE] [-w WINDOW] [-r ROUNDS] [-d durable|buffered]" >&2; exit 2 ;;
	esac
done
case $DUR in
durable) SY_FSYNC=batch NATS_SYNC="sync_interval: always" PERSISTENT=true ;;
buffered) SY_FSYNC=interval:2m NATS_SYNC="" PERSISTENT=false ;;
*) echo "-d $DUR: want durable or buffered" >&2; exit 2 ;;
esac

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
	github.com/nats-io/nats.go v1.55.0
	github.com/rabbitmq/amqp091-go v1.16.0
)

replace github.com/switchyard/switchyard => $ROOT
EOF
cat >"$WORK/gen/main.go" <<'EOF'
// Command brokerbench publishes N messages with confirms and prints the rate.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
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
	flag.Parse()
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
	req, _ := http.NewRequest("PUT", "http://"+httpAddr+"/v1/queues/bench", bytes.NewReader([]byte(`{}`)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	resp.Body.Close()
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
	// Consume: 8 pullers, batches of window/8 (window messages in flight),
	// one ack per batch, answered after the ack's fsync.
	var got atomic.Int64
	start = time.Now()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for got.Load() < int64(n) {
				ds, err := c.Receive(ctx, "bench", broker.ReceiveOptions{Max: max(window/8, 1), Wait: 100 * time.Millisecond})
				if err != nil {
					failed.Add(1)
					return
				}
				rs := make([]string, len(ds))
				for i, m := range ds {
					rs[i] = m.Receipt
				}
				if len(rs) > 0 {
					if _, err := c.Ack(ctx, "bench", rs...); err != nil {
						failed.Add(1)
						return
					}
				}
				got.Add(int64(len(ds)))
			}
		}()
	}
	wg.Wait()
	dc := time.Since(start)
	if f := failed.Load(); f > 0 || got.Load() != int64(n) {
		return 0, 0, fmt.Errorf("consume: %d failures, %d of %d messages", f, got.Load(), n)
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

	"github.com/switchyard/switchyard/broker"
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
	b, err := broker.Open(broker.Config{Dir: *data, Fsync: p})
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
cat >"$WORK/nats.conf" <<EOF
listen: 127.0.0.1:14222
jetstream { store_dir: "$WORK/nats-data"${NATS_SYNC:+, $NATS_SYNC} }
EOF
GOMAXPROCS=1 taskset -c 1 "$NATS_BIN" -c "$WORK/nats.conf" >"$WORK/nats.log" 2>&1 &
PIDS+=($!)
BEAM_PID=$(pgrep -u rabbitmq -x beam.smp | head -1 || true)
if [ -n "$BEAM_PID" ]; then taskset -a -p -c 1 "$BEAM_PID" >/dev/null; fi
for i in $(seq 50); do
	if (exec 3<>/dev/tcp/127.0.0.1/17400) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/14222) 2>/dev/null; then break; fi
	sleep 0.1
done
for port in 17400 14222; do
	if ! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
		echo "broker on port $port did not start:" >&2
		cat "$WORK/sy.log" "$WORK/nats.log" >&2
		exit 1
	fi
done

echo "durability: $DUR"
echo "ran: switchyard $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo dev) (+ working tree) --fsync $SY_FSYNC (GOMAXPROCS=1, CPU 1)"
echo "ran: $("$NATS_BIN" --version) JetStream file store ${NATS_SYNC:-default sync_interval (2m)} (GOMAXPROCS=1, CPU 1)"
echo "ran: RabbitMQ $(rabbitmqctl version 2>/dev/null || echo '?') durable classic queue, persistent=$PERSISTENT, confirms (beam pinned to CPU 1: ${BEAM_PID:-not found})"
echo "load: $N messages of $SIZE B, window $WINDOW, $ROUNDS rounds alternating, generator on CPU 0"

gen() { taskset -c 0 "$WORK/brokerbench" -n "$N" -size "$SIZE" -window "$WINDOW" "$@"; }
declare -a SY NJ RB SYC NJC RBC
for r in $(seq "$ROUNDS"); do
	read -r p c < <(gen -target switchyard -addr 127.0.0.1:17400 -http 127.0.0.1:17401); SY+=("$p"); SYC+=("$c")
	read -r p c < <(gen -target nats -addr 127.0.0.1:14222); NJ+=("$p"); NJC+=("$c")
	read -r p c < <(gen -target rabbit -addr 127.0.0.1:5672 -persistent=$PERSISTENT); RB+=("$p"); RBC+=("$c")
	echo "round $r publish: switchyard=${SY[-1]} nats_js=${NJ[-1]} rabbitmq=${RB[-1]} msgs/s; consume+ack: switchyard=${SYC[-1]} nats_js=${NJC[-1]} rabbitmq=${RBC[-1]} msgs/s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
sc=$(median "${SYC[@]}") nc=$(median "${NJC[@]}") qc=$(median "${RBC[@]}")
echo "consume+ack median: switchyard=$sc nats_js=$nc rabbitmq=$qc ratio_vs_nats=$(awk "BEGIN{printf \"%.2f\", $sc/$nc}") ratio_vs_rabbitmq=$(awk "BEGIN{printf \"%.2f\", $sc/$qc}")"
s=$(median "${SY[@]}") n=$(median "${NJ[@]}") q=$(median "${RB[@]}")
echo "RESULT broker_publish_msgs_per_s_$DUR switchyard=$s nats_js=$n rabbitmq=$q ratio_vs_nats=$(awk "BEGIN{printf \"%.2f\", $s/$n}") ratio_vs_rabbitmq=$(awk "BEGIN{printf \"%.2f\", $s/$q}")"
