#!/usr/bin/env bash
# API gateway overhead: switchyard as a plain round-robin proxy versus the
# same route with JWT authentication (HS256) and two rate limits (per
# consumer and per IP, set high enough never to refuse, so every request
# does the full check). Pinned as ../shared/BENCHMARKING.md says: wrk and
# the backends on CPU 0, the gateway on CPU 1 with GOMAXPROCS=1. Rounds
# alternate plain / featured; the result is the median ratio.
#
#   bash bench/apigw.sh            # ROUNDS=3 DURATION=8 CONNS=64
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CONNS=${CONNS:-64}
BASE_PORT=${BASE_PORT:-18281}
TMP=$(mktemp -d /tmp/switchyard-bench-apigw-XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl; }

echo "== versions"
go version
wrk --version 2>&1 | head -1 || true
echo "switchyard: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

go build -o "$TMP/switchyard" ./cmd/switchyard
go build -o "$TMP/backend" ./bench/backend

B1=$BASE_PORT; B2=$((BASE_PORT + 1)); PLAIN=$((BASE_PORT + 2)); FEAT=$((BASE_PORT + 3))
for p in $B1 $B2; do
  taskset -c 0 env GOMAXPROCS=1 "$TMP/backend" -addr "127.0.0.1:$p" -size 1024 >/dev/null 2>&1 &
  PIDS+=($!)
done

SECRET="bench-secret-0123456789-0123456789-abcdef"
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
HDR=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
EXP=$(( $(date +%s) + 86400 ))
PAY=$(printf '{"iss":"bench","aud":"rides","sub":"alice","scope":"rides:read","exp":%d}' "$EXP" | b64url)
SIG=$(printf '%s.%s' "$HDR" "$PAY" | openssl dgst -sha256 -hmac "$SECRET" -binary | b64url)
TOKEN="$HDR.$PAY.$SIG"

common() {
  cat <<YAML
listen: 127.0.0.1:$1
access_log: off
upstreams:
  backends:
    balance: round_robin
    targets:
      - { address: 127.0.0.1:$B1 }
      - { address: 127.0.0.1:$B2 }
YAML
}
{ common $PLAIN; printf 'routes:\n  - { name: all, upstream: backends }\n'; } > "$TMP/plain.yaml"
{ common $FEAT; cat <<YAML
auth:
  jwt: { issuer: bench, audience: [rides], algorithms: [HS256], secret: "$SECRET" }
  consumers:
    - { name: alice, tier: premium }
routes:
  - name: all
    upstream: backends
    auth: [jwt]
    require: { scopes: [rides:read] }
    rate_limit:
      limits:
        - { key: consumer, rate: 1000000/s, burst: 1000000 }
        - { key: ip, rate: 1000000/s, burst: 1000000 }
YAML
} > "$TMP/featured.yaml"

for name in plain featured; do
  taskset -c 1 env GOMAXPROCS=1 "$TMP/switchyard" gateway --config "$TMP/$name.yaml" >"$TMP/$name.log" 2>&1 &
  PIDS+=($!)
done
sleep 1
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$FEAT/")
[ "$code" = 200 ] || { echo "featured gateway answered $code to the benchmark token"; cat "$TMP/featured.log"; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$FEAT/")
[ "$code" = 401 ] || { echo "featured gateway answered $code without a token (want 401)"; exit 1; }

run() { # port [header]
  local args=(-t1 -c"$CONNS" -d"${DURATION}s")
  [ $# -gt 1 ] && args+=(-H "$2")
  taskset -c 0 wrk "${args[@]}" -d2s "http://127.0.0.1:$1/" >/dev/null
  taskset -c 0 wrk "${args[@]}" "http://127.0.0.1:$1/" | tee -a "$TMP/wrk.txt" | awk '/Requests\/sec/{print int($2)} /Non-2xx/{print "NON2XX " $0 > "/dev/stderr"}'
}

echo "== $ROUNDS rounds, plain then featured (JWT HS256 + require scope + 2 rate limits), wrk -t1 -c$CONNS -d${DURATION}s"
ratios=(); plains=(); feats=()
for r in $(seq "$ROUNDS"); do
  p=$(run $PLAIN)
  f=$(run $FEAT "Authorization: Bearer $TOKEN")
  ratio=$(awk -v f="$f" -v p="$p" 'BEGIN{printf "%.3f", f/p}')
  echo "  round $r: plain=$p featured=$f ratio=$ratio"
  ratios+=("$ratio"); plains+=("$p"); feats+=("$f")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
mp=$(median "${plains[@]}"); mf=$(median "${feats[@]}"); mr=$(median "${ratios[@]}")
loss=$(awk -v r="$mr" 'BEGIN{printf "%.1f", (1-r)*100}')
echo "raw output: $TMP"
echo "RESULT apigw_rps plain=$mp featured=$mf ratio=$mr loss_pct=$loss"
