#!/usr/bin/env bash
# bench/grpc.sh: proxied gRPC throughput, h2c on both hops, through the
# switchyard gateway (h2c: true, upstream protocol h2c), nginx (http2
# listener, grpc_pass) and HAProxy (bind proto h2, server proto h2) to the
# same Go gRPC backend; "direct" is the backend without a proxy (the
# ceiling). Rules: /work/shared/BENCHMARKING.md. CPU 0: backend and load
# client (bench/grpcload, GOMAXPROCS=1 each); CPU 1: the proxy (switchyard
# GOMAXPROCS=1, HAProxy nbthread 1, nginx worker_processes 1). No access
# logs. ghz is not in Debian: bench/grpcload is a small grpc-go client.
# Two loads, alternated over ROUNDS rounds, median per contender:
#   unary:  CONCURRENCY workers calling /bench.Echo/Unary back to back
#   stream: CONCURRENCY bidi streams (/bench.Echo/Chat), one message in
#           flight each (sent, echoed, next)
# over CONNS client connections, SIZE-byte payloads.
# Environment: ROUNDS (3), DURATION (5 s), CONNS (4), CONCURRENCY (32),
# SIZE (128), BASE_PORT (19500), HTTP2 (switchyard, the default; net/http for the opt-out: the gateway's server.http2). Installs haproxy and nginx with apt when
# missing. Ends with RESULT lines.
set -euo pipefail
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-5}; CONNS=${CONNS:-4}; CONCURRENCY=${CONCURRENCY:-32}; SIZE=${SIZE:-128}
BASE_PORT=${BASE_PORT:-19500}; HTTP2=${HTTP2:-switchyard}
REPO=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/switchyard-grpc.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

if ! command -v haproxy >/dev/null || ! command -v nginx >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy nginx-light >/dev/null
fi
BACK=$BASE_PORT; SY=$((BASE_PORT+1)); HA=$((BASE_PORT+2)); NG=$((BASE_PORT+3))
(cd "$REPO" && go build -o "$TMP/grpcload" ./bench/grpcload && go build -o "$TMP/switchyard" ./cmd/switchyard)

GOMAXPROCS=1 taskset -c 0 "$TMP/grpcload" -serve 127.0.0.1:$BACK >"$TMP/backend.log" 2>&1 & PIDS+=($!)

cat > "$TMP/sy.yaml" <<YAML
listen: 127.0.0.1:$SY
h2c: true
access_log: off
server: { http2: $HTTP2 }
upstreams:
  grpc: { protocol: h2c, targets: [{address: 127.0.0.1:$BACK}] }
routes:
  - { name: grpc, match: { path_prefix: /bench.Echo/ }, upstream: grpc }
YAML
GOMAXPROCS=1 taskset -c 1 "$TMP/switchyard" gateway --config "$TMP/sy.yaml" >"$TMP/sy.log" 2>&1 & PIDS+=($!)

cat > "$TMP/haproxy.cfg" <<CFG
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
  bind 127.0.0.1:$HA proto h2
  default_backend b
backend b
  server s1 127.0.0.1:$BACK proto h2
CFG
taskset -c 1 haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 & PIDS+=($!)

mkdir -p "$TMP/nginx"
cat > "$TMP/nginx.conf" <<CFG
worker_processes 1;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  # The 1.22 default of 1000 requests per connection would make clients
  # reconnect during a run; the other proxies have no limit.
  keepalive_requests 10000000;
  upstream b { server 127.0.0.1:$BACK max_fails=0; keepalive 64; keepalive_requests 10000000; }
  server {
    listen 127.0.0.1:$NG http2;
    location /bench.Echo/ { grpc_pass grpc://b; grpc_read_timeout 60s; grpc_send_timeout 60s; }
  }
}
CFG
taskset -c 1 nginx -c "$TMP/nginx.conf" -p "$TMP/nginx" >"$TMP/nginx.log" 2>&1 & PIDS+=($!)

for p in $SY $HA $NG $BACK; do
	for _ in $(seq 150); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done
echo "versions: $(haproxy -v | head -1); $(nginx -v 2>&1); $(go version)"
echo "load: bench/grpcload -conns $CONNS -concurrency $CONCURRENCY -size $SIZE -duration ${DURATION}s (CPU 0, with the backend); proxies on CPU 1"

declare -A port=([switchyard]=$SY [haproxy]=$HA [nginx]=$NG [direct]=$BACK)
run() { GOMAXPROCS=1 taskset -c 0 "$TMP/grpcload" -mode "$1" -addr 127.0.0.1:${port[$2]} -conns "$CONNS" -concurrency "$CONCURRENCY" -size "$SIZE" -duration "${DURATION}s"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for mode in unary stream; do
	for r in $(seq "$ROUNDS"); do
		for who in switchyard haproxy nginx direct; do
			out=$(run $mode $who)
			echo "$mode round $r $who $out"
			echo "$out" | sed -E 's/^calls_per_s=([0-9.]+).*/\1/' >> "$TMP/$mode.$who"
		done
	done
	sy=$(median < "$TMP/$mode.switchyard"); ha=$(median < "$TMP/$mode.haproxy"); ng=$(median < "$TMP/$mode.nginx"); di=$(median < "$TMP/$mode.direct")
	best=$(printf '%s\n%s\n' "$ha" "$ng" | sort -n | tail -1)
	echo "RESULT grpc_$mode switchyard=$sy haproxy=$ha nginx=$ng direct=$di ratio_vs_best=$(awk -v a="$sy" -v b="$best" 'BEGIN{printf "%.2f", a/b}') proxy_vs_direct=$(awk -v a="$sy" -v b="$di" 'BEGIN{printf "%.2f", a/b}')"
done
