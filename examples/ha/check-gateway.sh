#!/bin/sh
# check-gateway.sh: keepalived's health check for a switchyard gateway.
#
# Usage: check-gateway.sh [ADMIN_URL [LISTEN_URL]]
#   ADMIN_URL   the gateway's admin API (default http://127.0.0.1:9901);
#               GET ADMIN_URL/healthz must answer 200 within 1 s.
#   LISTEN_URL  optional: the traffic listener (e.g. http://127.0.0.1:8080/);
#               it must answer HTTP at all (any status: a 404 or 502 still
#               means the process accepts and serves connections).
#
# Exit 0 = healthy; anything else makes keepalived count a failure (after
# `fall` failures in a row the node gives up the virtual address).
admin="${1:-http://127.0.0.1:9901}"
curl -fsS --max-time 1 -o /dev/null "$admin/healthz" || exit 1
if [ -n "$2" ]; then
	code=$(curl -sS --max-time 1 -o /dev/null -w '%{http_code}' "$2") || exit 2
	[ "$code" != 000 ] || exit 2
fi
exit 0
