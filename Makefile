# Two commands on a fresh Debian machine:
#   make run    install what running needs, migrate, run every program under supervisord
#   make test   that install plus the test-only parts, then the whole test suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install install-test system system-test python rabbitmq-user run test test-rabbitmq4 render check
install: system python .env rabbitmq-user

# What only the tests need: Chromium, Redis, iproute2, requirements-test.txt.
install-test: install system-test $(VENV)/.test-installed

system:
	bash deploy/bin/ensure-system.sh

system-test:
	bash deploy/bin/ensure-system.sh --test

python: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.test-installed: requirements-test.txt $(VENV)/.installed
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

# Benchmark-only packages (Dramatiq): the suite runs the benchmarks at a tiny size.
$(VENV)/.bench-installed: requirements-bench.txt $(VENV)/.installed
	$(PY) -m pip install -q -r requirements-bench.txt
	touch $@

# A local .env with development defaults, only when none exists.
.env:
	cp -n .env.example .env

# The project's RabbitMQ vhost and least-privilege users; credentials go to .env.
rabbitmq-user: system python .env
	PY=$(PY) bash deploy/bin/ensure-rabbitmq-user.sh

run: install
	$(PY) manage.py check
	$(PY) manage.py migrate --noinput
	$(PY) manage.py sync_schedules
	$(PY) manage.py render_supervisor --check
	$(PY) manage.py supervisord

# After the main pass, the tests marked rabbitmq4 again on a RabbitMQ 4.x node
# with 4.3's defaults and quorum queues (tests/support/rabbitmq4.py;
# docs/testing.md lists them).
PYTEST_RABBITMQ4 := QUEUEWORKS_TEST_BROKER=rabbitmq4 $(PY) -m pytest -m rabbitmq4

test: install-test $(VENV)/.bench-installed
	$(PY) -m pytest $(PYTEST_ARGS)
	$(PYTEST_RABBITMQ4) $(PYTEST_ARGS)

test-rabbitmq4: install-test
	$(PYTEST_RABBITMQ4) $(PYTEST_ARGS)

render: python
	$(PY) manage.py render_supervisor
	$(PY) manage.py render_systemd

check: python
	$(PY) manage.py check
	$(PY) manage.py render_supervisor --check
	$(PY) manage.py render_systemd --check
