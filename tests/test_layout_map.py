"""Model parallelism with `keras_mha.get_layout_map` equals one device.

The model-parallel run needs 8 JAX host devices, which must be configured
before JAX starts, so it runs in a fresh process (`python -m
tests.test_layout_map WORKDIR`): one encoder-decoder model on one device,
then the same model, from the same weights, under
`keras.distribution.ModelParallel` on a (2 batch x 4 model) mesh. Both give
the same outputs and the same weights after one training step, and the
distributed kernels are really split into four.
"""

import json
import os
import sys

import keras
import numpy as np
import pytest

import keras_mha
from tests.layer_test_case import run_on_jax_devices

BACKEND = keras.backend.backend()
# Heads and feed-forward units divisible by the model axis (4); distinct
# sizes so that a kernel split on the wrong axis cannot pass.
VOCAB, WIDTH, HEADS, FFN, BATCH, LENGTH = 19, 16, 4, 12, 8, 6
SPLIT_KERNELS = {
    "encoder/self_attention/qkv/kernel": (1, 4),
    "decoder/cross_attention/query/kernel": (1, 4),
    "decoder/cross_attention/attention_output/kernel": (0, 4),
    "encoder/ffn_intermediate/kernel": (1, 4),
    "encoder/ffn_output/kernel": (0, 4),
}


def _mesh(devices, shape=(2, 4)):
    return keras.distribution.DeviceMesh(shape, ("batch", "model"), devices)


def test_layout_map_shards_every_kernel_of_the_layers():
    mesh = _mesh(["cpu:0"] * 8)
    layout_map = keras_mha.get_layout_map(mesh)
    model = build_model()
    sharded = {}
    for variable in model.weights:
        layout = layout_map[variable.path]
        if layout is not None:
            sharded[variable.path] = tuple(layout.axes)
    for path, (axis, _) in SPLIT_KERNELS.items():
        assert sharded[path][axis] == "model", (path, sharded[path])
    # Every projection kernel of every attention layer and FFN is covered.
    kernels = [
        v.path
        for v in model.weights
        if v.path.endswith("kernel") and "logits" not in v.path
    ]
    assert sorted(kernels) == sorted(p for p in sharded if "kernel" in p)
    assert not any("layer_norm" in path for path in sharded)


def test_layout_map_shards_the_gate_of_a_gated_feed_forward():
    """`ffn_gate` is split by columns like `ffn_intermediate`."""
    layout_map = keras_mha.get_layout_map(_mesh(["cpu:0"] * 8))
    block = keras_mha.TransformerEncoderBlock(
        HEADS, intermediate_dim=FFN, use_gated_feedforward=True, name="gated"
    )
    block.build((BATCH, LENGTH, WIDTH))
    layouts = {
        v.path: layout_map[v.path] for v in block.weights if "ffn_" in v.path
    }
    for name in ("ffn_gate", "ffn_intermediate"):
        assert tuple(layouts[f"gated/{name}/kernel"].axes) == (None, "model")
        assert tuple(layouts[f"gated/{name}/bias"].axes) == ("model",)
    assert tuple(layouts["gated/ffn_output/kernel"].axes) == ("model", None)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"model_parallel_dim_name": "heads"}, "model_parallel_dim_name"),
        ({"data_parallel_dim_name": "data"}, "data_parallel_dim_name"),
    ],
    ids=["model_axis", "data_axis"],
)
def test_layout_map_rejects_unknown_axis_names(kwargs, message):
    with pytest.raises(ValueError, match=message):
        keras_mha.get_layout_map(_mesh(["cpu:0"] * 8), **kwargs)


def test_layout_map_rejects_a_non_mesh():
    with pytest.raises(TypeError, match="device_mesh"):
        keras_mha.get_layout_map((2, 4))


def _build_under(mesh, make):
    """Builds `make()` under `ModelParallel` with the package's layout."""
    distribution = keras.distribution.ModelParallel(
        layout_map=keras_mha.get_layout_map(mesh), batch_dim_name="batch"
    )
    with distribution.scope():
        layer = make()
        if isinstance(layer, keras_mha.MultiHeadAttention):
            layer.build((2, 5, 12), (2, 6, 12))
        else:
            layer.build((2, 5, 12))
    return layer


INDIVISIBLE = [
    ("self_heads", lambda: keras_mha.MultiHeadSelfAttention(4), "num_heads=4"),
    (
        "self_kv_heads",
        lambda: keras_mha.MultiHeadSelfAttention(6, num_key_value_heads=2),
        "num_key_value_heads=2",
    ),
    ("cross_heads", lambda: keras_mha.MultiHeadAttention(4), "num_heads=4"),
    (
        "block_heads",
        lambda: keras_mha.TransformerDecoderBlock(4, intermediate_dim=6),
        "num_heads=4",
    ),
]


@pytest.mark.parametrize(
    "make, message",
    [case[1:] for case in INDIVISIBLE],
    ids=[case[0] for case in INDIVISIBLE],
)
def test_a_split_the_mesh_axis_does_not_divide_names_the_argument(
    make, message
):
    # A (1 batch x 3 model) mesh: the first kernel the layer makes fails
    # the check, before the backend places any variable.
    mesh = _mesh(["cpu:0"] * 3, shape=(1, 3))
    with pytest.raises(ValueError, match=message) as info:
        _build_under(mesh, make)
    assert "multiple of 3, the size of the mesh axis 'model'" in str(info.value)


@pytest.mark.skipif(
    BACKEND == "jax",
    reason="JAX places each variable on the mesh's devices: the 8-device "
    "run of test_model_parallel_matches_one_device checks this case",
)
def test_feed_forward_units_the_mesh_axis_does_not_divide_are_named():
    mesh = _mesh(["cpu:0"] * 3, shape=(1, 3))
    make = lambda units: keras_mha.TransformerEncoderBlock(
        3, intermediate_dim=units
    )
    with pytest.raises(ValueError, match="intermediate_dim=7"):
        _build_under(mesh, lambda: make(7))
    assert _build_under(mesh, lambda: make(6)).built


def indivisible_feed_forward_message():
    """The error of 7 feed-forward units over 3 of the 8 devices."""
    devices = keras.distribution.list_devices("cpu")[:3]
    try:
        _build_under(
            _mesh(devices, shape=(1, 3)),
            lambda: keras_mha.TransformerEncoderBlock(3, intermediate_dim=7),
        )
    except ValueError as error:
        return str(error)
    return None


def build_model():
    keras.utils.set_random_seed(0)
    source = keras.Input((None,), dtype="int32")
    target = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, WIDTH, mask_zero=True)(source)
    x = keras_mha.SinusoidalPositionEncoding()(x)
    x = keras_mha.TransformerEncoderBlock(
        HEADS, intermediate_dim=FFN, name="encoder"
    )(x)
    y = keras.layers.Embedding(VOCAB, WIDTH, mask_zero=True)(target)
    y = keras_mha.TransformerDecoderBlock(
        HEADS, intermediate_dim=FFN, name="decoder"
    )(y, x)
    logits = keras.layers.Dense(VOCAB, name="logits")(y)
    return keras.Model([source, target], logits)


def _data():
    rng = np.random.default_rng(1)
    source = rng.integers(1, VOCAB, (BATCH, LENGTH)).astype("int32")
    target = rng.integers(1, VOCAB, (BATCH, LENGTH)).astype("int32")
    source[::2, -2:] = 0  # Padding in half of the rows.
    return (source, target), target


def _run(initial=None):
    """Outputs, and weights after one SGD step, of `build_model()`."""
    model = build_model()
    if initial is not None:
        model.set_weights(initial)
    initial = [keras.ops.convert_to_numpy(w) for w in model.weights]
    inputs, targets = _data()
    outputs = keras.ops.convert_to_numpy(model(inputs))
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.train_on_batch(inputs, targets)
    trained = [keras.ops.convert_to_numpy(w) for w in model.weights]
    return model, initial, outputs, trained


def model_parallel_worker(workdir):
    """Single device vs `ModelParallel` on a (2, 4) mesh of 8 CPUs."""
    import jax

    _, initial, single_outputs, single = _run()
    devices = keras.distribution.list_devices("cpu")
    mesh = _mesh(devices)
    keras.distribution.set_distribution(
        keras.distribution.ModelParallel(
            layout_map=keras_mha.get_layout_map(mesh), batch_dim_name="batch"
        )
    )
    model, _, parallel_outputs, parallel = _run(initial)
    np.savez(
        os.path.join(workdir, "runs.npz"),
        single_outputs=single_outputs,
        parallel_outputs=parallel_outputs,
        initial=np.concatenate([w.ravel() for w in initial]),
        single=np.concatenate([w.ravel() for w in single]),
        parallel=np.concatenate([w.ravel() for w in parallel]),
    )
    shards = {
        v.path: list(v.value.addressable_shards[0].data.shape)
        for v in model.weights
        if v.path in SPLIT_KERNELS
    }
    shapes = {v.path: list(v.shape) for v in model.weights}
    keras.distribution.set_distribution(None)
    print(
        json.dumps(
            {
                "indivisible_ffn": indivisible_feed_forward_message(),
                "jax_devices": jax.device_count(),
                "shard_shapes": shards,
                "shapes": {p: shapes[p] for p in shards},
            }
        )
    )


@pytest.mark.skipif(
    BACKEND != "jax", reason="keras.distribution needs the JAX backend"
)
def test_model_parallel_matches_one_device(tmp_path):
    summary = run_on_jax_devices("tests.test_layout_map", tmp_path)
    assert summary["jax_devices"] == 8
    assert "intermediate_dim=7" in summary["indivisible_ffn"]
    assert set(summary["shard_shapes"]) == set(SPLIT_KERNELS)
    for path, (axis, parts) in SPLIT_KERNELS.items():
        expected = list(summary["shapes"][path])
        expected[axis] //= parts
        assert summary["shard_shapes"][path] == expected, path
    with np.load(tmp_path / "runs.npz") as runs:
        np.testing.assert_allclose(
            runs["parallel_outputs"],
            runs["single_outputs"],
            rtol=1e-5,
            atol=1e-5,
        )
        np.testing.assert_allclose(
            runs["parallel"], runs["single"], rtol=1e-5, atol=1e-5
        )
        assert np.abs(runs["single"] - runs["initial"]).max() > 1e-2


if __name__ == "__main__":
    model_parallel_worker(sys.argv[1])
