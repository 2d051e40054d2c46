#!/usr/bin/env bash
# bench/l4-ab.sh A_TREE B_TREE: proxy CPU per new connection of two
# builds of switchyard's l4 TCP listener (e.g. main and a branch's
# worktree) and of HAProxy (mode tcp, bench/l4.sh's configuration), in
# the same run. Each round starts A, B, then HAProxy (one thread/
# GOMAXPROCS=1, pinned to CPU 1), drives each with bench/l4load connrate
# (CONNS workers: connect, one byte there and back, close; CPU 0, with
# the echo backend) for DURATION seconds and reads the proxy's
# user+system CPU from /proc/PID/stat. On a shared machine set RT=1: the
# proxies then run at SCHED_FIFO 1 so other processes on CPU 1 do not
# starve them; the figures are still from a loaded machine: compare the
# contenders with each other, not with other tables. With STRACE=1 a
# last round runs each contender under `strace -f -c` and reports system
# calls per connection (counts hold under load, where CPU times and rates
# do not; strace slows the proxies, so that round's rates are not used).
# Environment: ROUNDS (3), DURATION (3), CONNS (32), BASE_PORT (19500),
# RT (0), STRACE (0). Ends with RESULT lines (medians).
set -euo pipefail
A=$(cd "$1" && pwd); B=$(cd "$2" && pwd)
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-3}; CONNS=${CONNS:-32}; BASE_PORT=${BASE_PORT:-19500}; RT=${RT:-0}; STRACE=${STRACE:-0}
TMP=$(mktemp -d /tmp/switchyard-l4-ab.XXXXXX)
PID=; BPID=
cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null
	[ -n "$BPID" ] && kill "$BPID" 2>/dev/null
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT
(cd "$A" && go build -o "$TMP/A" ./cmd/switchyard)
(cd "$B" && go build -o "$TMP/B" ./cmd/switchyard && go build -o "$TMP/l4load" ./bench/l4load)
BACK=$BASE_PORT
GOMAXPROCS=1 taskset -c 0 "$TMP/l4load" -serve 127.0.0.1:$BACK & BPID=$!
PRIO=(); [ "$RT" = 1 ] && PRIO=(chrt -f 1)
TCK=$(getconf CLK_TCK)
declare -A C R
port=$((BASE_PORT + 10))
start() { # who port
	case $1 in
	haproxy)
		cat >"$TMP/haproxy.cfg" <<CFG
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
  bind 127.0.0.1:$2
  default_backend b
backend b
  server s1 127.0.0.1:$BACK
CFG
		"${PRIO[@]}" taskset -c 1 haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 & PID=$!
		;;
	*)
		cat >"$TMP/sy.yaml" <<YAML
listen: 127.0.0.1:$(($2 + 1))
admin: 127.0.0.1:$(($2 + 2))
access_log: off
upstreams:
  echo: { targets: [{address: 127.0.0.1:$BACK}] }
l4:
  - { name: echo, listen: 127.0.0.1:$2, upstream: echo }
YAML
		GOMAXPROCS=1 "${PRIO[@]}" taskset -c 1 "$TMP/$1" gateway --config "$TMP/sy.yaml" >"$TMP/$1.log" 2>&1 & PID=$!
		;;
	esac
	for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$2) 2>/dev/null && return; sleep 0.1; done
	echo "$1 did not listen on $2" >&2; exit 1
}
for round in $(seq "$ROUNDS"); do
	for v in A B haproxy; do
		port=$((port + 3))
		start $v $port
		t0=$(awk '{print $14 + $15}' /proc/$PID/stat)
		r=$(GOMAXPROCS=1 taskset -c 0 "$TMP/l4load" -mode connrate -addr 127.0.0.1:$port -conns "$CONNS" -duration "${DURATION}s" | sed -E 's/^conns_per_s=([0-9.]+).*/\1/')
		t1=$(awk '{print $14 + $15}' /proc/$PID/stat)
		kill $PID; wait $PID 2>/dev/null || true; PID=
		us=$(awk -v a="$t0" -v b="$t1" -v r="$r" -v d="$DURATION" -v hz="$TCK" 'BEGIN {printf "%.2f", (b - a) / hz * 1e6 / (r * d)}')
		C[$v]="${C[$v]:-} $us"; R[$v]="${R[$v]:-} $r"
		echo "INFO round $round $v conns_per_s=$r proxy_cpu_us_per_conn=$us"
	done
done
# syscalls FILE: system calls per accepted connection in an strace -f log.
syscalls() {
	sed -E 's/^[0-9]+ +//' "$1" | awk '
		/^accept4\(.*= [0-9]+$/ { acc++ }
		match($0, /^[a-z_0-9]+\(/) { c[substr($0, 1, RLENGTH - 1)]++; total++ }
		END { if (!acc) { print "no connections"; exit }
			printf "%.2f (", total / acc
			for (k in c) if (c[k] / acc >= 0.05) printf " %s=%.2f", k, c[k] / acc
			printf " ) conns=%d", acc }'
}
if [ "$STRACE" = 1 ]; then
	for v in A B haproxy; do
		port=$((port + 3))
		start $v $port
		timeout $((DURATION + 2)) strace -f -o "$TMP/strace.$v" -p "$PID" 2>/dev/null & SPID=$!
		sleep 0.5 # attached
		GOMAXPROCS=1 taskset -c 0 "$TMP/l4load" -mode connrate -addr 127.0.0.1:$port -conns "$CONNS" -duration "${DURATION}s" >/dev/null
		wait $SPID || true
		kill $PID; wait $PID 2>/dev/null || true; PID=
		echo "RESULT l4_connrate syscalls_per_conn $v=$(syscalls "$TMP/strace.$v")"
	done
fi
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
a=$(echo "${C[A]}" | median); b=$(echo "${C[B]}" | median); h=$(echo "${C[haproxy]}" | median)
echo "RESULT l4_connrate proxy_cpu_us_per_conn A=$a B=$b haproxy=$h B/A=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b/a}') B/haproxy=$(awk -v h="$h" -v b="$b" 'BEGIN {printf "%.2f", b/h}')"
echo "RESULT l4_connrate conns_per_s A=$(echo "${R[A]}" | median) B=$(echo "${R[B]}" | median) haproxy=$(echo "${R[haproxy]}" | median)"
