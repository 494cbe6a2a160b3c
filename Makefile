# Everything a fresh machine needs: `make test` and `make demo` create .venv
# and install the package into it on first use; `make test-jax` and
# `make test-torch` add the JAX and PyTorch CPU builds to it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL := 2
export KERAS_BACKEND ?= tensorflow

.PHONY: install install-backends browser test test-jax test-torch \
	test-all test-slow demo bench gpu-wheels lint clean

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

# Headless Chromium and its driver for the head view's browser test
# (tests/test_visualize_browser.py), from Debian's packages where this runs
# as root with apt-get; elsewhere that test skips and says why.
browser:
	@if ! command -v chromium >/dev/null || \
		! command -v chromedriver >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq chromium chromium-driver) || \
				echo "Could not install chromium: the browser test skips."; \
		else \
			echo "No chromium (needs root and apt-get): the browser test skips."; \
		fi; \
	fi

# The default suite (minutes on a 2-core CPU) on $(KERAS_BACKEND), by
# default TensorFlow. `-rs` lists every skipped test with its reason.
PYTEST_DEFAULT := $(PY) -m pytest -n 2 --dist loadfile -q -rs -m "not slow"

test: install browser
	$(PYTEST_DEFAULT)

test-jax: install-backends browser
	KERAS_BACKEND=jax $(PYTEST_DEFAULT)

test-torch: install-backends browser
	KERAS_BACKEND=torch $(PYTEST_DEFAULT)

# The default suite on all three backends, as CI runs it.
test-all: test test-jax test-torch

# The long end-to-end runs (full examples, learning to a target).
test-slow: install
	$(PY) -m pytest -n 2 --dist loadfile -q -m slow || [ $$? -eq 5 ]

demo: install
	$(PY) examples/demo.py

# The encoder case runs on TensorFlow, JAX and PyTorch (a child process
# each): the backends must be installed.
bench: install-backends
	$(PY) -m benchmarks.run

# Wheels for a GPU machine with Python 3.12, JAX and PyTorch but no Keras
# and no network: keras, keras-hub and the pure-Python or compiled needs
# that such a machine lacks (cp312, manylinux x86_64), and this package.
# No tensorflow or tensorflow-text: keras_hub imports without them on JAX
# and PyTorch. `benchmarks/gpu_check.sh` installs them there and runs the
# GPU check (README, "On a GPU").
GPU_WHEELS := keras==3.15.1 keras-hub==0.32.0 namex==0.1.0 optree==0.20.0 \
	kagglehub==1.0.2 kagglesdk==0.1.28
GPU_PLATFORMS := $(foreach n,28 27 17,--platform manylinux_2_$(n)_x86_64) \
	--platform manylinux2014_x86_64 --platform manylinux1_x86_64
gpu-wheels: install
	rm -rf .whl && mkdir -p .whl
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: \
		--python-version 3.12 --implementation cp $(GPU_PLATFORMS) \
		-d .whl $(GPU_WHEELS)
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation -w .whl .
	du -sh .whl

lint: install
	$(VENV)/bin/ruff check keras_mha tests examples benchmarks
	$(VENV)/bin/ruff format --check keras_mha tests examples benchmarks

clean:
	rm -rf $(VENV) runs
