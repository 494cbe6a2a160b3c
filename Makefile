# Everything a fresh machine needs: `make test` and `make demo` create .venv
# and install the package into it on first use; `make test-jax` and
# `make test-torch` add the JAX and PyTorch CPU builds to it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL := 2
export KERAS_BACKEND ?= tensorflow

.PHONY: install install-backends test test-jax test-torch test-all \
	test-slow demo bench lint clean

$(VENV)/installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/installed

# The JAX and PyTorch backends of Keras, CPU builds (the `backends` extra).
# Extra pip options, e.g. PIP_BACKEND_FLAGS="--index-url
# https://download.pytorch.org/whl/cpu" where PyPI's torch is a CUDA build.
PIP_BACKEND_FLAGS ?=
$(VENV)/backends-installed: $(VENV)/installed
	$(PY) -m pip install --quiet $(PIP_BACKEND_FLAGS) -e ".[test,backends]"
	touch $@

install-backends: $(VENV)/backends-installed

# The default suite (minutes on a 2-core CPU) on $(KERAS_BACKEND), by
# default TensorFlow. `-rs` lists every skipped test with its reason.
PYTEST_DEFAULT := $(PY) -m pytest -n 2 --dist loadfile -q -rs -m "not slow"

test: install
	$(PYTEST_DEFAULT)

test-jax: install-backends
	KERAS_BACKEND=jax $(PYTEST_DEFAULT)

test-torch: install-backends
	KERAS_BACKEND=torch $(PYTEST_DEFAULT)

# The default suite on all three backends, as CI runs it.
test-all: test test-jax test-torch

# The long end-to-end runs (full examples, learning to a target).
test-slow: install
	$(PY) -m pytest -n 2 --dist loadfile -q -m slow || [ $$? -eq 5 ]

demo: install
	$(PY) examples/demo.py

bench: install
	$(PY) -m benchmarks.run

lint: install
	$(VENV)/bin/ruff check keras_mha tests examples benchmarks
	$(VENV)/bin/ruff format --check keras_mha tests examples benchmarks

clean:
	rm -rf $(VENV) runs
