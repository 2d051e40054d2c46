#!/usr/bin/env bash
# switchyard's transactional outbox (kit/outbox) vs Watermill's SQL
# forwarder (watermill-sql + components/forwarder) on the same PostgreSQL
# (synchronous_commit on), publishing to the same in-process switchyard
# broker with a durability confirm per publish. The program is the nested
# module bench/peers/watermill (the main module does not depend on
# Watermill); see its package doc for what each mode measures.
#
# Runs alternate (switchyard, watermill) pairs: first throughput (producers
# and relay together), then drain (backlog committed first, relay alone), then
# commit-to-confirm latency at an open-loop arrival rate of half of
# switchyard's median throughput (and, for context, Watermill at half of
# its own), then switchyard alone on SQLite. Medians and ratios go to the
# RESULT line.
#
# Usage: bash bench/outbox-vs-watermill.sh [pairs] [messages]
# Env: SWITCHYARD_PG_URL (default postgres://postgres@127.0.0.1:5432/test?sslmode=disable),
#      EXTRA (more flags for every run, e.g. "-per-tx 1 -producers 8").
set -euo pipefail
pairs=${1:-3}
n=${2:-20000}
pg=${SWITCHYARD_PG_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
extra=${EXTRA:-}
cd "$(dirname "$0")/peers/watermill"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/bench" .
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
field() { awk -v k="$1" '/^RESULT/ {for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) print substr($i, length(k) + 2)}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
one() { # system mode db [flags...]
	local sys=$1 mode=$2 db=$3
	shift 3
	# shellcheck disable=SC2086
	"$tmp/bench" -system "$sys" -mode "$mode" -db "$db" -messages "$n" $extra "$@" | tee -a "$tmp/all" | grep '^RESULT'
}
echo "INFO uptime before: $(uptime)"
for r in $(seq "$pairs"); do
	for sys in switchyard watermill; do
		one "$sys" throughput "$pg" | tee -a /dev/stderr | field msgs_per_s >>"$tmp/tp-$sys"
	done
done
for r in $(seq "$pairs"); do
	for sys in switchyard watermill; do
		one "$sys" drain "$pg" | tee -a /dev/stderr | field msgs_per_s >>"$tmp/dr-$sys"
	done
done
dr_sy=$(median <"$tmp/dr-switchyard")
dr_wm=$(median <"$tmp/dr-watermill")
tp_sy=$(median <"$tmp/tp-switchyard")
tp_wm=$(median <"$tmp/tp-watermill")
half=$(awk -v t="$tp_sy" 'BEGIN {printf "%d", t/2}')
half_wm=$(awk -v t="$tp_wm" 'BEGIN {printf "%d", t/2}')
echo "INFO latency at $half msgs/s (half of switchyard's median throughput)"
for r in $(seq "$pairs"); do
	for sys in switchyard watermill; do
		one "$sys" latency "$pg" -rate "$half" | tee -a /dev/stderr >"$tmp/out"
		field p50_ms <"$tmp/out" >>"$tmp/p50-$sys"
		field p99_ms <"$tmp/out" >>"$tmp/p99-$sys"
		field p999_ms <"$tmp/out" >>"$tmp/p999-$sys"
	done
	one watermill latency "$pg" -rate "$half_wm" | tee -a /dev/stderr | field p99_ms >>"$tmp/p99-wm-own"
done
echo "INFO switchyard on SQLite (Watermill's SQL Pub/Sub has no SQLite support)"
for r in $(seq "$pairs"); do
	one switchyard throughput sqlite | tee -a /dev/stderr | field msgs_per_s >>"$tmp/tp-sqlite"
done
tp_lite=$(median <"$tmp/tp-sqlite")
half_lite=$(awk -v t="$tp_lite" 'BEGIN {printf "%d", t/2}')
for r in $(seq "$pairs"); do
	one switchyard latency sqlite -rate "$half_lite" | tee -a /dev/stderr | field p99_ms >>"$tmp/p99-sqlite"
done
echo "INFO uptime after: $(uptime)"
echo "RESULT outbox_vs_watermill db=postgres pairs=$pairs messages=$n" \
	"throughput switchyard=$tp_sy watermill=$tp_wm ratio=$(ratio "$tp_sy" "$tp_wm")" \
	"drain switchyard=$dr_sy watermill=$dr_wm drain_ratio=$(ratio "$dr_sy" "$dr_wm")" \
	"at_rate=$half p50_ms switchyard=$(median <"$tmp/p50-switchyard") watermill=$(median <"$tmp/p50-watermill")" \
	"p99_ms_at_half_load switchyard=$(median <"$tmp/p99-switchyard") watermill=$(median <"$tmp/p99-watermill")" \
	"p999_ms switchyard=$(median <"$tmp/p999-switchyard") watermill=$(median <"$tmp/p999-watermill")" \
	"watermill_p99_ms_at_half_own_load($half_wm)=$(median <"$tmp/p99-wm-own")"
echo "RESULT outbox_sqlite switchyard throughput=$tp_lite p99_ms_at_half_load($half_lite)=$(median <"$tmp/p99-sqlite")"
