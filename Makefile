# Everything bootstraps itself: a fresh machine needs only python3 (>= 3.11) and make.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .venv-tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
# Two lanes locked apart from the pipeline's dependencies: checkov & co. for the manifest
# checks, and the Snowflake emulator (fakesnow needs snowflake-connector-python<5).
OPS_VENV := $(CURDIR)/.venv-ops
SNOWFLAKE_VENV := $(CURDIR)/.venv-snowflake
SCRIPT := pipelines/dlt/dlt-chess-snowflake.py
# Use the machine's Python; never let uv download an interpreter.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

# `make run` loads last month and this month (UTC) unless START is given.
START ?= $(shell $(PYTHON) -c "import datetime as d; t = d.datetime.now(d.UTC).date().replace(day=1) - d.timedelta(days=1); print(t.strftime('%Y/%m'))")

.PHONY: help install run check test lint format validate manifests new-pipeline lock bench clean

# `make check`, the edit loop's lane: the unit tests, and each pipeline's own tests
# (tests/<package>/ beside pipelines/dlt/<package>/) without their end-to-end runs.
CHECK_TESTS := tests/unit tests/flows tests/test_pins.py \
	$(wildcard $(patsubst pipelines/dlt/%/__init__.py,tests/%,$(wildcard pipelines/dlt/*/__init__.py)))

help:
	@echo "make run    load a few players' recent months into ./chess_com.duckdb (needs internet)"
	@echo "make check  lint, validate and the unit tests (the fast lane, under a minute)"
	@echo "make test   lint, validate and every test, offline (the full suite, as CI runs it)"
	@echo "make new-pipeline NAME=weather [CRON='0 * * * *']   scaffold a pipeline (pipelines/README.md)"
	@echo "make validate   check the Kestra flows offline (and that k8s/ is up to date)"
	@echo "make manifests  regenerate k8s/apps/pipelines/ and the alert rules after changing pipelines/"
	@echo "make lock       re-lock dependencies (uv.lock, pipelines/dlt/requirements.lock)"
	@echo "make bench      benchmark against the local fake API (figures in bench/results/);"
	@echo "                ARGS=--quick: the small scenarios only; ARGS=--only=club,backfill,..."
	@echo "make lint / format / clean"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Bytecode compiled once at install: otherwise every run compiles ~800 modules again
# (~1.1 s of each start where PYTHONDONTWRITEBYTECODE is set, as on CI machines).
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --compile-bytecode --python $(PYTHON)
	@touch $@

$(OPS_VENV)/.synced: tools/ops/pyproject.toml tools/ops/uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(OPS_VENV) $(UV) sync --locked --project tools/ops --python $(PYTHON)
	@touch $@

$(SNOWFLAKE_VENV)/.synced: tests/snowflake_emulator/pyproject.toml tests/snowflake_emulator/uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(SNOWFLAKE_VENV) $(UV) sync --locked --project tests/snowflake_emulator --python $(PYTHON)
	@touch $@

install: $(VENV)/.synced $(OPS_VENV)/.synced $(SNOWFLAKE_VENV)/.synced

# Only the pipeline's environment: the checkov and emulator lanes are for `make test`.
run: $(VENV)/.synced
	$(PY) $(SCRIPT) --destination duckdb --start-month $(START) $(ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

validate: install
	$(PY) tools/manifests.py check
	$(PY) tools/monitoring.py check
	$(PY) tools/validate_flows.py pipelines/

manifests: $(VENV)/.synced
	$(PY) tools/manifests.py write
	$(PY) tools/monitoring.py write

lock: | $(UV)
	$(UV) lock
	$(UV) lock --project tools/ops
	$(UV) lock --project tests/snowflake_emulator
	$(UV) export --frozen --no-dev --no-emit-project --format requirements-txt \
		-o pipelines/dlt/requirements.lock -q

check: lint validate
	$(PY) -m pytest -m "not e2e" $(CHECK_TESTS) $(PYTEST_ARGS)

test: lint validate
	$(PY) -m pytest $(PYTEST_ARGS)

# Writes the package, script, flow, tests, config and secret placeholder, then `make manifests`.
new-pipeline: $(VENV)/.synced
	$(if $(NAME),,$(error NAME is required: make new-pipeline NAME=weather))
	$(PY) tools/new_pipeline.py $(NAME) $(if $(CRON),--cron "$(CRON)")

# The whole set runs a 1,000-player club and a 1M-game backfill (bench/README.md); the
# pipeline environment is all it needs.
bench: $(VENV)/.synced
	$(PY) bench/bench.py $(ARGS)

clean:
	rm -rf $(VENV) $(OPS_VENV) $(SNOWFLAKE_VENV) $(TOOLS) .pytest_cache .ruff_cache chess_com.duckdb
