#!/usr/bin/env bash
# Checks that the services Hookline needs are reachable, and says how to start
# any that is not. Exits non-zero when one is missing.
set -u
missing=0

probe() { # name host port how-to-start
  if (exec 3<>"/dev/tcp/$2/$3") 2>/dev/null; then
    exec 3>&- 3<&-
  else
    echo "✗ $1 is not reachable on $2:$3. Start it: $4" >&2
    missing=1
  fi
}

probe Postgres 127.0.0.1 5432 "pg_ctlcluster <version> main start   (or: docker compose up -d postgres)"
probe RabbitMQ 127.0.0.1 5672 "rabbitmq-server -detached   (or: docker compose up -d rabbitmq)"
probe Redis 127.0.0.1 6379 "redis-server --daemonize yes   (or: docker compose up -d redis)"
probe "RabbitMQ management API (tests create a vhost per test)" 127.0.0.1 15672 "rabbitmq-plugins enable rabbitmq_management"

exit $missing
