# Everything a fresh machine needs: `make test` and `make demo` create .venv
# and install the package into it on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL := 2
export KERAS_BACKEND ?= tensorflow

.PHONY: install test test-slow demo bench lint clean

$(VENV)/installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/installed

# The default suite (minutes on a 2-core CPU).
test: install
	$(PY) -m pytest -n 2 --dist loadfile -q -m "not slow"

# The long end-to-end runs (full examples, learning to a target).
test-slow: install
	$(PY) -m pytest -n 2 --dist loadfile -q -m slow || [ $$? -eq 5 ]

demo: install
	$(PY) examples/demo.py

bench: install
	$(PY) -m benchmarks.run

lint: install
	$(VENV)/bin/ruff check keras_mha tests examples benchmarks

clean:
	rm -rf $(VENV) runs
