#!/usr/bin/env bash
# Installs and starts what Hookline needs on this machine, then returns.
#
#   scripts/setup.sh dev    services running, the Python example's venv
#   scripts/setup.sh test   all of dev, plus the RabbitMQ management API,
#                           Chromium and its WebDriver, Node packages,
#                           schemathesis, cargo-nextest and cargo-fuzz
#
# Idempotent and silent when nothing is missing. When something is missing
# and cannot be installed here (not root, no apt-get), it stops with one
# line naming the command to run.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-test}
case $mode in dev | test) ;; *) echo "usage: $0 dev|test" >&2; exit 2 ;; esac

say() { printf '==> %s\n' "$*" >&2; }
stop() { printf 'setup: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }
can_apt() { is_root && command -v apt-get >/dev/null; }
open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() { # name host port seconds
  local deadline=$((SECONDS + $4))
  until open "$2" "$3"; do
    ((SECONDS < deadline)) || stop "$1 did not start listening on $2:$3 within $4 s"
    sleep 0.5
  done
}

apt_updated=
apt_install() { # package...
  can_apt || stop "missing $*; run: sudo apt-get install -y $*"
  say "installing $*"
  export DEBIAN_FRONTEND=noninteractive
  local log
  log=$(mktemp)
  if [ -z "$apt_updated" ]; then
    apt-get update -qq >"$log" 2>&1 || { cat "$log" >&2; stop "apt-get update failed"; }
    apt_updated=1
  fi
  apt-get install -y -qq --no-install-recommends "$@" >"$log" 2>&1 || { cat "$log" >&2; stop "apt-get install $* failed"; }
  rm -f "$log"
}

# Starts a service that is installed but not listening; installs it first
# when root can. Root is needed to start the machine's own services.
service() { # name port package binary start-command...
  local name=$1 port=$2 package=$3 binary=$4
  shift 4
  open 127.0.0.1 "$port" && return
  command -v "$binary" >/dev/null || apt_install "$package"
  is_root || stop "$name is not running on 127.0.0.1:$port; run: sudo $*"
  say "starting $name"
  "$@" >/dev/null
}

# --- backing services ---------------------------------------------------------
pg_start() { pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start; }
redis_start() {
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/hookline.log
}
service PostgreSQL 5432 postgresql pg_ctlcluster pg_start
service Redis 6379 redis-server redis-server redis_start
service RabbitMQ 5672 rabbitmq-server rabbitmq-server rabbitmq-server -detached
wait_for PostgreSQL 127.0.0.1 5432 60
wait_for Redis 127.0.0.1 6379 30
wait_for RabbitMQ 127.0.0.1 5672 120

# --- the README's tour: curl, jq and the Python example's venv -----------------
command -v curl >/dev/null || apt_install curl
command -v jq >/dev/null || apt_install jq
python_deps=(docs/examples/python/requirements.txt)
[ "$mode" = test ] && python_deps+=(scripts/requirements-test.txt)
command -v python3 >/dev/null || apt_install python3 python3-venv
stamp=.venv/.installed-$mode
wanted=$(cat "${python_deps[@]}")
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    python3 -m venv .venv 2>/dev/null || { apt_install python3-venv && python3 -m venv .venv; }
  fi
  say "installing ${python_deps[*]} into .venv"
  args=()
  for f in "${python_deps[@]}"; do args+=(-r "$f"); done
  .venv/bin/python -m pip install -q --disable-pip-version-check "${args[@]}"
  printf '%s' "$wanted" >"$stamp"
fi

[ "$mode" = test ] || exit 0

# --- what only the test suite needs -------------------------------------------
# Tests create a vhost per test through the management API.
if ! open 127.0.0.1 15672; then
  is_root || stop "the RabbitMQ management API is not on 127.0.0.1:15672; run: sudo rabbitmq-plugins enable rabbitmq_management"
  say "enabling the RabbitMQ management plugin"
  rabbitmq-plugins enable rabbitmq_management >/dev/null
fi
wait_for "RabbitMQ management API" 127.0.0.1 15672 120

# The admin UI's end-to-end tests drive Debian's headless Chromium over WebDriver.
# HOOKLINE_TEST_CHROMIUM and HOOKLINE_TEST_CHROMEDRIVER name another pair.
[ -x "${HOOKLINE_TEST_CHROMIUM:-/usr/bin/chromium}" ] && [ -x "${HOOKLINE_TEST_CHROMEDRIVER:-/usr/bin/chromedriver}" ] ||
  apt_install chromium chromium-driver

# The TLS tests make their certificates with openssl and run a TLS-only
# redis-server, read with redis-cli.
command -v openssl >/dev/null || apt_install openssl
command -v redis-cli >/dev/null || apt_install redis-tools

# The Kubernetes manifests are rendered (`kubectl kustomize`) and checked
# against the API schemas (kubernetes-validate, in the venv).
command -v kubectl >/dev/null || apt_install kubectl

# The Express example is verified by the suite too.
command -v npm >/dev/null || apt_install nodejs npm
node_dir=docs/examples/node
if [ ! -d $node_dir/node_modules ] || [ $node_dir/package-lock.json -nt $node_dir/node_modules ]; then
  say "installing the Express example's packages"
  (cd $node_dir && npm ci --no-audit --no-fund --silent && touch node_modules)
fi

cargo_tool() { # binary crate
  command -v "$1" >/dev/null && return
  say "installing $2"
  cargo install --locked --quiet "$2"
}
cargo_tool cargo-nextest cargo-nextest
cargo_tool cargo-fuzz cargo-fuzz
