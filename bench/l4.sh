#!/usr/bin/env bash
# bench/l4.sh: switchyard's l4 TCP listener against HAProxy (mode tcp) and
# nginx (stream) forwarding to one echo backend, on this machine.
# Rules: /work/shared/BENCHMARKING.md. CPU 0: backend and load
# (bench/l4load, GOMAXPROCS=1 each); CPU 1: the proxy (switchyard
# GOMAXPROCS=1, HAProxy nbthread 1, nginx worker_processes 1).
# Two loads, alternated over ROUNDS rounds, median per contender:
#   throughput: CONNS_T connections streaming 64 KiB blocks echoed back (MB/s)
#   connrate:   CONNS_C workers connecting, one byte there and back, closing
# "direct" is the backend without a proxy (the ceiling).
# Environment: ROUNDS (3), DURATION (5 s), CONNS_T (8), CONNS_C (32),
# BASE_PORT (19300). HAProxy gets option splice-auto (kernel splicing, as
# switchyard uses); nginx stream has none, so it gets 64 KiB buffers. Installs haproxy, nginx and its stream module with apt
# when missing. Ends with RESULT lines.
set -euo pipefail
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-5}; CONNS_T=${CONNS_T:-8}; CONNS_C=${CONNS_C:-32}
BASE_PORT=${BASE_PORT:-19300}
REPO=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/switchyard-l4.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

if ! command -v haproxy >/dev/null || ! command -v nginx >/dev/null || ! ls /usr/lib/nginx/modules/ngx_stream_module.so >/dev/null 2>&1; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy nginx-light libnginx-mod-stream >/dev/null
fi
BACK=$BASE_PORT; SY=$((BASE_PORT+1)); HA=$((BASE_PORT+2)); NG=$((BASE_PORT+3)); SYADM=$((BASE_PORT+4)); SYHTTP=$((BASE_PORT+5))
(cd "$REPO" && go build -o "$TMP/l4load" ./bench/l4load && go build -o "$TMP/switchyard" ./cmd/switchyard)

GOMAXPROCS=1 taskset -c 0 "$TMP/l4load" -serve 127.0.0.1:$BACK & PIDS+=($!)

cat > "$TMP/sy.yaml" <<YAML
listen: 127.0.0.1:$SYHTTP
admin: 127.0.0.1:$SYADM
access_log: off
upstreams:
  echo: { targets: [{address: 127.0.0.1:$BACK}] }
l4:
  - { name: echo, listen: 127.0.0.1:$SY, upstream: echo }
YAML
GOMAXPROCS=1 taskset -c 1 "$TMP/switchyard" gateway --config "$TMP/sy.yaml" >"$TMP/sy.log" 2>&1 & PIDS+=($!)

cat > "$TMP/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 4000
defaults
  mode tcp
  option splice-auto
  timeout connect 5s
  timeout client 1h
  timeout server 1h
frontend f
  bind 127.0.0.1:$HA
  default_backend b
backend b
  server s1 127.0.0.1:$BACK
CFG
taskset -c 1 haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 & PIDS+=($!)

mkdir -p "$TMP/nginx"
cat > "$TMP/nginx.conf" <<CFG
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log;
events { worker_connections 8000; }
stream {
  upstream b { server 127.0.0.1:$BACK; }
  server { listen 127.0.0.1:$NG; proxy_pass b; proxy_timeout 1h; proxy_buffer_size 64k; }
}
CFG
taskset -c 1 nginx -c "$TMP/nginx.conf" -p "$TMP/nginx" >"$TMP/nginx.log" 2>&1 & PIDS+=($!)

for p in $SY $HA $NG $BACK; do
	for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done
echo "versions: $(haproxy -v | head -1); $(nginx -v 2>&1); $(go version)"

declare -A port=([switchyard]=$SY [haproxy]=$HA [nginx]=$NG [direct]=$BACK)
run() { GOMAXPROCS=1 taskset -c 0 "$TMP/l4load" -mode "$1" -addr 127.0.0.1:${port[$2]} -conns "$3" -duration "${DURATION}s"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for mode in throughput connrate; do
	conns=$CONNS_T; [ $mode = connrate ] && conns=$CONNS_C
	for r in $(seq "$ROUNDS"); do
		for who in switchyard haproxy nginx direct; do
			v=$(run $mode $who $conns | sed -E 's/^[a-z_]+=([0-9.]+).*/\1/')
			echo "$mode round $r $who $v"
			echo "$v" >> "$TMP/$mode.$who"
		done
	done
	sy=$(median < "$TMP/$mode.switchyard"); ha=$(median < "$TMP/$mode.haproxy"); ng=$(median < "$TMP/$mode.nginx"); di=$(median < "$TMP/$mode.direct")
	best=$(printf '%s\n%s\n' "$ha" "$ng" | sort -n | tail -1)
	echo "RESULT l4_$mode switchyard=$sy haproxy=$ha nginx=$ng direct=$di ratio_vs_best=$(awk -v a="$sy" -v b="$best" 'BEGIN{printf "%.2f", a/b}')"
done
