#!/usr/bin/env bash
# bench/gateway-ab.sh: two builds of the switchyard gateway, A and B,
# alternated under the same closed-loop load (wrk -t1 -c$CONNS), to tell a
# regression from machine noise. Same layout as bench/gateway.sh: the two
# 1 KiB backends and wrk on CPU 0, the gateway (GOMAXPROCS=1) on CPU 1.
# Prints per-round rps and the gateway's CPU µs per request (utime+stime
# from /proc), then medians and B/A ratios, and a RESULT line.
#
# Usage: bench/gateway-ab.sh A_REPO B_REPO   (two checkouts, e.g. a git
# worktree at the old commit and this one; the same checkout twice to
# compare two configurations). Environment: ROUNDS (6), DURATION (8 s),
# WARMUP (2 s), CONNS (64), BASE_PORT (18280), A_YAML and B_YAML (lines
# added to side A's or B's config, e.g. A_YAML='tracing: {disabled: true}'
# to measure what tracing costs).
set -euo pipefail
A=${1:?usage: $0 A_REPO B_REPO}; B=${2:?usage: $0 A_REPO B_REPO}
ROUNDS=${ROUNDS:-6}; DURATION=${DURATION:-8}; WARMUP=${WARMUP:-2}; CONNS=${CONNS:-64}
P=${BASE_PORT:-18280}
TMP=$(mktemp -d /tmp/switchyard-ab.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 2; }
for side in A B; do
	repo=${!side}
	(cd "$repo" && go build -o "$TMP/sy-$side" ./cmd/switchyard)
done
(cd "$B" && go build -o "$TMP/backend" ./bench/backend)
taskset -c 0 env GOMAXPROCS=1 "$TMP/backend" -addr "127.0.0.1:$((P+1))" -size 1024 >/dev/null 2>&1 & pids+=($!)
taskset -c 0 env GOMAXPROCS=1 "$TMP/backend" -addr "127.0.0.1:$((P+2))" -size 1024 >/dev/null 2>&1 & pids+=($!)
cat >"$TMP/gw.yaml" <<YAML
listen: 127.0.0.1:$P
access_log: off
upstreams:
  backends:
    balance: round_robin
    targets:
      - { address: 127.0.0.1:$((P+1)) }
      - { address: 127.0.0.1:$((P+2)) }
routes:
  - name: all
    upstream: backends
YAML
printf '%s\n' "${A_YAML:-}" | cat "$TMP/gw.yaml" - >"$TMP/gw-A.yaml"
printf '%s\n' "${B_YAML:-}" | cat "$TMP/gw.yaml" - >"$TMP/gw-B.yaml"
cputicks() { awk '{print $14+$15}' "/proc/$1/stat"; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
hz=$(getconf CLK_TCK)
declare -A RPS US
for r in $(seq "$ROUNDS"); do
	order="A B"; [ $((r % 2)) -eq 0 ] && order="B A"
	for side in $order; do
		taskset -c 1 env GOMAXPROCS=1 "$TMP/sy-$side" gateway --config "$TMP/gw-$side.yaml" >"$TMP/gw-$side.log" 2>&1 &
		gw=$!
		wait_port "$P"
		taskset -c 0 wrk -t1 -c"$CONNS" -d"${WARMUP}s" "http://127.0.0.1:$P/" >/dev/null
		t0=$(cputicks "$gw")
		out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$P/")
		t1=$(cputicks "$gw")
		kill "$gw"; wait "$gw" 2>/dev/null || true
		reqs=$(awk '/requests in/ {print $1}' <<<"$out")
		rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
		us=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
		RPS[$side]+="$rps "; US[$side]+="$us "
		printf 'round %d  %s  %8.0f rps  %6s us/req\n' "$r" "$side" "$rps" "$us"
	done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ra=$(median <<<"${RPS[A]}"); rb=$(median <<<"${RPS[B]}")
ua=$(median <<<"${US[A]}"); ub=$(median <<<"${US[B]}")
printf 'median  A %.0f rps %s us/req | B %.0f rps %s us/req\n' "$ra" "$ua" "$rb" "$ub"
awk -v ra="$ra" -v rb="$rb" -v ua="$ua" -v ub="$ub" 'BEGIN {printf "RESULT gateway_ab rps_a=%.0f rps_b=%.0f rps_b_over_a=%.2f us_a=%s us_b=%s us_b_over_a=%.2f\n", ra, rb, rb/ra, ua, ub, ub/ua}'
