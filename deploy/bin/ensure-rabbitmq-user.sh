#!/usr/bin/env bash
# The project's own RabbitMQ vhost and users, idempotently (never `guest`):
#   development (make install): generated passwords, written to .env
#   production:  deploy/bin/ensure-rabbitmq-user.sh --production, with the
#                operator's credentials in the environment (docs/production.md)
# Permissions are limited to the project's exchanges and queues
# (projectname/broker_access.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin:/sbin"
PY="${PY:-.venv/bin/python}"
exec "$PY" -m projectname.broker_setup "$@"
