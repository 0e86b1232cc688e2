#!/usr/bin/env bash
# The project's own RabbitMQ vhost and users, idempotently (never `guest`):
#   development (make install): generated passwords, written to .env
#   production:  deploy/bin/ensure-rabbitmq-user.sh --production, with the
#                operator's credentials in the environment (docs/production.md)
# Permissions are limited to the project's exchanges and queues
# (queueworks/core/broker_access.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin:/sbin"
PY="${PY:-.venv/bin/python}"
# The example project: its name is the vhost and users, its topology the permissions.
export QUEUEWORKS_PROJECT_NAME="${QUEUEWORKS_PROJECT_NAME:-projectname}"
exec "$PY" -m queueworks.core.broker_setup "$@"
