# The README's commands. `make up` runs the platform, `make test` runs every check CI runs.
SHELL := /bin/bash
# uv from PATH, or the one `make sync` installs with pip on a machine that has none yet.
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)

.PHONY: up down test lint typecheck pytest bench sync tools help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

sync: ## install uv if missing, then the locked environment (.venv) from uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
		|| { echo "installing uv (pip install uv)"; python3 -m pip install --quiet uv; }
	$(UV) sync --locked

tools: ## promtool, redis-server and chromium for the tests (Kafka and FerretDB install on first use)
	@bash infra/install-debian-tool.sh promtool prometheus
	@bash infra/install-debian-tool.sh redis-server redis-server
	@bash infra/install-debian-tool.sh chromium chromium

up: sync ## run the platform (Docker compose when an engine answers, else local processes)
	@if docker info >/dev/null 2>&1; then \
		[ -f .env ] || { cp .env.example .env; echo "created .env from .env.example (dev-only values)"; }; \
		docker compose up --build; \
	else bash infra/install-debian-tool.sh redis-server redis-server && $(UV) run bookify up; fi

down: ## stop what `make up` / `bookify infra up` started locally
	$(UV) run bookify infra down

lint: sync ## ruff lint and format check
	$(UV) run ruff check .
	$(UV) run ruff format --check .

typecheck: sync ## mypy, strict on shared, services, the platform, the benchmarks and the CLI
	$(UV) run mypy

pytest: sync tools ## every test layer on real Kafka and FerretDB, with coverage
	$(UV) run pytest --cov --cov-report=term --cov-report=xml tests

test: lint typecheck pytest ## everything CI runs

bench: sync ## pipeline benchmark against a local stack (prints figures; not a test)
	$(UV) run bookify bench pipeline
