#!/usr/bin/env bash
# bench/dns.sh: `switchyard dns` against Knot DNS and BIND serving the same
# zone, measured with dnsperf. Rules: /work/shared/BENCHMARKING.md.
# CPU 1: the server (switchyard GOMAXPROCS=1; knotd with one UDP and one
# TCP worker; named -n 1); CPU 0: dnsperf. UDP, no EDNS, 2 clients, up to
# 200 queries in flight, DURATION seconds per run, ROUNDS rounds
# alternated between servers, median per server and query set:
#   static: A queries for 100 static names (www0..www99, one address each)
#   pool:   A queries for a load-balanced name. switchyard answers it from a
#           pool (health-checked sites, region table, smooth weighted round
#           robin, 2 sites per answer); Knot and BIND answer the same name
#           from two static A records (they have no health/geo steering), so
#           this is the price of steering against the peers' static answer.
# Each run also reads the server's CPU time from /proc: when dnsperf's
# core saturates first, queries/s shows the client's ceiling and CPU µs
# per query is the comparison that still holds.
# Environment: ROUNDS (3), DURATION (5), BASE_PORT (19400), SERVERS (the
# contenders to start and measure, default "switchyard knot bind"; e.g.
# SERVERS=switchyard while iterating on one server's CPU per query).
# Installs dnsperf, knot and bind9 with apt when missing. Ends with RESULT
# lines.
set -euo pipefail
ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-5}; BASE_PORT=${BASE_PORT:-19400}
SERVERS=${SERVERS:-switchyard knot bind}
for srv in $SERVERS; do
	case $srv in switchyard | knot | bind) ;; *) echo "SERVERS: unknown server $srv (switchyard, knot, bind)" >&2; exit 2 ;; esac
done
has() { [[ " $SERVERS " == *" $1 "* ]]; }
REPO=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d /tmp/switchyard-dns.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

if ! command -v dnsperf >/dev/null || ! command -v knotd >/dev/null || ! command -v named >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q dnsperf knot bind9 >/dev/null
fi
KNOTD=$(command -v knotd || echo /usr/sbin/knotd); NAMED=$(command -v named || echo /usr/sbin/named)
SY=$BASE_PORT; KN=$((BASE_PORT+1)); BI=$((BASE_PORT+2))
(cd "$REPO" && go build -o "$TMP/switchyard" ./cmd/switchyard)

# The zone, as Knot and BIND read it.
{
	echo '$ORIGIN bench.test.'
	echo '$TTL 3600'
	echo '@ IN SOA ns1 hostmaster 2026120501 3600 600 86400 60'
	echo '@ IN NS ns1'
	echo 'ns1 IN A 192.0.2.53'
	for i in $(seq 0 99); do echo "www$i IN A 192.0.2.$((i + 100))"; done
	echo 'app 20 IN A 198.51.100.10'
	echo 'app 20 IN A 198.51.100.11'
} >"$TMP/bench.test.zone"

# The same zone for switchyard: static records as written, app as a pool of
# two sites health-checked over TCP (the server's own port), with a region
# table that matches the client (loopback) and weights.
{
	cat <<YAML
listen: 127.0.0.1:$SY
ttl: 20s
health: { interval: 2s, timeout: 1s }
regions:
  local: [127.0.0.0/8]
  elsewhere: [10.0.0.0/8]
sites:
  - {name: s1, addresses: [198.51.100.10], check: "127.0.0.1:$SY", weight: 2}
  - {name: s2, addresses: [198.51.100.11], check: "127.0.0.1:$SY", weight: 1}
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
      - name: app
        sites: [s1, s2]
        policy: weighted
        answers: 2
        geo:
          local: [s1, s2]
          elsewhere: [s2]
YAML
} >"$TMP/sy.yaml"
"$TMP/switchyard" dns --check --config "$TMP/sy.yaml" >/dev/null

cat >"$TMP/knot.conf" <<CFG
server:
    listen: 127.0.0.1@$KN
    rundir: $TMP/knot
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: warning
database:
    storage: $TMP/knot
zone:
  - domain: bench.test.
    file: $TMP/bench.test.zone
    journal-content: none
CFG
mkdir -p "$TMP/knot"

cat >"$TMP/named.conf" <<CFG
options {
    directory "$TMP/bind";
    listen-on port $BI { 127.0.0.1; };
    listen-on-v6 { none; };
    pid-file "$TMP/bind/named.pid";
    recursion no;
    allow-query { any; };
    querylog no;
    minimal-responses yes;
};
controls { };
zone "bench.test." { type primary; file "$TMP/bench.test.zone"; };
CFG
mkdir -p "$TMP/bind"

declare -A PID PORT=([switchyard]=$SY [knot]=$KN [bind]=$BI)
if has switchyard; then
	GOMAXPROCS=1 taskset -c 1 "$TMP/switchyard" dns --config "$TMP/sy.yaml" --log-level warn >"$TMP/sy.log" 2>&1 & PIDS+=($!)
	PID[switchyard]=$!
fi
if has knot; then
	taskset -c 1 "$KNOTD" -c "$TMP/knot.conf" >"$TMP/knot.log" 2>&1 & PIDS+=($!)
	PID[knot]=$!
fi
if has bind; then
	taskset -c 1 "$NAMED" -g -n 1 -U 1 -c "$TMP/named.conf" >"$TMP/named.log" 2>&1 & PIDS+=($!)
	PID[bind]=$!
fi

want=$(echo $SERVERS | wc -w)
for _ in $(seq 100); do
	ok=0
	for srv in $SERVERS; do
		if dig +short +time=1 +tries=1 -p "${PORT[$srv]}" @127.0.0.1 www0.bench.test A 2>/dev/null | grep -q 192.0.2.100; then ok=$((ok + 1)); fi
	done
	[ "$ok" = "$want" ] && break
	sleep 0.2
done
[ "$ok" = "$want" ] || { echo "a server did not answer: see logs" >&2; tail -5 "$TMP"/*.log >&2; exit 1; }
# switchyard's pool must answer both sites once its checks passed.
for _ in $(seq 50); do
	has switchyard || break
	[ "$(dig +short -p $SY @127.0.0.1 app.bench.test A | wc -l)" = 2 ] && break
	sleep 0.2
done
echo "versions: $("$KNOTD" -V 2>&1 | head -1); $("$NAMED" -v); $(dnsperf -h 2>&1 | grep -m1 -i version || dnsperf 2>&1 | grep -m1 DNS); $(go version)"

for i in $(seq 0 99); do echo "www$i.bench.test A"; done >"$TMP/static.txt"
echo "app.bench.test A" >"$TMP/pool.txt"

run() { # port queryfile -> qps
	taskset -c 0 dnsperf -s 127.0.0.1 -p "$1" -d "$2" -l "$DURATION" -c 2 -q 200 2>&1 |
		awk '/Queries per second/ {q=$4} /Response codes/ {rc=$0} END {print q; if (rc !~ /NOERROR [0-9]+ \(100/) print "WARN " rc > "/dev/stderr"}'
}

# cputicks PID: the server's user+system CPU so far, in clock ticks.
# When dnsperf (one core) saturates before a server does, queries/s only
# shows the client's ceiling; the server's CPU per query still compares.
cputicks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
declare -A R C
for round in $(seq "$ROUNDS"); do
	for set in static pool; do
		for srv in $SERVERS; do
			p=${PORT[$srv]}
			t0=$(cputicks "${PID[$srv]}")
			q=$(run "$p" "$TMP/$set.txt")
			t1=$(cputicks "${PID[$srv]}")
			us=$(awk -v a="$t0" -v b="$t1" -v q="$q" -v d="$DURATION" -v hz="$TCK" 'BEGIN {printf "%.2f", (b - a) / hz * 1e6 / (q * d)}')
			R[$set.$srv]="${R[$set.$srv]:-} $q"
			C[$set.$srv]="${C[$set.$srv]:-} $us"
			echo "INFO round $round $set $srv qps=$q server_cpu_us_per_query=$us"
		done
	done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for set in static pool; do
	line="RESULT $set"; cpu="cpu_us_per_query"
	for srv in $SERVERS; do
		line+=" $srv=$(echo "${R[$set.$srv]}" | median)"
		cpu+=" $srv=$(echo "${C[$set.$srv]}" | median)"
	done
	if has switchyard && { has knot || has bind; }; then
		best=$(for srv in knot bind; do if has $srv; then echo "${R[$set.$srv]}" | median; fi; done | sort -g | tail -1)
		line+=" switchyard/best_peer=$(awk -v a="$(echo "${R[$set.switchyard]}" | median)" -v b="$best" 'BEGIN {printf "%.2f", a/b}')"
	fi
	echo "$line $cpu"
done
