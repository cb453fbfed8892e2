# djsync — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA := demo_project/demo/data
DEMO_JOBS := categories products departments employees

.PHONY: screenshots demo test test-postgres test-sqlite lint typecheck browser services bench clean

$(VENV)/.installed: pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

## demo: install, migrate fresh SQLite databases (the demo and its directory), load the demo jobs, run day 1 then day 2
demo: $(VENV)/.installed
	rm -f demo.sqlite3 demo-directory.sqlite3
	$(PY) manage.py migrate -v0
	$(PY) manage.py migrate --database directory -v0
	$(PY) manage.py loaddata demo_jobs
	@echo "== Day 1: first sync of every demo job =="
	$(PY) manage.py runsync $(DEMO_JOBS)
	@echo "== Day 2: the next day's files (creates, updates and deletes) =="
	$(PY) manage.py runsync categories --file $(DATA)/day2/categories.csv --diff
	$(PY) manage.py runsync products --file $(DATA)/day2/products.csv --diff
	$(PY) manage.py runsync departments --file $(DATA)/day2/departments.xlsx --diff
	$(PY) manage.py runsync employees --file $(DATA)/day2/employees.json --diff
	@echo "== Day 3: the staff into the directory, an external system behind a JSON API =="
	PY=$(PY) sh scripts/demo_directory.sh

## test: install dev requirements and the browser, then the whole suite on PostgreSQL and SQLite
test: $(VENV)/.installed browser
	$(MAKE) lint
	$(MAKE) test-postgres
	$(MAKE) test-sqlite

test-postgres:
	DJSYNC_TEST_DB=postgres $(PY) -m pytest

test-sqlite:
	DJSYNC_TEST_DB=sqlite $(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(MAKE) typecheck

## typecheck: mypy with django-stubs on djsync/ (settings in pyproject.toml). Not incremental:
## the plugin's cache can lose SyncRun's queryset manager after an edit to models.py.
typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy --no-incremental

## bench: djsync vs django-import-export vs the COPY floor on PostgreSQL (see bench/RESULTS.md);
## `make bench ROWS=100000` runs one size for every tool; `CASE="preview-apply multimodel"`
## runs only those groups (direct, unsorted, preview-apply, multimodel)
bench: $(VENV)/.installed
	$(PY) -m bench.run $(if $(ROWS),--rows $(ROWS)) $(foreach c,$(CASE),--case $(c))

## bench-api: djsync's HTTP API target vs a hand-written httpx script, 10,000 accounts into the demo's directory API (bench/RESULTS.md)
bench-api: $(VENV)/.installed
	$(PY) -m bench.api_target

## screenshots: refresh docs/img/preview.png from the browser test
screenshots: $(VENV)/.installed browser
	DJSYNC_SCREENSHOTS=docs $(PY) -m pytest tests/test_browser.py

browser:
	bash scripts/install-browser.sh

services:
	bash scripts/services.sh

clean:
	rm -rf $(VENV) demo.sqlite3 demo-directory.sqlite3 .pytest_cache .mypy_cache
