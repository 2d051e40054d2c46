#!/usr/bin/env bash
# bench/dns-ab.sh A_TREE B_TREE: server CPU per query of two builds of
# `switchyard dns` (e.g. main and a branch's worktree) in the same run.
# Each round starts A then B (GOMAXPROCS=1, pinned to CPU 1) on a static
# zone of 100 names and a steered pool (bench/dns.sh's config), drives each
# with dnsperf on CPU 0 (-c 2 -q 200, DURATION seconds, query set static
# or pool) and reads the server's user+system CPU from /proc/PID/stat.
# On a shared machine set RT=1: the servers then run at SCHED_FIFO 1, so
# other processes on CPU 1 cannot starve them (they only sleep between
# batches); the figures are still from a loaded machine: compare A with B,
# not with other tables. Environment: ROUNDS (3), DURATION (3),
# BASE_PORT (19450), RT (0). Ends with RESULT lines (medians).
set -euo pipefail
A=$(cd "$1" && pwd); B=$(cd "$2" && pwd)
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-3}; BASE_PORT=${BASE_PORT:-19450}; RT=${RT:-0}
TMP=$(mktemp -d /tmp/switchyard-dns-ab.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
(cd "$A" && go build -o "$TMP/A" ./cmd/switchyard)
(cd "$B" && go build -o "$TMP/B" ./cmd/switchyard)
zone() { # port
	cat <<YAML
listen: 127.0.0.1:$1
ttl: 20s
health: { interval: 2s, timeout: 1s }
regions: {local: [127.0.0.0/8], elsewhere: [10.0.0.0/8]}
sites:
  - {name: s1, addresses: [198.51.100.10], check: "127.0.0.1:$1", weight: 2}
  - {name: s2, addresses: [198.51.100.11], check: "127.0.0.1:$1", weight: 1}
zones:
  - origin: bench.test.
    soa: {ns: ns1.bench.test., mbox: hostmaster.bench.test., serial: 2026120501, minimum: 60s, ttl: 1h}
    records:
      - "@ NS ns1"
      - "ns1 A 192.0.2.53"
YAML
	for i in $(seq 0 99); do echo "      - \"www$i A 192.0.2.$((i + 100))\""; done
	cat <<YAML
    pools:
      - {name: app, sites: [s1, s2], policy: weighted, answers: 2, geo: {local: [s1, s2], elsewhere: [s2]}}
YAML
}
for i in $(seq 0 99); do echo "www$i.bench.test A"; done >"$TMP/static.txt"
echo "app.bench.test A" >"$TMP/pool.txt"
PRIO=(); [ "$RT" = 1 ] && PRIO=(chrt -f 1)
TCK=$(getconf CLK_TCK)
declare -A C Q
port=$BASE_PORT
for round in $(seq "$ROUNDS"); do
	for set in static pool; do
		for v in A B; do
			port=$((port + 1)); zone $port >"$TMP/sy.yaml"
			GOMAXPROCS=1 "${PRIO[@]}" taskset -c 1 "$TMP/$v" dns --config "$TMP/sy.yaml" --log-level warn >"$TMP/$v.log" 2>&1 & PID=$!
			for _ in $(seq 100); do
				dig +short +time=1 +tries=1 -p $port @127.0.0.1 www0.bench.test A 2>/dev/null | grep -q 192.0.2.100 && break
				sleep 0.2
			done
			for _ in $(seq 50); do [ "$(dig +short -p $port @127.0.0.1 app.bench.test A | wc -l)" = 2 ] && break; sleep 0.2; done
			t0=$(awk '{print $14 + $15}' /proc/$PID/stat)
			q=$(taskset -c 0 dnsperf -s 127.0.0.1 -p $port -d "$TMP/$set.txt" -l "$DURATION" -c 2 -q 200 2>&1 | awk '/Queries per second/ {print $4}')
			t1=$(awk '{print $14 + $15}' /proc/$PID/stat)
			kill -INT $PID; wait $PID 2>/dev/null || true; PID=
			us=$(awk -v a="$t0" -v b="$t1" -v q="$q" -v d="$DURATION" -v hz="$TCK" 'BEGIN {printf "%.2f", (b - a) / hz * 1e6 / (q * d)}')
			C[$set.$v]="${C[$set.$v]:-} $us"; Q[$set.$v]="${Q[$set.$v]:-} $q"
			echo "INFO round $round $set $v qps=$q server_cpu_us_per_query=$us"
		done
	done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for set in static pool; do
	a=$(echo "${C[$set.A]}" | median); b=$(echo "${C[$set.B]}" | median)
	echo "RESULT $set cpu_us_per_query A=$a B=$b B/A=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b/a}') qps A=$(echo "${Q[$set.A]}" | median) B=$(echo "${Q[$set.B]}" | median)"
done
