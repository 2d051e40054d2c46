#!/usr/bin/env bash
# Router vs raw client throughput of kit/message on both backends.
# Each round runs the raw consumer, on JetStream also the raw consumer
# with 16 handler goroutines (the router's like-for-like baseline), the
# router with 16 handlers and the router with Concurrency 1 (handler on
# the subscription's goroutine, as the raw consumer's) in turn over
# N messages published beforehand; the medians and their ratio go to
# the RESULT line, with the process CPU time per message (less noisy on a
# shared machine; for sybroker it includes the in-process broker). Needs NATS with JetStream on 127.0.0.1:4222 (or
# SWITCHYARD_NATS_URL). Usage: bash bench/kit-message.sh [rounds] [messages]
set -euo pipefail
rounds=${1:-5}
n=${2:-200000} # 20,000 lasted 0.1-0.3 s per run: too short to measure
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for backend in sybroker jetstream; do
	go test -c -o "$tmp/$backend.test" "./kit/message/$backend/"
	for r in $(seq "$rounds"); do
		for b in RawConsume RawConsume16 Router RouterConc1; do
			# RawConsume16 (the raw client with 16 handler goroutines,
			# the router's like-for-like baseline) exists for jetstream
			# only: sybroker's Consume acks as its handler returns.
			[ "$b" = RawConsume16 ] && [ "$backend" != jetstream ] && continue
			"$tmp/$backend.test" -test.run '^$' -test.bench "^Benchmark$b\$" -test.benchtime "${n}x" >"$tmp/out"
			awk '/msgs\/s/ {for (i = 1; i <= NF; i++) if ($(i+1) == "msgs/s") print $i}' "$tmp/out" >>"$tmp/$backend-$b"
			awk '/cpu-ns/ {for (i = 1; i <= NF; i++) if ($(i+1) == "cpu-ns/msg") print $i}' "$tmp/out" >>"$tmp/$backend-$b-cpu"
		done
		raw16=
		[ -s "$tmp/$backend-RawConsume16" ] && raw16=" raw16=$(tail -1 "$tmp/$backend-RawConsume16")"
		raw16cpu=
		[ -s "$tmp/$backend-RawConsume16-cpu" ] && raw16cpu=" raw16=$(tail -1 "$tmp/$backend-RawConsume16-cpu")"
		echo "INFO round $r $backend msgs/s raw=$(tail -1 "$tmp/$backend-RawConsume")$raw16 router=$(tail -1 "$tmp/$backend-Router") router1=$(tail -1 "$tmp/$backend-RouterConc1")" \
			"cpu-ns/msg raw=$(tail -1 "$tmp/$backend-RawConsume-cpu")$raw16cpu router=$(tail -1 "$tmp/$backend-Router-cpu") router1=$(tail -1 "$tmp/$backend-RouterConc1-cpu")"
	done
	raw=$(median <"$tmp/$backend-RawConsume")
	router=$(median <"$tmp/$backend-Router")
	rawcpu=$(median <"$tmp/$backend-RawConsume-cpu")
	routercpu=$(median <"$tmp/$backend-Router-cpu")
	router1cpu=$(median <"$tmp/$backend-RouterConc1-cpu")
	router1=$(median <"$tmp/$backend-RouterConc1")
	vs16=
	if [ -s "$tmp/$backend-RawConsume16" ]; then
		raw16=$(median <"$tmp/$backend-RawConsume16")
		raw16cpu=$(median <"$tmp/$backend-RawConsume16-cpu")
		vs16=" raw16_msgs_per_s=$raw16 router_over_raw16=$(awk -v a="$router" -v b="$raw16" 'BEGIN {printf "%.2f", a/b}') raw16_cpu_ns_per_msg=$raw16cpu router_cpu_added_vs_raw16=$(awk -v a="$routercpu" -v b="$raw16cpu" 'BEGIN {printf "%+.0f%%", (a/b-1)*100}')"
	fi
	echo "RESULT kit_message_$backend raw_msgs_per_s=$raw router_msgs_per_s=$router router_over_raw=$(awk -v a="$router" -v b="$raw" 'BEGIN {printf "%.2f", a/b}')" \
		"router1_msgs_per_s=$router1 router1_over_raw=$(awk -v a="$router1" -v b="$raw" 'BEGIN {printf "%.2f", a/b}')" \
		"raw_cpu_ns_per_msg=$rawcpu router_cpu_ns_per_msg=$routercpu router1_cpu_ns_per_msg=$router1cpu" \
		"router_cpu_added=$(awk -v a="$routercpu" -v b="$rawcpu" 'BEGIN {printf "%+.0f%%", (a/b-1)*100}')" \
		"router1_cpu_added=$(awk -v a="$router1cpu" -v b="$rawcpu" 'BEGIN {printf "%+.0f%%", (a/b-1)*100}')$vs16"
done
