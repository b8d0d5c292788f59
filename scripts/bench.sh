#!/usr/bin/env bash
# Runs Hookline (release build, every service in one process) against the
# machine's Postgres, RabbitMQ and Redis in a scratch database and vhost,
# then drives it with `hookline bench`. Results land in bench-results/.
#
#   scripts/bench.sh                 # the standard scenarios
#   scripts/bench.sh --events 5000   # extra arguments go to every scenario
#   scripts/bench.sh --pairs 5       # the two comparisons only, five times over
#   scripts/bench.sh --pair ordering # ordered against unordered delivery, on one fresh stack
#   HOOKLINE_BIN=/path/to/hookline scripts/bench.sh ...   # that build, not a fresh one
#                                    # (to set two builds side by side on one machine)
#
# The retry storm and the hanging endpoint are judged against a calm run of
# the same shape. One run of each says little on a machine whose speed
# drifts, so `--pairs N` runs each comparison N times: a fresh stack, two
# seconds of the calm load to warm it (connections, caches, plans; not
# reported), the calm run, then the loaded one. It writes every pair's ratio
# and their median to bench-results/<time>-pairs.md.
set -euo pipefail
self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.."

CALM_400=(--scenario fixed-400-per-second --events 12000 --rate 400 --endpoints 1)
STORM=(--scenario retry-storm --events 12000 --rate 400 --endpoints 1 --fail-rate 0.3)
CALM_NINE=(--scenario calm-nine-endpoints --events 6000 --rate 100 --endpoints 9)
HANGING=(--scenario one-hanging-of-ten --events 6000 --rate 100 --endpoints 9 --hanging 1)
# Ordered delivery against unordered, over the same 50 leads (target: at least half the rate).
UNORDERED=(--scenario unordered-50-keys --events 10000 --concurrency 32 --endpoints 1 --keys 50)
ORDERED=(--scenario ordered-50-keys --events 10000 --concurrency 32 --endpoints 1 --keys 50 --ordered)
# The newest JSON report of a scenario.
latest() { ls -t bench-results/*-"$1".json | head -n1; }

if [ "$#" -gt 0 ] && [ "$1" = "--pairs" ]; then
  pairs="${2:?--pairs needs a count}"
  shift 2
  summary="bench-results/$(date -u +%Y%m%dT%H%M%SZ)-pairs.md"
  mkdir -p bench-results
  {
    echo "# Calm and loaded runs, $pairs pairs, each pair on a fresh stack warmed for 2 s"
    echo
    echo "| pair | retry storm: first-attempt p99 against fixed 400/s | one of ten hanging: healthy p99 against the calm nine |"
    echo "|---|---|---|"
  } >"$summary"
  ratios_storm=() ratios_hanging=()
  for i in $(seq 1 "$pairs"); do
    storm=$("$self" --pair storm "$@" | tee -a /dev/stderr | sed -n 's/^  first-attempt p99 //p')
    hanging=$("$self" --pair hanging "$@" | tee -a /dev/stderr | sed -n 's/^  first-attempt p99 //p')
    echo "| $i | $storm | $hanging |" >>"$summary"
    ratios_storm+=("${storm##*, }") ratios_hanging+=("${hanging##*, }")
  done
  median() { printf '%s\n' "$@" | tr -d '×' | sort -n | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2) "×"}'; }
  within() { printf '%s\n' "$@" | tr -d '×' | awk '$1 <= 1.5 {n++} END {print n+0}'; }
  {
    echo "| median | $(median "${ratios_storm[@]}") | $(median "${ratios_hanging[@]}") |"
    echo
    echo "Within 1.5× of the calm run: retry storm $(within "${ratios_storm[@]}") of $pairs, hanging endpoint $(within "${ratios_hanging[@]}") of $pairs."
  } >>"$summary"
  cat "$summary"
  exit
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
if [ -n "${HOOKLINE_BIN:-}" ]; then
  BIN="$HOOKLINE_BIN"
else
  cargo build --release -q -p hookline
  BIN="$CARGO_TARGET_DIR/release/hookline"
fi
if ! command -v wrk >/dev/null; then
  echo "bench: wrk is not installed, so the reports will not show the built-in receiver's ceiling" >&2
  echo "bench: install it first (Debian and Ubuntu: apt-get install wrk)" >&2
fi

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
export HOOKLINE_DEFAULT_RATE_LIMIT_PER_HOUR=10000000
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
if [ "$#" -gt 0 ] && [ "$1" = "--pair" ] && [ "${2:-}" = ordering ]; then
  shift 2
  warm=$(mktemp -d)
  run "${UNORDERED[@]}" --scenario warm-up --events 2000 --out "$warm" --skip-receiver-ceiling >/dev/null 2>&1
  rm -rf "$warm"
  run "${UNORDERED[@]}" --skip-receiver-ceiling "$@"
  run "${ORDERED[@]}" --skip-receiver-ceiling "$@"
  jq -rn --slurpfile u "$(latest unordered-50-keys)" --slurpfile o "$(latest ordered-50-keys)" \
    '"  ordered against unordered: \($o[0].deliveries_per_second | round)/s against \($u[0].deliveries_per_second | round)/s, \(($o[0].deliveries_per_second / $u[0].deliveries_per_second * 100) | round) %"'
  exit
fi
if [ "$#" -gt 0 ] && [ "$1" = "--pair" ]; then
  case "$2" in
    storm) calm=("${CALM_400[@]}") calm_name=fixed-400-per-second loaded=("${STORM[@]}") rate=400 ;;
    hanging) calm=("${CALM_NINE[@]}") calm_name=calm-nine-endpoints loaded=("${HANGING[@]}") rate=100 ;;
    *) echo "bench: --pair takes storm, hanging or ordering" >&2; exit 2 ;;
  esac
  shift 2
  warm=$(mktemp -d)
  run "${calm[@]}" --scenario warm-up --events $((2 * rate)) --out "$warm" --skip-receiver-ceiling >/dev/null 2>&1
  rm -rf "$warm"
  run "${calm[@]}" --skip-receiver-ceiling "$@"
  run "${loaded[@]}" --skip-receiver-ceiling --compare-with "$(latest "$calm_name")" "$@"
  exit
fi
run --scenario saturate-1-endpoint --events 20000 --concurrency 32 --endpoints 1 "$@"
run --scenario saturate-10-endpoints --events 5000 --concurrency 32 --endpoints 10 "$@"
# The calm run the retry storm is compared with: same rate, same endpoint.
run "${CALM_400[@]}" "$@"
run "${STORM[@]}" --compare-with "$(latest fixed-400-per-second)" "$@"
# The calm run the hanging endpoint is compared with: the same nine, nothing hanging.
run "${CALM_NINE[@]}" "$@"
run "${HANGING[@]}" --compare-with "$(latest calm-nine-endpoints)" "$@"
run "${UNORDERED[@]}" "$@"
run "${ORDERED[@]}" "$@"
