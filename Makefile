# Fulfillment Ops Portal — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PG_URL ?= postgres://postgres@127.0.0.1:5432/fulfillment
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help install install-test demo test test-sqlite test-postgres lint graph

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## Create .venv and install the portal with its development tools

install-test: install ## Also install Debian's chromium for the browser tests
	@[ -x /usr/bin/chromium ] || { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

demo: install ## Portal, background workers and simulator with demo data on http://127.0.0.1:8000 (Ctrl-C stops all)
	$(PY) manage.py migrate --no-input -v0
	$(PY) manage.py setup_portal
	$(PY) manage.py demo_data --if-empty
	@echo "Portal on http://127.0.0.1:8000; the simulated ERP, WMS and carrier on http://127.0.0.1:8100 (see /_stats)."
	$(VENV)/bin/honcho -f Procfile.demo start

test: install-test ## Run the whole suite on SQLite, then on PostgreSQL when it answers
	$(MAKE) --no-print-directory test-sqlite
	@if $(PY) -c "import psycopg, sys; psycopg.connect('$${DATABASE_URL:-$(PG_URL)}'.rsplit('/', 1)[0] + '/postgres', connect_timeout=3).close()" 2>/dev/null; then \
		$(MAKE) --no-print-directory test-postgres; \
	else echo "PostgreSQL does not answer at $${DATABASE_URL:-$(PG_URL)}: ran on SQLite only."; fi

test-sqlite: install-test ## The suite on SQLite
	env -u DATABASE_URL $(PY) -m pytest

test-postgres: install-test ## The suite on PostgreSQL (DATABASE_URL or $(PG_URL))
	DATABASE_URL=$${DATABASE_URL:-$(PG_URL)} $(PY) -m pytest

lint: install ## ruff, migrations in step with models, deploy checks
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run
	DJANGO_ENV=production DJANGO_SECRET_KEY=ci-check-$$(head -c 32 /dev/urandom | base64) \
		DJANGO_ALLOWED_HOSTS=portal.example.com $(PY) manage.py check --deploy --fail-level WARNING

graph: install ## Render the order state machine to docs/order-states.svg (needs Debian's graphviz)
	@command -v dot >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq graphviz >/dev/null; }
	$(PY) manage.py graph_transitions orders.Order -o docs/order-states.svg
	$(PY) manage.py graph_transitions orders.Order -o docs/order-states.dot

.PHONY: bench bench-small
bench: install ## Benchmark: 1M orders, project against raw SQL (own PostgreSQL database; ~11 min)
	$(PY) -m bench --scale full

bench-small: install ## The benchmark's quick run (20k orders; the CI's smoke test, ~1 min)
	$(PY) -m bench --scale small
