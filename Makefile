# One task runner, used the same way locally and in CI.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-project

.PHONY: venv test test-fast lint demo bench clean

# (Re)create the virtual environment whenever the project's dependency files change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[spark,torch,postgres,test]'
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports

test: venv lint
	$(PY) -m pytest -n 2 --dist loadgroup

test-fast: venv
	$(PY) -m pytest -n 2 --dist loadgroup -m "not spark and not slow"

demo: venv
	$(VENV)/bin/lendml demo --dir $(DEMO_DIR)

bench: venv
	@echo "Benchmarks are separate scripts: see docs/benchmarks.md"

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
