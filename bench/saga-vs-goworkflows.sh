#!/usr/bin/env bash
# Saga throughput of kit/saga vs cschleiden/go-workflows (v1.2.0): 4-step
# sagas completed per second, every transition persisted, same database,
# same concurrency, same number of sagas (bench/peers/goworkflows, a
# nested module). Runs alternate (switchyard, go-workflows) per round; the
# medians and their ratio go to the RESULT lines.
# go-workflows v1.2.0 has no PostgreSQL backend, so on PostgreSQL only
# kit/saga is measured and the RESULT line says so.
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, database test) or
# SAGA_BENCH_POSTGRES. Usage: bash bench/saga-vs-goworkflows.sh [rounds] [sagas] [concurrency]
set -euo pipefail
rounds=${1:-3}
n=${2:-2000}
conc=${3:-32}
pg=${SAGA_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
cd "$(dirname "$0")/peers/goworkflows"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/sagabench" .
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
rate() { sed -n 's/.*sagas_per_s=\([0-9.]*\).*/\1/p'; }
echo "INFO uptime before: $(uptime)"
for r in $(seq "$rounds"); do
	for impl in switchyard goworkflows; do
		out=$("$tmp/sagabench" -impl "$impl" -db sqlite -n "$n" -concurrency "$conc")
		echo "INFO round $r $out"
		echo "$out" | rate >>"$tmp/sqlite-$impl"
	done
done
for r in $(seq "$rounds"); do
	out=$("$tmp/sagabench" -impl switchyard -db postgres -n "$n" -concurrency "$conc" -postgres "$pg")
	echo "INFO round $r $out"
	echo "$out" | rate >>"$tmp/postgres-switchyard"
done
echo "INFO uptime after: $(uptime)"
sy=$(median <"$tmp/sqlite-switchyard")
gw=$(median <"$tmp/sqlite-goworkflows")
echo "RESULT saga_vs_goworkflows sqlite switchyard=$sy goworkflows=$gw ratio=$(awk -v a="$sy" -v b="$gw" 'BEGIN {printf "%.2f", a/b}')"
echo "RESULT saga_vs_goworkflows postgres switchyard=$(median <"$tmp/postgres-switchyard") goworkflows=unavailable ratio=n/a (go-workflows v1.2.0 has no PostgreSQL backend)"
