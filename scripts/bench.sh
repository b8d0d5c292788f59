#!/usr/bin/env bash
# Runs Hookline (release build, every service in one process) against the
# machine's Postgres, RabbitMQ and Redis in a scratch database and vhost,
# then drives it with `hookline bench`. Results land in bench-results/.
#
#   scripts/bench.sh                 # the standard scenarios
#   scripts/bench.sh --events 5000   # extra arguments go to every scenario
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hookline/target}"
cargo build --release -q -p hookline
if ! command -v wrk >/dev/null; then
  echo "bench: wrk is not installed, so the reports will not show the built-in receiver's ceiling" >&2
  echo "bench: install it first (Debian and Ubuntu: apt-get install wrk)" >&2
fi
BIN="$CARGO_TARGET_DIR/release/hookline"

VHOST="hookline-bench"
curl -fsS -u guest:guest -X PUT "http://127.0.0.1:15672/api/vhosts/$VHOST" >/dev/null
curl -fsS -u guest:guest -X PUT -H 'content-type: application/json' \
  -d '{"configure":".*","write":".*","read":".*"}' "http://127.0.0.1:15672/api/permissions/$VHOST/guest" >/dev/null
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS hookline_bench WITH (FORCE)" >/dev/null

export HOOKLINE_DATABASE_URL="postgres://postgres@127.0.0.1:5432/hookline_bench"
export HOOKLINE_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$VHOST"
export HOOKLINE_REDIS_PREFIX="hookline-bench:"
export HOOKLINE_OPERATOR_TOKEN="bench-operator-token-0123456789"
export HOOKLINE_MASTER_KEY="$(head -c 32 /dev/urandom | base64)"
export HOOKLINE_ALLOW_PRIVATE_TARGETS=true
export HOOKLINE_LISTEN="127.0.0.1:${BENCH_PORT:-8900}"
export HOOKLINE_LOG_FORMAT=json RUST_LOG="${RUST_LOG:-warn}"
URL="http://$HOOKLINE_LISTEN"

"$BIN" migrate >/dev/null
"$BIN" run all >/tmp/hookline-bench.log 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fs "$URL/ready" >/dev/null && break; sleep 0.2; done

run() { "$BIN" bench --url "$URL" "$@"; }
if [ "$#" -gt 0 ] && [ "$1" = "--only" ]; then shift; run "$@"; exit; fi
run --scenario saturate-1-endpoint --events 20000 --concurrency 32 --endpoints 1 "$@"
run --scenario saturate-10-endpoints --events 5000 --concurrency 32 --endpoints 10 "$@"
# The calm run the retry storm is compared with: same rate, same endpoint.
run --scenario fixed-400-per-second --events 12000 --rate 400 --endpoints 1 "$@"
run --scenario retry-storm --events 12000 --rate 400 --endpoints 1 --fail-rate 0.3 "$@"
# The calm run the hanging endpoint is compared with: the same nine, nothing hanging.
run --scenario calm-nine-endpoints --events 6000 --rate 100 --endpoints 9 "$@"
run --scenario one-hanging-of-ten --events 6000 --rate 100 --endpoints 9 --hanging 1 "$@"
