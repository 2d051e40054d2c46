#!/usr/bin/env bash
# Edge cache hit throughput: switchyard's edge cache versus Varnish 7.1
# (malloc storage) and nginx 1.22 proxy_cache, all warmed with the same
# working set and asked only for cached objects. Pinned as
# ../shared/BENCHMARKING.md says: wrk and the origins on CPU 0, the cache
# under test on CPU 1 (GOMAXPROCS=1, worker_processes 1, one Varnish
# thread pool). Keep-alive everywhere, logging off. For each object size,
# rounds alternate switchyard / varnish / nginx; results are medians.
#
#   bash bench/edge.sh        # ROUNDS=3 DURATION=8 CONNS=64 KEYS=10000 SIZES="1024 102400"
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CONNS=${CONNS:-64}
KEYS=${KEYS:-10000}
SIZES=${SIZES:-"1024 102400"}
BASE_PORT=${BASE_PORT:-18381}
TMP=$(mktemp -d /tmp/switchyard-bench-edge-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$TMP/nginx.pid" ] && kill "$(cat "$TMP/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$TMP/nginx-cache" "$TMP/nginx-temp" "$TMP/varnish" "$TMP"/warm-*.txt  # keep the logs and wrk output
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need nginx nginx
need varnishd varnish

echo "== versions"
go version
wrk --version 2>&1 | head -1 || true
nginx -v 2>&1
varnishd -V 2>&1 | head -1
echo "switchyard: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "keys=$KEYS sizes=$SIZES conns=$CONNS duration=${DURATION}s rounds=$ROUNDS"

go build -o "$TMP/switchyard" ./cmd/switchyard
go build -o "$TMP/backend" ./bench/backend

SMALL=$BASE_PORT; LARGE=$((BASE_PORT + 1)); SY=$((BASE_PORT + 2)); VA=$((BASE_PORT + 3)); NG=$((BASE_PORT + 4))
taskset -c 0 env GOMAXPROCS=1 "$TMP/backend" -addr "127.0.0.1:$SMALL" -size 1024 >/dev/null 2>&1 & PIDS+=($!)
taskset -c 0 env GOMAXPROCS=1 "$TMP/backend" -addr "127.0.0.1:$LARGE" -size 102400 >/dev/null 2>&1 & PIDS+=($!)

# Each cache keeps every object an hour; /1024/ and /102400/ pick the origin.
cat > "$TMP/switchyard.yaml" <<YAML
listen: 127.0.0.1:$SY
access_log: off
caches:
  edge: { memory: 4GiB, max_object: 1MiB, default_ttl: 1h }
upstreams:
  small: { targets: [{ address: 127.0.0.1:$SMALL }] }
  large: { targets: [{ address: 127.0.0.1:$LARGE }] }
routes:
  - { match: { path_prefix: /1024/ }, upstream: small, cache: edge }
  - { match: { path_prefix: /102400/ }, upstream: large, cache: edge }
YAML
cat > "$TMP/default.vcl" <<VCL
vcl 4.1;
backend small { .host = "127.0.0.1"; .port = "$SMALL"; }
backend large { .host = "127.0.0.1"; .port = "$LARGE"; }
sub vcl_recv {
  if (req.url ~ "^/102400/") { set req.backend_hint = large; } else { set req.backend_hint = small; }
}
sub vcl_backend_response { set beresp.ttl = 1h; }
VCL
mkdir -p "$TMP/nginx-cache" "$TMP/nginx-temp"
cat > "$TMP/nginx.conf" <<NGINX
user root;
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log error;
daemon on;
events { worker_connections 4096; }
http {
  access_log off;
  proxy_temp_path $TMP/nginx-temp;
  proxy_cache_path $TMP/nginx-cache levels=1:2 keys_zone=edge:64m max_size=4g inactive=1h use_temp_path=off;
  upstream small { server 127.0.0.1:$SMALL; keepalive 64; }
  upstream large { server 127.0.0.1:$LARGE; keepalive 64; }
  server {
    listen 127.0.0.1:$NG;
    keepalive_requests 1000000;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_cache edge;
    proxy_cache_valid 200 1h;
    location /1024/ { proxy_pass http://small; }
    location /102400/ { proxy_pass http://large; }
  }
}
NGINX

taskset -c 1 env GOMAXPROCS=1 "$TMP/switchyard" gateway --config "$TMP/switchyard.yaml" >"$TMP/switchyard.log" 2>&1 & PIDS+=($!)
taskset -c 1 varnishd -F -j none -n "$TMP/varnish" -a "127.0.0.1:$VA" -f "$TMP/default.vcl" -s malloc,4G \
  -p thread_pools=1 -p thread_pool_min=64 >"$TMP/varnish.log" 2>&1 & PIDS+=($!)
taskset -c 1 nginx -c "$TMP/nginx.conf"
sleep 2

# mem NAME: resident KiB of all of a contender's processes.
mem() {
  case $1 in
    switchyard) ps -o rss= -p "${PIDS[2]}" ;;
    varnish) ps -eo rss=,args= | grep -F "$TMP/varnish" | grep -v grep | awk '{print $1}' ;;
    nginx) { ps -o rss= -p "$(cat "$TMP/nginx.pid")"; ps -o rss= --ppid "$(cat "$TMP/nginx.pid")"; } ;;
  esac | awk '{s+=$1} END{print s+0}'
}
declare -A RSS0
for name in switchyard varnish nginx; do RSS0[$name]=$(mem $name); done
SIZES_DONE=($SIZES)

cat > "$TMP/keys.lua" <<'LUA'
local keys = tonumber(os.getenv("KEYS"))
local size = os.getenv("SIZE")
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/" .. size .. "/obj" .. math.random(keys))
end
LUA

run() { # port size seconds
  KEYS=$KEYS SIZE=$2 taskset -c 0 wrk -t1 -c"$CONNS" -d"$3s" -s "$TMP/keys.lua" "http://127.0.0.1:$1/" | tee -a "$TMP/wrk.txt" |
    awk '/Requests\/sec/{print int($2)} /Non-2xx/{print "NON2XX " $0 > "/dev/stderr"}'
}
warm() { # port size: every key once, then a few seconds of random keys
  for i in $(seq 1 "$KEYS"); do printf 'url = "http://127.0.0.1:%s/%s/obj%s"\noutput = "/dev/null"\n' "$1" "$2" "$i"; done > "$TMP/warm-$1-$2.txt"
  curl -s --no-progress-meter --parallel --parallel-max 16 -K "$TMP/warm-$1-$2.txt" >/dev/null 2>&1 || true
  run "$1" "$2" 2 >/dev/null
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
result=""
for size in $SIZES; do
  for p in $SY $VA $NG; do warm "$p" "$size"; done
  # Every contender must now answer from its cache.
  hit=$(curl -s -D - -o /dev/null "http://127.0.0.1:$SY/$size/obj1" | tr -d '\r' | awk -F': ' '/^Cache-Status/{print $2}')
  [ "$hit" = "switchyard; hit" ] || { echo "switchyard not warm: Cache-Status $hit"; exit 1; }
  for p in $VA $NG; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/$size/obj1")
    [ "$code" = 200 ] || { echo "port $p answered $code"; cat "$TMP"/*.log "$TMP/nginx-error.log" 2>/dev/null | tail -20; exit 1; }
  done
  sy=(); va=(); ng=()
  echo "== size $size: $ROUNDS rounds of switchyard, varnish, nginx (wrk -t1 -c$CONNS -d${DURATION}s over $KEYS keys)"
  for r in $(seq "$ROUNDS"); do
    s=$(run $SY "$size" "$DURATION"); v=$(run $VA "$size" "$DURATION"); n=$(run $NG "$size" "$DURATION")
    echo "  round $r: switchyard=$s varnish=$v nginx=$n"
    sy+=("$s"); va+=("$v"); ng+=("$n")
  done
  ms=$(median "${sy[@]}"); mv=$(median "${va[@]}"); mn=$(median "${ng[@]}")
  best=$(( mv > mn ? mv : mn ))
  ratio=$(awk -v s="$ms" -v b="$best" 'BEGIN{printf "%.2f", s/b}')
  result="$result size$size: switchyard=$ms varnish=$mv nginx=$mn ratio_vs_best=$ratio;"
done
echo "== memory: RSS growth from before warming to after the runs, per cached object (${#SIZES_DONE[@]} sizes x $KEYS keys)"
objs=$(( KEYS * $(echo $SIZES | wc -w) ))
for name in switchyard varnish nginx; do
  after=$(mem $name)
  per=$(awk -v a="$after" -v b="${RSS0[$name]}" -v n="$objs" 'BEGIN{printf "%.0f", (a-b)*1024/n}')
  echo "  $name: rss ${RSS0[$name]} KiB -> $after KiB, $per bytes per object"
  result="$result mem_per_object_$name=$per;"
done
echo "  nginx keeps bodies on disk (page cache): $(du -sk "$TMP/nginx-cache" | cut -f1) KiB in $TMP/nginx-cache"
echo "raw output: $TMP"
echo "RESULT edge_hits_rps$result"
