#!/usr/bin/env bash
# Install and start what the project needs from the OS, idempotently.
#
#   ensure-system.sh            what running needs (`make run`): RabbitMQ with
#                               its management plugin, Python's venv module
#   ensure-system.sh --test     that plus what only the tests need (`make test`):
#                               Chromium, Redis, iproute2, nginx (its binary:
#                               the suite validates deploy/nginx/ with `nginx -t`),
#                               PostgreSQL with a role that may create throw-away
#                               databases (TEST_POSTGRES_URL in .env), socat,
#                               and a Debian trixie root with RabbitMQ 4.x for the
#                               suite's 4.x pass (deploy/testbed/rabbitmq4.sh)
#   --dry-run                   print the plan, change nothing
#
# Each step looks before it acts: a listening port means the service is up,
# so a machine that is already set up runs no apt-get, no rabbitmq-plugins.
set -euo pipefail

with_test=0
dry_run=0
for argument in "$@"; do
  case "$argument" in
    --test) with_test=1 ;;
    --dry-run) dry_run=1 ;;
    *) echo "ensure-system: unknown option $argument (known: --test, --dry-run)" >&2; exit 2 ;;
  esac
done
# ENSURE_SYSTEM_PRETEND_FRESH=1 (with --dry-run only): plan as on a machine
# with nothing installed and nothing running; the tests use it.
fresh=0
if [ "${ENSURE_SYSTEM_PRETEND_FRESH:-0}" = 1 ]; then
  [ "$dry_run" = 1 ] || { echo "ensure-system: ENSURE_SYSTEM_PRETEND_FRESH needs --dry-run" >&2; exit 2; }
  fresh=1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export PATH="$PATH:/usr/sbin:/sbin"

has() { [ "$fresh" = 0 ] && { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }; }
port_open() { [ "$fresh" = 0 ] && (exec 3<>"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }
plan() { echo "ensure-system: $*"; }
run() { if [ "$dry_run" = 1 ]; then echo "ensure-system: would run: $*"; else "$@"; fi; }
wait_port() {  # port seconds what
  [ "$dry_run" = 1 ] && return 0
  for _ in $(seq 1 "$2"); do port_open "$1" && return 0; sleep 1; done
  echo "ensure-system: $3 not listening on 127.0.0.1:$1" >&2; exit 1
}

# -- packages -------------------------------------------------------------
missing=()
has rabbitmq-server || missing+=(rabbitmq-server)
{ [ "$fresh" = 0 ] && python3 -c 'import venv, ensurepip' >/dev/null 2>&1; } || missing+=(python3-venv)
if [ "$with_test" = 1 ]; then
  # The multi-host test bed (deploy/testbed) builds network namespaces with `ip`.
  has ip || missing+=(iproute2)
  # The Redis broker tests (tests/integration/test_redis.py).
  has redis-server || missing+=(redis-server)
  # The suite verifies the rendered units (deploy/systemd) with systemd-analyze.
  has systemd-analyze || missing+=(systemd)
  # The suite validates the reverse-proxy example (deploy/nginx) with `nginx -t`;
  # the tests need the binary only, so the service Debian starts is stopped again.
  has nginx || { missing+=(nginx); nginx_installed_here=1; }
  # The PostgreSQL tests and the three-host test bed (its database host), and
  # socat, which the test bed relays ports with.
  has pg_ctlcluster || missing+=(postgresql)
  has socat || missing+=(socat)
  # Debian's Chromium drives the /ops/ browser test (Playwright never downloads one).
  { [ "$fresh" = 0 ] && [ -x /usr/bin/chromium ]; } || missing+=(chromium)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  plan "install ${missing[*]}"
  run $SUDO apt-get update -qq
  if [ "$dry_run" = 1 ]; then
    run $SUDO apt-get install -y -qq "${missing[@]}"
  else
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

if [ "${nginx_installed_here:-0}" = 1 ] && [ "$dry_run" = 0 ]; then
  # Debian's postinst starts nginx on port 80; the suite never uses that server.
  $SUDO nginx -s quit >/dev/null 2>&1 || true
fi

# -- RabbitMQ and its management API -------------------------------------
if ! port_open 5672; then
  plan "start RabbitMQ"
  if [ "$dry_run" = 0 ]; then $SUDO rabbitmq-server -detached >/dev/null 2>&1 || true; fi
  wait_port 5672 90 "RabbitMQ"
fi
# A listening management port means the plugin is enabled: no rabbitmq-plugins call.
if ! port_open 15672; then
  plan "enable rabbitmq_management"
  if [ "$dry_run" = 1 ]; then
    run $SUDO rabbitmq-plugins enable rabbitmq_management
  elif ! $SUDO rabbitmq-plugins list -e -m 2>/dev/null | grep -qx rabbitmq_management; then
    $SUDO rabbitmq-plugins enable rabbitmq_management >/dev/null
  fi
  wait_port 15672 60 "RabbitMQ management API"
fi
[ "$dry_run" = 1 ] || echo "ensure-system: RabbitMQ ready (AMQP 5672, management 15672)"

# -- Redis (tests only) ----------------------------------------------------
if [ "$with_test" = 1 ] && ! port_open 6379; then
  plan "start Redis"
  if [ "$dry_run" = 0 ]; then
    if [ -f /etc/redis/redis.conf ]; then
      $SUDO redis-server /etc/redis/redis.conf --daemonize yes --bind 127.0.0.1 --port 6379 \
        --dir /var/lib/redis >/dev/null 2>&1 || true
    fi
    port_open 6379 || $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 >/dev/null 2>&1 || true
  fi
  wait_port 6379 30 "Redis"
fi
if [ "$with_test" = 1 ] && [ "$dry_run" = 0 ]; then echo "ensure-system: Redis ready (6379)"; fi

# -- PostgreSQL and the tests' role (tests only) ----------------------------
# The role may create databases: each PostgreSQL test makes its own and drops
# it (tests/support/postgres.py).  Its generated password lives in .env only.
ENV_FILE="$(cd "$(dirname "$0")/../.." && pwd)/.env"
PG_ROLE=queueworks_test
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
if [ "$with_test" = 1 ]; then
  if ! port_open 5432; then
    plan "start PostgreSQL"
    if [ "$dry_run" = 0 ]; then
      for cluster in /etc/postgresql/*/main; do
        [ -d "$cluster" ] && $SUDO pg_ctlcluster "$(basename "$(dirname "$cluster")")" main start || true
      done
    fi
    wait_port 5432 60 "PostgreSQL"
  fi
  test_url="$( [ "$fresh" = 0 ] && [ -f "$ENV_FILE" ] && sed -n 's/^TEST_POSTGRES_URL=//p' "$ENV_FILE" | tail -1 || true)"
  if [ -z "$test_url" ] || ! PGCONNECT_TIMEOUT=5 psql "$test_url" -Atqc 'SELECT 1' >/dev/null 2>&1; then
    plan "create the PostgreSQL role $PG_ROLE and its database; TEST_POSTGRES_URL in .env"
    if [ "$dry_run" = 0 ]; then
      password="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
      as_postgres psql -q -v ON_ERROR_STOP=1 -v role="$PG_ROLE" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" LOGIN CREATEDB PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I', :'role', :'role') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'role') \gexec
SQL
      touch "$ENV_FILE"
      sed -i '/^TEST_POSTGRES_URL=/d' "$ENV_FILE"
      echo "TEST_POSTGRES_URL=postgres://$PG_ROLE:$password@127.0.0.1:5432/$PG_ROLE" >> "$ENV_FILE"
    fi
  fi
  [ "$dry_run" = 1 ] || echo "ensure-system: PostgreSQL ready (5432, role $PG_ROLE)"
fi
# -- RabbitMQ 4.x root (tests only) ----------------------------------------
# The suite's 4.x pass runs nodes from a debootstrapped trixie root; the
# script builds it once (about a minute) and only checks it afterwards.
rabbitmq4_root="${RABBITMQ4_ROOT:-/var/lib/queueworks/rabbitmq4-root}"
if [ "$with_test" = 1 ]; then
  if [ "$fresh" = 1 ] || [ ! -f "$rabbitmq4_root/etc/queueworks-rabbitmq4-root.ok" ]; then
    plan "build the RabbitMQ 4.x root in $rabbitmq4_root"
    run $SUDO bash "$(dirname "$0")/../testbed/rabbitmq4.sh" build
  fi
  [ "$dry_run" = 1 ] || echo "ensure-system: RabbitMQ 4.x root ready ($rabbitmq4_root)"
fi
if [ "$dry_run" = 1 ]; then plan "dry run: nothing changed"; fi
