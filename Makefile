# Two commands matter on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install test e2e screenshots lint format demo lab notebooks bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

NBVAL := --nbval-lax --nbval-sanitize-with notebooks/nbval_sanitize.cfg

test: install lint
	$(PY) -m pytest
	$(PY) -m pytest -p no:cacheprovider $(NBVAL) notebooks/

# The browser test alone (JupyterLab in headless Chromium; make test runs it too).
# Screenshots of its steps land in artifacts/e2e/.
e2e: install
	$(PY) -m pytest -p no:cacheprovider -m e2e tests/e2e

# Re-make the README's docs/img/quickstart.png from the browser test's finished form.
screenshots: install
	LAMBDAKIT_UPDATE_SCREENSHOTS=1 $(PY) -m pytest -p no:cacheprovider -m e2e tests/e2e

demo: install
	$(PY) -m lambdakit demo

# lambdakit local on LAB_PORT, and JupyterLab on notebooks/ with LAMBDAKIT_ENDPOINT_URL set.
LAB_PORT ?= 9001
lab: install
	$(PY) -m lambdakit lab --port $(LAB_PORT)

# Rebuild the example notebooks (and their committed outputs) against lambdakit local.
notebooks: install
	$(PY) notebooks/build_notebooks.py

bench: install
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
