# The two commands of the quick start: `make demo` and `make test`. Both create .venv when missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: venv demo test test-slow bench lint fmt clean chromium

venv: $(STAMP)

# torch first and pinned: an unpinned torch (asked for by any dependency) pulls gigabytes of CUDA wheels.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,train,ifeval]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/wiseft demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The report's browser check keeps its screenshots in test-artifacts/report-screenshots/<run>/ (gitignored).
test-slow: $(STAMP) chromium
	$(BIN)/python -m pytest -q -m slow
	@echo "report screenshots: test-artifacts/report-screenshots/"

bench: $(STAMP)
	$(BIN)/python bench/merge.py
	$(BIN)/python bench/grade.py
	$(BIN)/python bench/sweep.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=src $(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Headless Chromium for the report's screenshot test (Debian package).
chromium:
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
