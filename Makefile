# shadow-dagster: `make demo` runs the demo, `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3000
STAMP := $(VENV)/.installed

.PHONY: install demo test test-dagster-1.12 bench clean

install: $(STAMP)

# The library, editable, plus the repository's benchmarks (bench/) and demo code location
# (examples/demo/): two development packages that are not in the library's wheel.
DEV_PACKAGES := -e ./bench -e ./examples/demo

$(STAMP): pyproject.toml bench/pyproject.toml examples/demo/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' $(DEV_PACKAGES)
	touch $(STAMP)

demo: install
	PORT=$(PORT) bash scripts/demo.sh

# Two pytest-xdist workers (one per test module) overlap the tests that wait on Dagster runs; the
# test that restarts PostgreSQL (marked serial) runs alone afterwards.
test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not serial"
	$(BIN)/python -m pytest -q -m serial

# The previous Dagster minor release: the same suite (without the browser, the demo and the serial
# PostgreSQL restart) in a venv of its own. CI runs it after `make test`.
COMPAT := .venv-dagster-1.12
test-dagster-1.12:
	test -x $(COMPAT)/bin/python || $(PYTHON) -m venv $(COMPAT)
	$(COMPAT)/bin/pip install -q --upgrade pip
	$(COMPAT)/bin/pip install -q -e '.[dev]' $(DEV_PACKAGES) 'dagster==1.12.*' 'dagster-webserver==1.12.*' \
		'dagster-postgres==0.28.*' 'dagster-duckdb==0.28.*'
	$(COMPAT)/bin/python -c "import dagster; assert dagster.__version__.startswith('1.12.'), dagster.__version__"
	$(COMPAT)/bin/python -m pytest -q -n 2 --dist loadfile -m "not serial and not browser" \
		--ignore=tests/e2e/test_example_demo.py

bench: install
	$(BIN)/shadow-dagster bench ingest
	$(BIN)/shadow-dagster bench fingerprint
	$(BIN)/shadow-dagster bench speculation
	$(BIN)/shadow-dagster bench tick-curve
	$(BIN)/shadow-dagster bench load
	$(BIN)/shadow-dagster bench warehouse --burners 0
	$(BIN)/shadow-dagster bench warehouse --burners 2
	$(BIN)/shadow-dagster bench overhead
	$(BIN)/shadow-dagster bench overhead --burners 2
	$(BIN)/shadow-dagster bench reliability --trials 100

clean:
	rm -rf $(VENV) $(COMPAT) .dagster_home
