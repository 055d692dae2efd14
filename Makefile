# The two commands of the README: `make demo` (main job) and `make test` (test suite).
# Both create .venv (seeing already-installed system packages, so nothing is downloaded twice)
# and install the requirements into it first.
# `make bench` runs the peer comparison (benchmarks/peers.py, one torch thread; BENCH_ARGS adds options such
# as --append or --device cuda); `make bench-deps` installs its optional peers (requirements-bench.txt).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= runs/demo
BENCH_ARGS ?=

.PHONY: install demo test notebooks bench bench-deps clean

$(PY):
	$(PYTHON) -m venv --system-site-packages $(VENV)

install: $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt

demo: install
	$(PY) -m demo --out $(DEMO_OUT)

test: install
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

notebooks: install
	$(PY) -m notebooks.run

bench-deps: install
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps pythae==0.1.2

bench: install
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.peers --threads 1 $(BENCH_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
