#!/usr/bin/env bash
# bench/grpc-mallocs.sh BIN: a switchyard build (server.http2: switchyard,
# h2c both hops, bench/grpc-ab.sh's layout: backend and load on CPU 0,
# gateway on CPU 1) under bench/grpcload, unary then bidi (MODES), 4 s
# each after a 2 s warm-up: calls/s, the gateway's allocations per call
# (Mallocs delta from its admin /debug/pprof/allocs?debug=1) and CPU µs
# per call (/proc/PID/stat). Environment: L (grpcload binary), BASE_PORT
# (27650: backend, +1 gateway, +11 admin), MODES ("unary stream").
set -u
BIN=${1:?switchyard binary}; L=${L:-grpcload}; P=${BASE_PORT:-27650}
WORK=$(mktemp -d /tmp/grpc-mallocs.XXXXXX); cd "$WORK"
cat > sy.yaml <<Y
listen: 127.0.0.1:$((P+1))
admin: 127.0.0.1:$((P+11))
h2c: true
access_log: off
server: { http2: switchyard }
upstreams:
  grpc: { protocol: h2c, targets: [{address: 127.0.0.1:$P}] }
routes:
  - { name: grpc, match: { path_prefix: /bench.Echo/ }, upstream: grpc }
Y
GOMAXPROCS=1 taskset -c 0 $L -serve 127.0.0.1:$P > back.log 2>&1 & BP=$!
GOMAXPROCS=1 taskset -c 1 $BIN gateway --config sy.yaml > sy.log 2>&1 & SP=$!
trap 'kill $SP $BP 2>/dev/null; rm -rf "$WORK"' EXIT
sleep 1.5
m() { curl -s "http://127.0.0.1:$((P+11))/debug/pprof/allocs?debug=1" | awk '/^# Mallocs/{print $4}'; }
for mode in ${MODES:-unary stream}; do
  GOMAXPROCS=1 taskset -c 0 $L -mode $mode -addr 127.0.0.1:$((P+1)) -conns 4 -concurrency 32 -size 128 -duration 2s > /dev/null
  a=$(m); c0=$(awk '{print $14+$15}' /proc/$SP/stat)
  out=$(GOMAXPROCS=1 taskset -c 0 $L -mode $mode -addr 127.0.0.1:$((P+1)) -conns 4 -concurrency 32 -size 128 -duration 4s)
  b=$(m); c1=$(awk '{print $14+$15}' /proc/$SP/stat)
  calls=$(echo "$out" | sed -E 's/^calls_per_s=([0-9.]+).*/\1/')
  echo "$mode $out mallocs_per_call=$(awk -v a=$a -v b=$b -v n=$calls 'BEGIN{printf "%.1f", (b-a)/(n*4)}') cpu_us_per_call=$(awk -v c=$((c1-c0)) -v n=$calls 'BEGIN{printf "%.1f", c*10000/(n*4)}')"
done
