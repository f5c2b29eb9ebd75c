# The README's two commands: `make run` and `make test`. Only python3 and make are assumed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: run test lint bench clean vendor

$(VENV)/bin/python:
	$(PY) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[postgres,redis]'
	touch $@

$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/wharf migrate
	$(BIN)/wharf keys generate --if-missing
	$(BIN)/wharf demo
	$(BIN)/wharf serve

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src tests bench

# Test files run in parallel, one file per worker at a time (its session fixtures, such as the
# Spark session, stay with it); each worker has its own PostgreSQL database (tests/conftest.py).
TEST_WORKERS ?= auto
test: lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

# One table over every domain's hot reads and writes, SQLite and PostgreSQL (bench/table.py).
# make bench BENCH_ARGS="--no-postgres --seconds 5"; BENCH_ARGS="--profile var/profiles" also
# samples each path with py-spy. Other suites: python -m bench.run --only NAME (bench/run.py).
bench: $(DEV_STAMP)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m bench.run --only table --record $(BENCH_ARGS)

# Maintainers only (needs npm): fetch the dashboard's Chart.js again and check its checksum.
CHARTJS_VERSION := 4.6.1
vendor:
	d=$$(mktemp -d) && cd $$d && npm pack --silent chart.js@$(CHARTJS_VERSION) >/dev/null && tar xzf chart.js-$(CHARTJS_VERSION).tgz \
	  && cp package/dist/chart.umd.min.js $(CURDIR)/src/wharf/dashboard/static/vendor/ \
	  && cp package/LICENSE.md $(CURDIR)/src/wharf/dashboard/static/vendor/chart.js-LICENSE.md
	grep -q "$$(sha256sum src/wharf/dashboard/static/vendor/chart.umd.min.js | cut -d' ' -f1)" src/wharf/dashboard/static/vendor/VENDOR.md

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
