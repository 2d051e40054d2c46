#!/usr/bin/env bash
# bench/grpc-ab.sh: two switchyard builds, OLD and NEW (server.http2:
# switchyard unless HTTP2=net/http), and HAProxy as the yardstick,
# alternated per round under bench/grpcload (h2c both hops). Backend and
# load on CPU 0 (GOMAXPROCS=1), gateways and HAProxy (nbthread 1) on
# CPU 1. Per run: calls/s, the proxy's CPU µs per call (utime+stime from
# /proc/PID/stat) and its read and write syscalls per call (/proc/PID/io).
# Environment: OLD, NEW (binaries, required), L (grpcload binary), MODES
# ("unary stream"), ROUNDS (5), DUR (5 s), CONNS (4), CONC (32), WHO ("old
# new haproxy"), NEWENV (e.g. GOGC=400, for NEW only), BASE_PORT (27000),
# PROF=unary|stream (CPU profile of NEW afterwards, prof-new.pb.gz).
set -u
: "${OLD:?OLD binary}" "${NEW:?NEW binary}"
L=${L:-grpcload}; P=${BASE_PORT:-27000}
WORK=$(mktemp -d /tmp/grpc-ab.XXXXXX); cd "$WORK"; echo "# files in $WORK"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; }
trap cleanup EXIT
GOMAXPROCS=1 taskset -c 0 $L -serve 127.0.0.1:$P > back.log 2>&1 & PIDS+=($!)
n=0
for bin in $OLD $NEW; do
 n=$((n+1))
 cat > sy$n.yaml <<Y
listen: 127.0.0.1:$((P+n))
admin: 127.0.0.1:$((P+10+n))
h2c: true
access_log: off
server: { http2: ${HTTP2:-switchyard} }
upstreams:
  grpc: { protocol: h2c, targets: [{address: 127.0.0.1:$P}] }
routes:
  - { name: grpc, match: { path_prefix: /bench.Echo/ }, upstream: grpc }
Y
 E=""; [ $n = 2 ] && E="${NEWENV:-}"; env $E GOMAXPROCS=1 taskset -c 1 $bin gateway --config sy$n.yaml > sy$n.log 2>&1 & PIDS+=($!); eval SYPID$n=$!
done
cat > ha.cfg <<C
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend f
  bind 127.0.0.1:$((P+3)) proto h2
  default_backend b
backend b
  server s1 127.0.0.1:$P proto h2
C
taskset -c 1 haproxy -f ha.cfg -db > ha.log 2>&1 & PIDS+=($!); HAPID=$!
sleep 1
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
declare -A port=([old]=$((P+1)) [new]=$((P+2)) [haproxy]=$((P+3)))
declare -A pid=([old]=$SYPID1 [new]=$SYPID2 [haproxy]=$HAPID)
echo "# $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in ${MODES:-unary stream}; do
for r in $(seq ${ROUNDS:-5}); do
 for who in ${WHO:-old new haproxy}; do
  c0=$(cpu ${pid[$who]}); w0=$(awk '/^syscw/{print $2}' /proc/${pid[$who]}/io); r0=$(awk '/^syscr/{print $2}' /proc/${pid[$who]}/io)
  out=$(GOMAXPROCS=1 taskset -c 0 $L -mode $mode -addr 127.0.0.1:${port[$who]} -conns ${CONNS:-4} -concurrency ${CONC:-32} -size 128 -duration ${DUR:-5}s)
  c1=$(cpu ${pid[$who]}); w1=$(awk '/^syscw/{print $2}' /proc/${pid[$who]}/io); r1=$(awk '/^syscr/{print $2}' /proc/${pid[$who]}/io)
  calls=$(echo "$out" | sed -E 's/^calls_per_s=([0-9.]+).*/\1/')
  echo "$mode r$r $who $calls cpu_us_per_call=$(awk -v c=$((c1-c0)) -v n=$calls -v d=${DUR:-5} 'BEGIN{printf "%.1f", c*10000/(n*d)}') writes_per_call=$(awk -v c=$((w1-w0)) -v n=$calls -v d=${DUR:-5} 'BEGIN{printf "%.2f", c/(n*d)}') reads_per_call=$(awk -v c=$((r1-r0)) -v n=$calls -v d=${DUR:-5} 'BEGIN{printf "%.2f", c/(n*d)}')"
 done
done
done
echo "# $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${PROF:-}" ]; then
  (GOMAXPROCS=1 taskset -c 0 $L -mode ${PROF} -addr 127.0.0.1:$((P+2)) -conns 4 -concurrency 32 -size 128 -duration 12s > /dev/null &)
  sleep 1; curl -s -o prof-new.pb.gz "http://127.0.0.1:$((P+12))/debug/pprof/profile?seconds=9"; sleep 3
fi
