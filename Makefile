# Two commands on a fresh Debian machine:
#   make run    install what running needs, migrate, run every program under supervisord
#   make test   that install plus the test-only parts, then the whole test suite,
#               then the Django 6 pass (test-django6)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# The Django 6 pass: the same code on Django 6.0 (requirements-django6.txt) in a
# virtualenv of its own on Python >= 3.12, which Django 6 needs.  It runs the
# tests that need no broker, and the Django task backend's tests whole (marked
# tasks_backend): their live system runs this virtualenv's workers.
VENV_DJANGO6 ?= .venv-django6
PY_DJANGO6 := $(VENV_DJANGO6)/bin/python
PYTEST_DJANGO6_ARGS ?= -m '(not live or tasks_backend) and not system_python'

.PHONY: install install-test system system-test python rabbitmq-user run test test-rabbitmq4 test-postgres test-django6 render check
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

# deploy/bin/ensure-python.sh finds (or installs) the interpreter.  With none
# here and none installable it fails under CI=true; elsewhere it warns and
# exits 3, no stamp is written, and the pass is skipped with a warning.
$(VENV_DJANGO6)/.installed: requirements-django6.txt
	@set -e; \
	python=$$(bash deploy/bin/ensure-python.sh) || { status=$$?; [ $$status = 3 ] && exit 0; exit $$status; }; \
	if ! $(PY_DJANGO6) -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
	  echo "$$python -m venv --clear $(VENV_DJANGO6)"; "$$python" -m venv --clear $(VENV_DJANGO6); \
	fi; \
	echo "$(PY_DJANGO6) -m pip install -q -r requirements-django6.txt"; \
	$(PY_DJANGO6) -m pip install -q --upgrade pip; \
	$(PY_DJANGO6) -m pip install -q -r requirements-django6.txt; \
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
# docs/testing.md lists them), the tests marked postgres again with the test
# database and the live system's on PostgreSQL (tests/support/postgres.py),
# then the Django 6 pass.  Every pass runs whatever the others' outcome, so
# one failure still shows the others' results; any failing fails make test.
PYTEST_RABBITMQ4 := QUEUEWORKS_TEST_BROKER=rabbitmq4 $(PY) -m pytest -m rabbitmq4
PYTEST_POSTGRES := QUEUEWORKS_TEST_DATABASE=postgres $(PY) -m pytest -m postgres

test: install-test $(VENV)/.bench-installed $(VENV_DJANGO6)/.installed
	@echo "$(PY) -m pytest $(PYTEST_ARGS)"; \
	$(PY) -m pytest $(PYTEST_ARGS); suite=$$?; \
	echo "$(PYTEST_RABBITMQ4) $(PYTEST_ARGS)   # the RabbitMQ 4.x pass"; \
	$(PYTEST_RABBITMQ4) $(PYTEST_ARGS); rabbitmq4=$$?; \
	echo "$(PYTEST_POSTGRES) $(PYTEST_ARGS)   # the PostgreSQL pass"; \
	$(PYTEST_POSTGRES) $(PYTEST_ARGS); postgres=$$?; \
	$(DJANGO6_PASS); django6=$$?; \
	echo "make test: the suite exited $$suite, the RabbitMQ 4.x pass $$rabbitmq4, the PostgreSQL pass $$postgres, the Django 6 pass $$django6"; \
	for status in $$suite $$rabbitmq4 $$postgres $$django6; do [ $$status -ne 0 ] && exit $$status; done; exit 0

test-rabbitmq4: install-test
	$(PYTEST_RABBITMQ4) $(PYTEST_ARGS)

test-postgres: install-test
	$(PYTEST_POSTGRES) $(PYTEST_ARGS)

test-django6: install system-test $(VENV_DJANGO6)/.installed
	@$(DJANGO6_PASS)

# The Django 6 pass, or a warning if its virtualenv could not be made.
DJANGO6_PASS = if [ -f $(VENV_DJANGO6)/.installed ]; then \
	  echo "$(PY_DJANGO6) -m pytest $(PYTEST_DJANGO6_ARGS)   \# the Django 6 pass"; \
	  $(PY_DJANGO6) -m pytest $(PYTEST_DJANGO6_ARGS); \
	else \
	  echo "WARNING: the Django 6 pass did not run: no Python >= 3.12 (deploy/bin/ensure-python.sh)" >&2; \
	fi

render: python
	$(PY) manage.py render_supervisor
	$(PY) manage.py render_systemd

check: python
	$(PY) manage.py check
	$(PY) manage.py render_supervisor --check
	$(PY) manage.py render_systemd --check
