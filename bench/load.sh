#!/usr/bin/env bash
# bench/load.sh — how fast can `switchyard load` go from one core while
# keeping open-model timing accurate, compared with wrk's closed-loop peak
# and fortio's constant-QPS mode?
#
# Layout (2-core machine): every load generator runs on CPU 0
# (taskset -c 0, GOMAXPROCS=1 for the Go tools), the backend
# (bench/backend: 1 KiB responses, keep-alive) on CPU 1 with GOMAXPROCS=1,
# so the generator under test has one whole core and never shares it with
# the server. All tools use the same number of keep-alive connections.
#
#   wrk       closed loop, 1 thread: its requests/s is the peak.
#   fortio    `fortio load -qps R -c C`: sustained if its actual QPS is at
#             least 98% of R.
#   switchyard `switchyard load --rate R -c C`: sustained by the same test
#             (throughput at least 98% of R, nothing unsent) and with its
#             timing intact: the send lag (how late requests left against
#             their schedule) at percentile LAG_PCT is at most 1ms. A
#             generator short of CPU falls behind steadily and fails this at
#             once. LAG_PCT defaults to p50 because on a shared machine other
#             processes take the core for milliseconds at a time, which no
#             generator can help (fortio and wrk are delayed the same way,
#             without saying so); on a quiet machine use LAG_PCT=p99. Every
#             run prints the send lag p50/p90/p99 and how many requests were
#             more than 10ms late, with a connection free (cpu) or waiting
#             for one (no connection); their latency always counts from the
#             intended send time.
#
# Both rate searches climb a ladder of fractions of that pair's wrk peak and
# keep the last rate that held; a rate that fails is tried once more before
# the climb stops (same rule for both), because on a shared machine another
# process can take the core for a second. Runs alternate wrk, fortio, switchyard
# (A B C A B C ...) for PAIRS rounds; the result is the median of each and
# the median per-round ratio.
#
# Environment: PAIRS (default 3), DUR seconds per run (4), CONNS (256),
# LAG_PCT (p50),
# PORT (18777), CACHE (/root/.cache/switchyard-bench: fortio 1.66.5 is installed
# there, outside the repo).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PAIRS=${PAIRS:-3}
DUR=${DUR:-4}
CONNS=${CONNS:-256}
PORT=${PORT:-18777}
CACHE=${CACHE:-/root/.cache/switchyard-bench}
LAG_PCT=${LAG_PCT:-p50}
LADDER=${LADDER:-"0.5 0.7 0.8 0.9 1.0 1.1 1.25"}
WORK=$(mktemp -d)
URL="http://127.0.0.1:${PORT}/"
BACKEND_PID=""

cleanup() {
	if [[ -n "$BACKEND_PID" ]]; then kill "$BACKEND_PID" 2>/dev/null || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '%s\n' "$*" >&2; }

# --- peers and builds ------------------------------------------------------
if ! command -v wrk >/dev/null; then
	log "installing wrk with apt-get"
	apt-get install -y wrk >/dev/null
fi
FORTIO="$CACHE/bin/fortio"
if [[ ! -x "$FORTIO" ]]; then
	log "installing fortio into $CACHE/bin"
	mkdir -p "$CACHE/bin"
	# Pinned: fortio@latest (1.75) needs grol.io/grol, which the module proxy
	# reachable here refuses (403); 1.66.5 has the same load engine.
	GOBIN="$CACHE/bin" go install fortio.org/fortio@v1.66.5
fi
(cd "$ROOT" && go build -o "$WORK/switchyard" ./cmd/switchyard && go build -o "$WORK/backend" ./bench/backend)

log "== versions"
log "go:         $(go version)"
log "wrk:        $(wrk --version 2>&1 | head -1 || true)"
log "fortio:     $("$FORTIO" version 2>&1 | head -1)"
log "switchyard: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo uncommitted) (built from the working tree)"
log "cpu:        $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
log "layout:     generators on CPU 0 (GOMAXPROCS=1), backend on CPU 1 (GOMAXPROCS=1), $CONNS connections, ${DUR}s runs, ladder ×wrk: $LADDER, switchyard send lag $LAG_PCT <= 1ms"

GOMAXPROCS=1 taskset -c 1 "$WORK/backend" -addr "127.0.0.1:$PORT" -size 1024 2>/dev/null &
BACKEND_PID=$!
for _ in $(seq 50); do
	curl -fsS -o /dev/null "$URL" 2>/dev/null && break
	sleep 0.1
done

# --- the contenders --------------------------------------------------------
wrk_peak() {
	taskset -c 0 wrk -t1 -c"$CONNS" -d"${DUR}s" "$URL" | awk '/Requests\/sec/ {printf "%d", $2}'
}

# fortio_ok RATE: prints the actual QPS, exit 0 if sustained.
fortio_ok() {
	local rate=$1 out="$WORK/fortio.json"
	/usr/bin/time -f "%U %S" -o "$WORK/time" env GOMAXPROCS=1 taskset -c 0 "$FORTIO" load -quiet -qps "$rate" -c "$CONNS" -t "${DUR}s" \
		-json "$out" "$URL" >/dev/null 2>&1 || true
	python3 - "$out" "$rate" "$WORK/time" "$WORK/cpu.fortio" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
actual, want = d["ActualQPS"], float(sys.argv[2])
u, s = map(float, open(sys.argv[3]).read().split()[-2:])
n = sum(d["RetCodes"].values())
cpu = round((u + s) * 1e6 / max(n, 1), 1)
open(sys.argv[4], "w").write(str(cpu))
print(f"{int(actual)} ({cpu} µs CPU per request)")
sys.exit(0 if actual >= 0.98 * want else 1)
EOF
}

# switchyard_ok RATE: prints throughput and send lag, exit 0 if sustained.
switchyard_ok() {
	local rate=$1 out="$WORK/switchyard.json"
	/usr/bin/time -f "%U %S" -o "$WORK/time" env GOMAXPROCS=1 taskset -c 0 "$WORK/switchyard" load --rate "$rate" -c "$CONNS" --duration "${DUR}s" \
		--json "$out" "$URL" >/dev/null 2>&1 || true
	python3 - "$out" "$rate" "$LAG_PCT" "$WORK/time" "$WORK/cpu.switchyard" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
want, pct, g, lag = float(sys.argv[2]), sys.argv[3], d["generator"], d["send_lag_ms"]
u, s = map(float, open(sys.argv[4]).read().split()[-2:])
cpu = round((u + s) * 1e6 / max(d["requests"], 1), 1)
open(sys.argv[5], "w").write(str(cpu))
ok = d["throughput"] >= 0.98 * want and g["unsent"] == 0 and lag[pct] <= 1.0
print(f'{int(d["throughput"])} ({cpu} µs CPU per request; send lag p50 {lag["p50"]}ms p90 {lag["p90"]}ms p99 {lag["p99"]}ms; '
      f'late >10ms: {g["late_cpu"]} cpu, {g["late_no_connection"]} no connection; '
      f'latency p50 {d["latency_ms"]["p50"]}ms p99 {d["latency_ms"]["p99"]}ms, uncorrected p99 {d["uncorrected_latency_ms"]["p99"]}ms)')
sys.exit(0 if ok else 1)
EOF
}

# climb TOOL PEAK: highest ladder rate TOOL sustains. The CPU per request
# of the first rung (the same rate for both tools) goes to $WORK/first.TOOL.
climb() {
	local tool=$1 peak=$2 best=0 f rate info first=1
	for f in $LADDER; do
		rate=$(python3 -c "print(int($peak*$f))")
		info=$("${tool}_ok" "$rate") && ok=1 || ok=0
		if ((first)); then cp "$WORK/cpu.$tool" "$WORK/first.$tool"; first=0; fi
		if ((ok)); then
			log "  $tool $rate req/s: sustained, $info"
			best=$rate
		else
			log "  $tool $rate req/s: NOT sustained, $info; again:"
			if info=$("${tool}_ok" "$rate"); then
				log "  $tool $rate req/s: sustained, $info"
				best=$rate
			else
				log "  $tool $rate req/s: NOT sustained, $info"
				break
			fi
		fi
	done
	echo "$best"
}

WRK=() FORTIO_R=() SY=() RATIO=() CPU_F=() CPU_S=()
for i in $(seq "$PAIRS"); do
	log "== round $i"
	peak=$(wrk_peak)
	log "  wrk peak: $peak req/s"
	f=$(climb fortio "$peak")
	s=$(climb switchyard "$peak")
	log "  round $i: wrk=$peak fortio=$f switchyard=$s"
	WRK+=("$peak") FORTIO_R+=("$f") SY+=("$s")
	RATIO+=("$(python3 -c "print(round($s/$peak, 3))")")
	CPU_F+=("$(cat "$WORK/first.fortio")") CPU_S+=("$(cat "$WORK/first.switchyard")")
	log "  CPU per request at $(python3 -c "print(int($peak*${LADDER%% *}))") req/s: fortio ${CPU_F[-1]} µs, switchyard ${CPU_S[-1]} µs"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
log "== all rounds: wrk=${WRK[*]} fortio=${FORTIO_R[*]} switchyard=${SY[*]} ratio=${RATIO[*]}"
log "== CPU µs per request at the first rung: fortio=${CPU_F[*]} switchyard=${CPU_S[*]}"
echo "INFO load_cpu_us_per_request switchyard=$(median "${CPU_S[@]}") fortio=$(median "${CPU_F[@]}")"
echo "RESULT load_max_rate switchyard=$(median "${SY[@]}") wrk=$(median "${WRK[@]}") fortio=$(median "${FORTIO_R[@]}") ratio_vs_wrk=$(median "${RATIO[@]}")"
