"""One test helper run on every public layer (see `run_layer_test`), and
the small helpers the layer tests share."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import tree

import keras_mha

PACKAGE_DIR = os.path.dirname(os.path.abspath(keras_mha.__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_on_jax_devices(module, workdir, devices=8, timeout=300):
    """Runs `python -m MODULE WORKDIR` on JAX with `devices` host CPUs.

    A fresh process, since the device count is fixed when JAX starts.
    Returns the JSON summary printed on the last line of its output.
    """
    result = subprocess.run(
        [sys.executable, "-m", module, str(workdir)],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "KERAS_BACKEND": "jax",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
            "TF_CPP_MIN_LOG_LEVEL": "3",
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_clear_error(thunk, error_type, fragments):
    """`thunk()` raises exactly `error_type` from the package's own checks.

    The message must contain every fragment (the argument, the value and
    the expectation) and "Received:", and the innermost frame must be in
    `keras_mha`, never in a backend op deep inside a call.
    """
    with pytest.raises(error_type) as info:
        thunk()
    # Exactly this type: a backend's error subclassing ValueError (such as
    # TensorFlow's InvalidArgumentError) must not pass for ours.
    assert info.type is error_type, info.value
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "Received:" in message or "must divide" in message, message
    innermost = os.path.abspath(str(info.traceback[-1].path))
    assert innermost.startswith(PACKAGE_DIR), (
        f"raised outside keras_mha, in {innermost}"
    )


def to_numpy(x):
    """A backend tensor (or array) as a NumPy array."""
    return keras.ops.convert_to_numpy(x)


# The three attention paths, as the layers' options pick them: the fused
# kernel where the backend has one, the explicit softmax, and chunks of 2.
ATTENTION_PATHS = {
    "fused": dict(flash_attention=None),
    "explicit": dict(flash_attention=False),
    "chunked": dict(flash_attention=False, attention_chunk_size=2),
}


def padding_masks(length, lengths):
    """`(len(lengths), length)` boolean masks, True at each row's first
    `lengths[i]` positions."""
    return np.arange(length)[None] < np.array(lengths)[:, None]


def decode_in_steps(step, inputs, steps, state=None):
    """Feeds `inputs` through `step` in chunks along the sequence axis.

    `step(chunk, index, state)` returns `(outputs, state)` for the chunk
    that starts at position `index` (the state is a cache, or `None`);
    `steps` are the chunk lengths and must add up to the sequence length.
    Returns the chunks' outputs concatenated as NumPy, and the last state:
    compare them with the full-sequence call.
    """
    outputs, index = [], 0
    for length in steps:
        out, state = step(inputs[:, index : index + length], index, state)
        outputs.append(to_numpy(out))
        index += length
    assert index == inputs.shape[1], (steps, inputs.shape)
    return np.concatenate(outputs, axis=1), state


def _as_kwargs(inputs):
    return inputs if isinstance(inputs, dict) else {"inputs": inputs}


def _call(layer, inputs, call_kwargs):
    """Calls a layer on one array or a dict of named arrays."""
    if isinstance(inputs, dict):
        return layer(**inputs, **call_kwargs)
    return layer(inputs, **call_kwargs)


def _symbolic_inputs(inputs):
    """`keras.Input`s with an unknown sequence length for each input."""
    return {
        name: keras.Input((None, value.shape[-1]), name=name)
        for name, value in _as_kwargs(inputs).items()
    }


def _model(layer, inputs, call_kwargs):
    symbolic = _symbolic_inputs(inputs)
    if isinstance(inputs, dict):
        outputs = layer(**symbolic, **call_kwargs)
    else:
        outputs = layer(symbolic["inputs"], **call_kwargs)
    return keras.Model(symbolic, outputs)


def _shapes(inputs):
    return [v.shape for v in _as_kwargs(inputs).values()]


def run_layer_test(
    layer_cls,
    init_kwargs,
    inputs,
    expected_output_shape,
    expected_num_trainable_weights,
    call_kwargs=None,
    tmp_path=None,
):
    """Checks the Keras conventions every public layer must meet.

    - `get_config` / `from_config` and `serialize_keras_object` round trips;
    - the eager shape of the first output equals `expected_output_shape`
      and `compute_output_shape`; every output (scores and caches too,
      when `call_kwargs` ask for them) is finite, and a symbolic call with
      unknown sequence length gives the same structure, dtypes and shapes
      (with `None` where unknown);
    - the number of trainable weights;
    - a `.keras` file saved and reloaded with `safe_mode=True` and no
      `custom_objects` gives equal outputs, all of them;
    - a `fit` step changes the trainable weights and gives a finite loss;
    - under `mixed_float16` and `mixed_bfloat16` every output has the
      compute dtype and is finite, and every sub-layer has the policy.
    """
    call_kwargs = call_kwargs or {}
    layer = layer_cls(**init_kwargs)

    # Config round trips.
    config = layer.get_config()
    assert layer_cls.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(restored) is layer_cls
    assert restored.get_config() == config

    # Eager call and shapes, of every output (outputs, scores, caches).
    outputs = _call(layer, inputs, call_kwargs)
    first = tree.flatten(outputs)[0]
    assert tuple(first.shape) == tuple(expected_output_shape)
    computed = layer.compute_output_shape(*_shapes(inputs))
    assert tuple(computed) == tuple(expected_output_shape)
    num_weights = len(layer.trainable_weights)
    assert num_weights == expected_num_trainable_weights, num_weights
    tree.map_structure(_assert_finite, outputs)

    # Symbolic call with an unknown sequence length: every output has the
    # eager one's structure, dtype and shape, with `None` where unknown.
    model = _model(layer_cls.from_config(config), inputs, call_kwargs)
    symbolic = model.outputs if tree.is_nested(outputs) else model.outputs[0]
    if isinstance(outputs, tuple):
        symbolic = tuple(symbolic)
    tree.assert_same_structure(symbolic, outputs)
    tree.map_structure(_assert_same_spec, symbolic, outputs)
    assert tuple(model.outputs[0].shape)[:2] == (None, None)

    # `.keras` round trip in safe mode.
    if tmp_path is not None:
        model = _model(layer, inputs, call_kwargs)
        path = os.path.join(tmp_path, "model.keras")
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
        # A reloaded functional model gives a list where the original
        # gives a tuple: compare output by output.
        reloaded = tree.flatten(loaded(_as_kwargs(inputs)))
        original = tree.flatten(model(_as_kwargs(inputs)))
        assert len(reloaded) == len(original)
        for a, b in zip(reloaded, original):
            np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-6)

    _check_fit_step(layer_cls, init_kwargs, inputs, call_kwargs)
    for policy in ("mixed_float16", "mixed_bfloat16"):
        _check_policy(layer_cls, init_kwargs, inputs, call_kwargs, policy)


def _assert_finite(x):
    assert np.all(np.isfinite(to_numpy(x)))


def _assert_same_spec(symbolic, eager):
    """Same dtype and rank; sizes equal where the symbolic one is known."""
    assert symbolic.dtype == keras.backend.standardize_dtype(eager.dtype)
    assert len(symbolic.shape) == len(eager.shape)
    for known, size in zip(symbolic.shape, eager.shape):
        assert known is None or known == size, (symbolic.shape, eager.shape)


def _check_fit_step(layer_cls, init_kwargs, inputs, call_kwargs):
    model = _model(layer_cls(**init_kwargs), inputs, call_kwargs)
    if not model.trainable_weights:
        return
    # Trained on the main output (scores and caches are not targets).
    model = keras.Model(model.inputs, model.outputs[0])
    before = [to_numpy(w) for w in model.trainable_weights]
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
    target = np.ones(model.outputs[0].shape[-1:], "float32")
    target = np.broadcast_to(
        target, next(iter(_as_kwargs(inputs).values())).shape[:2] + target.shape
    )
    history = model.fit(_as_kwargs(inputs), target, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [to_numpy(w) for w in model.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(before, after))


def _check_policy(layer_cls, init_kwargs, inputs, call_kwargs, policy):
    layer = layer_cls(**init_kwargs, dtype=policy)
    outputs = _call(layer, inputs, call_kwargs)
    compute_dtype = keras.DTypePolicy(policy).compute_dtype
    for output in tree.flatten(outputs):
        assert keras.backend.standardize_dtype(output.dtype) == compute_dtype
    tree.map_structure(_assert_finite, outputs)
    for sublayer in layer._flatten_layers():
        assert sublayer.compute_dtype == compute_dtype, sublayer.name
        for weight in sublayer.trainable_weights:
            assert weight.dtype == "float32", weight.path
