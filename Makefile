# The two commands of the README: `make demo` (main job) and `make test` (test suite).
# Both create .venv (seeing already-installed system packages, so nothing is downloaded twice)
# and install the requirements into it first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= runs/demo

.PHONY: install demo test notebooks clean

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

clean:
	rm -rf $(VENV) runs .pytest_cache
