# Two commands matter on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install chromium test e2e screenshots lint format demo lab notebooks bench clean

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

# The browser test drives Debian's Chromium (Playwright cannot download one here). As root
# it is installed with apt-get when missing; otherwise make says how and stops, since the
# browser test is never skipped.
CHROMIUM := /usr/bin/chromium
chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make: $(CHROMIUM) is missing: installing chromium with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  test -x $(CHROMIUM) || { echo "make: apt-get did not install $(CHROMIUM)" >&2; exit 1; }; \
	else \
	  echo "make: the browser test needs $(CHROMIUM): run 'sudo apt-get install chromium' (or make as root), then make test again" >&2; \
	  exit 1; \
	fi

NBVAL := --nbval-lax --nbval-sanitize-with notebooks/nbval_sanitize.cfg

test: install lint chromium
	$(PY) -m pytest
	$(PY) -m pytest -p no:cacheprovider $(NBVAL) notebooks/

# The browser test alone (JupyterLab in headless Chromium; make test runs it too).
# Screenshots of its steps land in artifacts/e2e/.
e2e: install chromium
	$(PY) -m pytest -p no:cacheprovider -m e2e tests/e2e

# Re-make the README's docs/img/quickstart.png from the browser test's finished form.
screenshots: install chromium
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

# Every benchmark, each printing JSON; stub_lambda.py is the stub server the others start.
bench: install
	@for b in benchmarks/*.py; do \
	  case $$b in */stub_lambda.py) continue;; esac; \
	  echo "== $$b"; $(PY) $$b || exit 1; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
