# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
LISTEN ?=
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit image-test bench deploy status-page clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=python3.x)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

## Run the daemon against the built-in Sendcloud simulator: http://localhost:9877/metrics
## (another address: make demo LISTEN=127.0.0.1:8080)
demo: $(STAMP)
	$(BIN)/integration-monitor demo $(if $(LISTEN),--listen $(LISTEN))

## Lint, type-check and run the whole test suite
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadfile

## Build the container image on a Debian-made base and run it (podman, mmdebstrap; part of make test)
image-test: $(STAMP)
	$(BIN)/pytest tests/system/test_image.py -s

## The daemon against the simulator (1 000 to 100 000 integrations, 500 accounts x 20), each figure beside its floor; the history at 10 000
bench: $(STAMP)
	$(BIN)/python bench/daemon.py
	$(BIN)/python bench/history.py
	$(BIN)/python bench/incident.py

## Regenerate deploy/kubernetes/prometheusrule.yaml from deploy/prometheus/rules.yml
deploy: $(STAMP)
	$(BIN)/python deploy/kubernetes/generate_prometheusrule.py > deploy/kubernetes/prometheusrule.yaml

## Regenerate docs/status-page.png: the demo's status page in headless Chromium
status-page: $(STAMP)
	$(BIN)/python -m tests.screenshot docs/status-page.png

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
