# The README's commands. Each one sets up a fresh machine by itself (Python 3.11+ and make are enough).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test manage lint browsers clean

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

## make manage ARGS="createsuperuser": any management command against make run's database and Redis
manage: install
	$(BIN)/python -m chatdesk.embedded manage $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var .pytest_cache staticfiles
