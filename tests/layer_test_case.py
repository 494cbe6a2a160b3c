"""One test helper run on every public layer (see `run_layer_test`)."""

import os

import keras
import numpy as np

import keras_mha  # noqa: F401  (registers the layers for deserialization)


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
    - the eager output shape equals `expected_output_shape` and
      `compute_output_shape`, and a symbolic call with unknown sequence
      length gives the same shape with `None` there;
    - the number of trainable weights;
    - a `.keras` file saved and reloaded with `safe_mode=True` and no
      `custom_objects` gives equal outputs;
    - a `fit` step changes the trainable weights and gives a finite loss;
    - under `mixed_float16` and `mixed_bfloat16` the outputs have the
      compute dtype and are finite, and every sub-layer has the policy.
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

    # Eager call and shapes.
    outputs = _call(layer, inputs, call_kwargs)
    assert tuple(outputs.shape) == tuple(expected_output_shape)
    computed = layer.compute_output_shape(*_shapes(inputs))
    assert tuple(computed) == tuple(expected_output_shape)
    num_weights = len(layer.trainable_weights)
    assert num_weights == expected_num_trainable_weights, num_weights
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(outputs)))

    # Symbolic call with an unknown sequence length.
    model = _model(layer_cls.from_config(config), inputs, call_kwargs)
    symbolic_shape = tuple(model.outputs[0].shape)
    assert symbolic_shape[0] is None and symbolic_shape[1] is None
    assert symbolic_shape[2:] == tuple(expected_output_shape)[2:]

    # `.keras` round trip in safe mode.
    if tmp_path is not None:
        model = _model(layer, inputs, call_kwargs)
        path = os.path.join(tmp_path, "model.keras")
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(loaded(_as_kwargs(inputs))),
            keras.ops.convert_to_numpy(model(_as_kwargs(inputs))),
            atol=1e-6,
        )

    _check_fit_step(layer_cls, init_kwargs, inputs, call_kwargs)
    for policy in ("mixed_float16", "mixed_bfloat16"):
        _check_policy(layer_cls, init_kwargs, inputs, call_kwargs, policy)


def _check_fit_step(layer_cls, init_kwargs, inputs, call_kwargs):
    model = _model(layer_cls(**init_kwargs), inputs, call_kwargs)
    if not model.trainable_weights:
        return
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
    target = np.ones(model.outputs[0].shape[-1:], "float32")
    target = np.broadcast_to(
        target, next(iter(_as_kwargs(inputs).values())).shape[:2] + target.shape
    )
    history = model.fit(_as_kwargs(inputs), target, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(before, after))


def _check_policy(layer_cls, init_kwargs, inputs, call_kwargs, policy):
    layer = layer_cls(**init_kwargs, dtype=policy)
    outputs = _call(layer, inputs, call_kwargs)
    compute_dtype = keras.DTypePolicy(policy).compute_dtype
    assert keras.backend.standardize_dtype(outputs.dtype) == compute_dtype
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(outputs)))
    for sublayer in layer._flatten_layers():
        assert sublayer.compute_dtype == compute_dtype, sublayer.name
        for weight in sublayer.trainable_weights:
            assert weight.dtype == "float32", weight.path
