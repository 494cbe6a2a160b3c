"""Data-parallel training on two devices equals training on one.

Each test starts a fresh process, because the devices must be configured
before the backend starts (two logical CPUs for TensorFlow, two host devices
for JAX) and that must not leak into other tests. The process trains the
translator of every public layer a few SGD steps on one device and, from the
same initial weights and on the same global batches, on two; both runs must
end with the same weights.
"""

import json

import keras
import numpy as np
import pytest

from tests.reliability_helpers import load_arrays
from tests.reliability_helpers import run_worker

BACKEND = keras.backend.backend()


def _check_same_training(workdir):
    initial = load_arrays(workdir / "initial.npz")
    single = load_arrays(workdir / "single.npz")
    parallel = load_arrays(workdir / "parallel.npz")
    assert len(single) == len(parallel) == len(initial) > 0
    for one_device, two_devices in zip(single, parallel):
        np.testing.assert_allclose(
            two_devices, one_device, rtol=1e-5, atol=1e-6
        )
    moved = max(np.abs(a - b).max() for a, b in zip(single, initial))
    assert moved > 1e-2, "training did not change the weights"


def _summary(result):
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(
    BACKEND != "tensorflow", reason="tf.distribute needs the TF backend"
)
def test_mirrored_strategy_matches_one_device(tmp_path):
    result = run_worker("mirrored", tmp_path, "--steps", 3)
    summary = _summary(result)
    assert summary["replicas"] == 2
    assert summary["kernel_copies"] == 2  # One mirrored copy per device.
    _check_same_training(tmp_path)


# Not marked slow although it takes ~30-60 s: CI runs the slow tests on the
# TensorFlow backend only, so the JAX suite is the only place it can run.
@pytest.mark.skipif(
    BACKEND != "jax", reason="keras.distribution needs the JAX backend"
)
def test_jax_data_parallel_matches_one_device(tmp_path):
    result = run_worker(
        "jax_data_parallel",
        tmp_path,
        "--steps",
        3,
        env={
            "KERAS_BACKEND": "jax",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        },
    )
    summary = _summary(result)
    assert summary["devices"] == summary["jax_devices"] == 2
    assert summary["kernel_devices"] == 2  # Replicated on both devices.
    _check_same_training(tmp_path)
