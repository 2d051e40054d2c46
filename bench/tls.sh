#!/usr/bin/env bash
# bench/tls.sh: TLS handshake cost — new TLS connections per second, each
# with one small request, terminated by the switchyard gateway, HAProxy and
# nginx in front of the same plain-HTTP backend (keep-alive upstream for all).
# Rules: /work/shared/BENCHMARKING.md. CPU 0: backend and load client
# (bench/tlsload, GOMAXPROCS=1 each); CPU 1: the proxy (switchyard
# GOMAXPROCS=1, HAProxy nbthread 1, nginx worker_processes 1). Same
# certificate for all: ECDSA P-256, self-signed; key exchange X25519 (the
# client offers X25519 and P-256, no post-quantum hybrid).
# Four loads, alternated over ROUNDS rounds (switchyard, haproxy, nginx in
# turn), median per contender:
#   full13, full12: full handshakes, TLS 1.3 and TLS 1.2 (ECDHE-ECDSA-AES128-GCM)
#   resumed13, resumed12: resumed handshakes (TLS 1.3 PSK, TLS 1.2 tickets)
# Load client: bench/tlsload (a Go loop: dial, handshake, one request with
# Connection: close); see its doc comment for why not s_time or h2load.
# Each run also reads the proxy's CPU time (user+system, /proc/PID/stat;
# nginx: master and workers; HAProxy: its threads are one process) before
# and after: when the load client's core saturates first, connections/s
# shows the client's ceiling and CPU µs per handshake is the comparison
# that still holds.
# Environment: ROUNDS (3), DURATION (5 s), WORKERS (16), BASE_PORT (19400).
# Installs haproxy and nginx with apt when missing. Ends with RESULT lines.
set -euo pipefail
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-5}; WORKERS=${WORKERS:-16}
BASE_PORT=${BASE_PORT:-19400}
REPO=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/switchyard-tls.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

if ! command -v haproxy >/dev/null || ! command -v nginx >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy nginx-light >/dev/null
fi
BACK=$BASE_PORT; SY=$((BASE_PORT+1)); HA=$((BASE_PORT+2)); NG=$((BASE_PORT+3))
(cd "$REPO" && go build -o "$TMP/tlsload" ./bench/tlsload && go build -o "$TMP/backend" ./bench/backend && go build -o "$TMP/switchyard" ./cmd/switchyard)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
cat "$TMP/cert.pem" "$TMP/key.pem" > "$TMP/haproxy.pem"

GOMAXPROCS=1 taskset -c 0 "$TMP/backend" -addr 127.0.0.1:$BACK -size 64 >/dev/null 2>&1 & PIDS+=($!)

cat > "$TMP/sy.yaml" <<YAML
listen: 127.0.0.1:$SY
access_log: off
tls: { cert: $TMP/cert.pem, key: $TMP/key.pem }
upstreams:
  b: { targets: [{address: 127.0.0.1:$BACK}] }
routes:
  - { name: all, upstream: b }
YAML
GOMAXPROCS=1 taskset -c 1 "$TMP/switchyard" gateway --config "$TMP/sy.yaml" >"$TMP/sy.log" 2>&1 & PIDS+=($!)
declare -A PID=([switchyard]=$!)

cat > "$TMP/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 4000
  ssl-default-bind-options ssl-min-ver TLSv1.2
  ssl-default-bind-curves X25519
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend f
  bind 127.0.0.1:$HA ssl crt $TMP/haproxy.pem alpn http/1.1
  default_backend b
backend b
  server s1 127.0.0.1:$BACK
CFG
taskset -c 1 haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 & PIDS+=($!)
PID[haproxy]=$!

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
  upstream b { server 127.0.0.1:$BACK max_fails=0; keepalive 64; }
  server {
    listen 127.0.0.1:$NG ssl;
    ssl_certificate $TMP/cert.pem;
    ssl_certificate_key $TMP/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ecdh_curve X25519;
    ssl_session_tickets on;
    location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CFG
taskset -c 1 nginx -c "$TMP/nginx.conf" -p "$TMP/nginx" >"$TMP/nginx.log" 2>&1 & PIDS+=($!)
PID[nginx]=$!

for p in $SY $HA $NG $BACK; do
	for _ in $(seq 150); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done
echo "versions: $(haproxy -v | head -1); $(nginx -v 2>&1); $(openssl version); $(go version)"
echo "load: bench/tlsload -workers $WORKERS -duration ${DURATION}s (CPU 0, with the backend); proxies on CPU 1"

declare -A port=([switchyard]=$SY [haproxy]=$HA [nginx]=$NG)
run() { # mode who
	local v=${1: -2}; local args=(-tls "${v:0:1}.${v:1:1}")
	[[ $1 == resumed* ]] && args+=(-resume)
	GOMAXPROCS=1 taskset -c 0 "$TMP/tlsload" -addr 127.0.0.1:${port[$2]} -workers "$WORKERS" -duration "${DURATION}s" "${args[@]}"
}
# cputicks PID: user+system CPU so far, in clock ticks, of PID and its
# child processes (nginx's workers; a worker that exited is not counted,
# which is why the workers must live through the run: they do).
cputicks() {
	local t=0 p
	for p in "$1" $(pgrep -P "$1" || true); do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
TCK=$(getconf CLK_TCK)
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for mode in full13 full12 resumed13 resumed12; do
	for r in $(seq "$ROUNDS"); do
		for who in switchyard haproxy nginx; do
			t0=$(cputicks "${PID[$who]}")
			out=$(run $mode $who)
			t1=$(cputicks "${PID[$who]}")
			cps=$(echo "$out" | sed -E 's/^conns_per_s=([0-9.]+).*/\1/')
			us=$(awk -v a="$t0" -v b="$t1" -v c="$cps" -v d="$DURATION" -v hz="$TCK" 'BEGIN {printf "%.1f", (c > 0) ? (b - a) / hz * 1e6 / (c * d) : 0}')
			echo "$mode round $r $who $out proxy_cpu_us_per_conn=$us"
			echo "$cps" >> "$TMP/$mode.$who"
			echo "$us" >> "$TMP/$mode.$who.cpu"
		done
	done
	sy=$(median < "$TMP/$mode.switchyard"); ha=$(median < "$TMP/$mode.haproxy"); ng=$(median < "$TMP/$mode.nginx")
	best=$(printf '%s\n%s\n' "$ha" "$ng" | sort -g | tail -1)
	syc=$(median < "$TMP/$mode.switchyard.cpu"); hac=$(median < "$TMP/$mode.haproxy.cpu"); ngc=$(median < "$TMP/$mode.nginx.cpu")
	bestc=$(printf '%s\n%s\n' "$hac" "$ngc" | sort -g | head -1)
	echo "RESULT tls_$mode switchyard=$sy haproxy=$ha nginx=$ng ratio_vs_best=$(awk -v a="$sy" -v b="$best" 'BEGIN{printf "%.2f", a/b}')" \
		"cpu_us_per_conn switchyard=$syc haproxy=$hac nginx=$ngc cpu_vs_best=$(awk -v a="$syc" -v b="$bestc" 'BEGIN{printf "%.2f", (b > 0) ? a/b : 0}')"
done
