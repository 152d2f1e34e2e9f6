# The README's commands. Each one sets up a fresh machine by itself (Python 3.11+ and make are enough).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test reliability manage bench bench-full lint browsers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[embedded,dev]"
	touch $(STAMP)

install: $(STAMP)

## make run: the desk with demo data on http://127.0.0.1:$(PORT) (default 8000), embedded PostgreSQL + Redis
run: install
	$(BIN)/python -m chatdesk.embedded run

## make test: the whole suite against a real PostgreSQL and Redis (embedded unless DATABASE_URL/REDIS_URL)
test: install
	$(BIN)/python -m chatdesk.embedded test $(PYTEST_ARGS)

## make reliability: the reliability and security suite's long profile (issue 6: ≥ 500 × 50 state-machine
## steps, 1,000-round races, 100,000 token probes, 12,000 fuzzed webhooks); writes docs/reliability.md.
## Same setup as make test (embedded PostgreSQL + Redis unless DATABASE_URL/REDIS_URL); `make test` runs the
## same tests in their quick profile.
reliability: install
	CHATDESK_PROFILE=long $(BIN)/python -m chatdesk.embedded test tests/reliability tests/security -q -s \
		--session-timeout=10800 $(PYTEST_ARGS)

## make manage ARGS="createsuperuser": any management command against make run's database and Redis
manage: install
	$(BIN)/python -m chatdesk.embedded manage $(ARGS)

## make bench: the benchmark suite's quick profile (a few minutes); make bench-full: every size (docs/performance.md)
## Own database (chatdesk_bench, re-created each run) on the embedded PostgreSQL, or on DATABASE_URL's server.
bench: install
	$(BIN)/python -m chatdesk.embedded bench --profile quick $(BENCH_ARGS)

bench-full: install
	$(BIN)/python -m chatdesk.embedded bench --profile full $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var .pytest_cache staticfiles
