#!/usr/bin/env bash
# The GPU check on a machine with Python 3.12, JAX and PyTorch with CUDA,
# and no TensorFlow or network: installs the wheels of `make gpu-wheels`
# (the folder .whl, made where pip can reach PyPI) into /tmp/site and runs
# `python -m benchmarks.gpu`, which writes gpu_check.json, .png and .log
# into $OUT (or runs/gpu-check) within 450 s. Extra arguments go to it:
#
#     benchmarks/gpu_check.sh                 # everything
#     benchmarks/gpu_check.sh --parts encoder # one part
set -u
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
SITE="${GPU_CHECK_SITE:-/tmp/site}"
shopt -s nullglob
wheels=(.whl/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
    echo "No wheels in .whl: run 'make gpu-wheels' first." >&2
    exit 2
fi
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$SITE" "${wheels[@]}" || exit 1
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m benchmarks.gpu --out "${OUT:-runs/gpu-check}" "$@"
