#!/usr/bin/env bash
# Router vs raw client throughput of kit/message on both backends.
# Each round runs the raw consumer and then the router (A B A B) over
# N messages published beforehand; the medians and their ratio go to
# the RESULT line. Needs NATS with JetStream on 127.0.0.1:4222 (or
# SWITCHYARD_NATS_URL). Usage: bash bench/kit-message.sh [rounds] [messages]
set -euo pipefail
rounds=${1:-5}
n=${2:-20000}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for backend in sybroker jetstream; do
	go test -c -o "$tmp/$backend.test" "./kit/message/$backend/"
	for r in $(seq "$rounds"); do
		for b in RawConsume Router; do
			"$tmp/$backend.test" -test.run '^$' -test.bench "^Benchmark$b\$" -test.benchtime "${n}x" |
				awk -v b="$b" '/msgs\/s/ {for (i = 1; i <= NF; i++) if ($(i+1) == "msgs/s") print $i}' >>"$tmp/$backend-$b"
		done
		echo "INFO round $r $backend raw=$(tail -1 "$tmp/$backend-RawConsume") router=$(tail -1 "$tmp/$backend-Router") msgs/s"
	done
	raw=$(median <"$tmp/$backend-RawConsume")
	router=$(median <"$tmp/$backend-Router")
	echo "RESULT kit_message_$backend raw_msgs_per_s=$raw router_msgs_per_s=$router router_over_raw=$(awk -v a="$router" -v b="$raw" 'BEGIN {printf "%.2f", a/b}')"
done
