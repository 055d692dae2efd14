# The two commands of the README: `make demo` (main job) and `make test` (test suite).
# Both create .venv (seeing already-installed system packages, so nothing is downloaded twice)
# and install the requirements into it first.
# `make lab` installs JupyterLab and ipywidgets (requirements-lab.txt) and starts JupyterLab in the repository root.
# `make bench` runs the peer comparison (benchmarks/peers.py, one torch thread; BENCH_ARGS adds options such
# as --append or --device cuda); `make bench-deps` installs its optional peers (requirements-bench.txt).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= runs/demo
BENCH_ARGS ?=

.PHONY: install demo test notebooks lab bench bench-deps clean

$(PY):
	$(PYTHON) -m venv --system-site-packages $(VENV)

# pip prints one line per requirement (no download bars): a fresh machine spends minutes here, visibly
install: $(PY)
	@echo "installing the requirements into $(VENV) (the first time takes a few minutes) ..."
	$(PY) -m pip install --progress-bar off --disable-pip-version-check -r requirements.txt -r requirements-dev.txt \
		| { grep -vE "^(Requirement already satisfied|WARNING: Location)" || true; }; exit $${PIPESTATUS[0]}
	@echo "installed"

demo: install
	$(PY) -m demo --out $(DEMO_OUT)

test: install
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

notebooks: install
	$(PY) -m notebooks.run

lab: install
	$(PY) -m pip install --progress-bar off --disable-pip-version-check -r requirements-lab.txt
	$(VENV)/bin/jupyter lab --notebook-dir .

bench-deps: install
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps pythae==0.1.2

bench: install
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.peers --threads 1 $(BENCH_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
