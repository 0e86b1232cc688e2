#!/usr/bin/env bash
# Install and start what the project needs from the OS, idempotently:
# RabbitMQ (with its management plugin, used for queue statistics and for the
# test suite's throw-away vhosts) and Python's venv module.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmq-server ] || missing+=(rabbitmq-server)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# iproute2: the multi-host test bed (deploy/testbed) builds network namespaces with `ip`.
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
# systemd-analyze: the suite verifies the rendered units (deploy/systemd) with it.
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# Redis: the alternative broker/result backend (README 'Redis as broker'; tests run on it too).
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# Debian's Chromium drives the /ops/ browser test (Playwright never downloads one).
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "ensure-system: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }

if ! port_open 5672; then
  echo "ensure-system: starting RabbitMQ"
  $SUDO rabbitmq-server -detached >/dev/null 2>&1 || true
  for _ in $(seq 1 90); do port_open 5672 && break; sleep 1; done
  port_open 5672 || { echo "ensure-system: RabbitMQ did not start on 127.0.0.1:5672" >&2; exit 1; }
fi

if ! $SUDO rabbitmq-plugins list -e -m 2>/dev/null | grep -qx rabbitmq_management; then
  echo "ensure-system: enabling rabbitmq_management"
  $SUDO rabbitmq-plugins enable rabbitmq_management >/dev/null
fi
for _ in $(seq 1 60); do port_open 15672 && break; sleep 1; done
port_open 15672 || { echo "ensure-system: RabbitMQ management API not listening on 15672" >&2; exit 1; }
echo "ensure-system: RabbitMQ ready (AMQP 5672, management 15672)"

if ! port_open 6379; then
  echo "ensure-system: starting Redis"
  if [ -f /etc/redis/redis.conf ]; then
    $SUDO redis-server /etc/redis/redis.conf --daemonize yes --bind 127.0.0.1 --port 6379 \
      --dir /var/lib/redis >/dev/null 2>&1 || true
  fi
  port_open 6379 || $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 >/dev/null 2>&1 || true
  for _ in $(seq 1 30); do port_open 6379 && break; sleep 1; done
  port_open 6379 || { echo "ensure-system: Redis did not start on 127.0.0.1:6379" >&2; exit 1; }
fi
echo "ensure-system: Redis ready (6379)"
