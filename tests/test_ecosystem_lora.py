"""LoRA fine-tuning of our attention layers and blocks, keras_hub style.

After `enable_lora(rank)` only the low-rank kernels train (nothing else is
trainable), the outputs are unchanged until the first step, training
changes exactly the targeted projections (on the fused query/key/value
kernel of self-attention, exactly the targeted slices), and a fine-tuned
model saves and reloads with the same outputs.
"""

import keras
import numpy as np
import pytest

import keras_mha
from tests.layer_test_case import to_numpy

B, T, S, D, HEADS, FFN, RANK = 2, 5, 6, 12, 3, 7, 2
HK = D // HEADS


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(B, T, D)).astype("float32"),
        rng.normal(size=(B, S, D)).astype("float32"),
    )


def _self_model(**kwargs):
    keras.utils.set_random_seed(0)
    x = keras.Input((T, D))
    layer = keras_mha.MultiHeadSelfAttention(HEADS, name="attention", **kwargs)
    return keras.Model(x, layer(x)), layer


def _cross_model():
    keras.utils.set_random_seed(0)
    q, v = keras.Input((T, D)), keras.Input((S, D))
    layer = keras_mha.MultiHeadAttention(HEADS, name="attention")
    return keras.Model([q, v], layer(q, v)), layer


def _effective(layer):
    """Kernels (LoRA merged) and biases of every projection, by name."""
    weights = {}
    for sub in layer._flatten_layers(include_self=False):
        if isinstance(sub, keras.layers.EinsumDense):
            weights[f"{sub.name}/kernel"] = to_numpy(sub.kernel)
            weights[f"{sub.name}/bias"] = to_numpy(sub.bias)
    return weights


def _fit(model, inputs, steps=5):
    rng = np.random.default_rng(1)
    target = rng.normal(size=model.output.shape[1:]).astype("float32")
    targets = np.broadcast_to(target, (B, *target.shape))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    for _ in range(steps):
        model.train_on_batch(inputs, targets)


def _changed(before, after):
    return {
        name for name in before if not np.array_equal(before[name], after[name])
    }


def test_default_targets_train_only_query_and_value_of_cross_attention():
    model, layer = _cross_model()
    inputs = list(_data())
    expected = to_numpy(model(inputs))
    layer.enable_lora(RANK)
    trainable = sorted(w.path for w in model.trainable_weights)
    assert trainable == [
        "attention/query/lora_kernel_a",
        "attention/query/lora_kernel_b",
        "attention/value/lora_kernel_a",
        "attention/value/lora_kernel_b",
    ]
    np.testing.assert_allclose(to_numpy(model(inputs)), expected, atol=1e-6)
    before = _effective(layer)
    _fit(model, inputs)
    assert _changed(before, _effective(layer)) == {
        "query/kernel",
        "value/kernel",
    }


@pytest.mark.parametrize(
    "targets, changed",
    [
        (("query", "value"), {"query", "value"}),
        (("key",), {"key"}),
        (("value", "output"), {"value", "output"}),
    ],
    ids=["query_value", "key", "value_output"],
)
@pytest.mark.parametrize("kv_heads", [None, 1], ids=["mha", "mqa"])
def test_fused_kernel_changes_only_the_targeted_slices(
    targets, changed, kv_heads
):
    model, layer = _self_model(num_key_value_heads=kv_heads)
    x, _ = _data()
    expected = to_numpy(model(x))
    layer.enable_lora(RANK, targets=targets)
    assert all("lora" in w.path for w in model.trainable_weights)
    np.testing.assert_allclose(to_numpy(model(x)), expected, atol=1e-6)
    before = _effective(layer)
    _fit(model, x)
    after = _effective(layer)
    group = HEADS // (kv_heads or HEADS)
    slices = {
        "query": slice(0, group * HK),
        "key": slice(group * HK, (group + 1) * HK),
        "value": slice((group + 1) * HK, None),
    }
    for name, columns in slices.items():
        moved = not np.array_equal(
            before["qkv/kernel"][..., columns],
            after["qkv/kernel"][..., columns],
        )
        assert moved == (name in changed), name
    output_moved = not np.array_equal(
        before["attention_output/kernel"], after["attention_output/kernel"]
    )
    assert output_moved == ("output" in changed)
    for name in ("qkv/bias", "attention_output/bias"):
        np.testing.assert_array_equal(before[name], after[name])


def test_block_lora_trains_only_attention_lora_kernels(tmp_path):
    keras.utils.set_random_seed(0)
    x, e = keras.Input((T, D)), keras.Input((S, D))
    block = keras_mha.TransformerDecoderBlock(
        HEADS, intermediate_dim=FFN, name="block"
    )
    model = keras.Model([x, e], block(x, e))
    inputs = list(_data())
    block.enable_lora(RANK)
    paths = sorted(w.path for w in model.trainable_weights)
    # Self-attention: one fused update; cross-attention: query and value.
    assert paths == [
        "block/cross_attention/query/lora_kernel_a",
        "block/cross_attention/query/lora_kernel_b",
        "block/cross_attention/value/lora_kernel_a",
        "block/cross_attention/value/lora_kernel_b",
        "block/self_attention/qkv/lora_kernel_a",
        "block/self_attention/qkv/lora_kernel_b",
    ]
    frozen = {
        w.path: to_numpy(w) for w in model.weights if "lora" not in w.path
    }
    _fit(model, inputs)
    for w in model.weights:
        if "lora" not in w.path:
            np.testing.assert_array_equal(to_numpy(w), frozen[w.path], w.path)
    tuned = to_numpy(model(inputs))
    path = tmp_path / "tuned.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(to_numpy(reloaded(inputs)), tuned, atol=1e-5)


def test_bad_targets_name_the_argument():
    _, layer = _self_model()
    with pytest.raises(ValueError, match="targets"):
        layer.enable_lora(RANK, targets=("query_dense",))
    with pytest.raises(ValueError, match="rank"):
        layer.enable_lora(0)


def _layer(kind, **kwargs):
    """A built layer or block of each kind, in a model."""
    keras.utils.set_random_seed(0)
    x, e = keras.Input((T, D)), keras.Input((S, D))
    if kind == "self_attention":
        layer = keras_mha.MultiHeadSelfAttention(HEADS, name="layer", **kwargs)
        layer(x)
    elif kind == "cross_attention":
        layer = keras_mha.MultiHeadAttention(HEADS, name="layer", **kwargs)
        layer(x, e)
    elif kind == "encoder_block":
        layer = keras_mha.TransformerEncoderBlock(
            HEADS, intermediate_dim=FFN, name="layer"
        )
        layer(x)
    else:
        layer = keras_mha.TransformerDecoderBlock(
            HEADS, intermediate_dim=FFN, name="layer"
        )
        layer(x, e)
    return layer


def _state(layer):
    """Everything `enable_lora` may change: flags, weights, constraints."""
    layers = [layer, *layer._flatten_layers(include_self=False)]
    return {
        "layers": [(sub.name, sub.trainable) for sub in layers],
        "trainable": sorted(w.path for w in layer.trainable_weights),
        "weights": {
            w.path: (w.trainable, to_numpy(w), repr(w.constraint))
            for w in layer.weights
        },
        "lora": [getattr(sub, "lora_enabled", False) for sub in layers],
    }


def _assert_same_state(before, after):
    assert after["layers"] == before["layers"]
    assert after["trainable"] == before["trainable"]
    assert after["lora"] == before["lora"]
    assert after["weights"].keys() == before["weights"].keys()
    for path, (trainable, value, constraint) in before["weights"].items():
        assert after["weights"][path][0] == trainable, path
        np.testing.assert_array_equal(after["weights"][path][1], value, path)
        assert after["weights"][path][2] == constraint, path


KINDS = ["self_attention", "cross_attention", "encoder_block", "decoder_block"]
REFUSED = [
    ("again", dict(rank=RANK), ValueError, "already enabled"),
    (
        "bogus_target",
        dict(rank=RANK, targets=("bogus",)),
        ValueError,
        "targets",
    ),
    ("no_targets", dict(rank=RANK, targets=()), ValueError, "targets"),
    ("short_name", dict(rank=RANK, targets=("q",)), ValueError, "targets"),
    ("number_targets", dict(rank=RANK, targets=3), TypeError, "targets"),
    ("rank_0", dict(rank=0), ValueError, "rank"),
    ("rank_1.5", dict(rank=1.5), TypeError, "rank"),
    ("alpha_-1", dict(rank=RANK, lora_alpha=-1.0), ValueError, "lora_alpha"),
]


@pytest.mark.parametrize(
    "case, kwargs, error, match", REFUSED, ids=[c[0] for c in REFUSED]
)
@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_enable_lora_changes_nothing(
    kind, case, kwargs, error, match
):
    layer = _layer(kind)
    if case == "again":
        layer.enable_lora(RANK)
    before = _state(layer)
    with pytest.raises(error, match=match):
        layer.enable_lora(**kwargs)
    _assert_same_state(before, _state(layer))


@pytest.mark.parametrize("kind", ["self_attention", "cross_attention"])
def test_lora_on_a_constrained_kernel_is_refused_and_changes_nothing(kind):
    layer = _layer(kind, kernel_constraint="non_neg")
    before = _state(layer)
    with pytest.raises(ValueError, match="kernel_constraint"):
        layer.enable_lora(RANK)
    _assert_same_state(before, _state(layer))
    assert len(layer.trainable_weights) == len(layer.weights)


@pytest.mark.parametrize("kind", KINDS)
def test_a_second_enable_lora_adds_targets_and_all_keep_training(kind):
    layer = _layer(kind)
    layer.enable_lora(RANK)
    first = sorted(w.path for w in layer.trainable_weights)
    layer.enable_lora(RANK, targets=("output",))
    paths = sorted(w.path for w in layer.trainable_weights)
    added = sorted(set(paths) - set(first))
    assert set(first) <= set(paths)
    assert added and all("attention_output/lora_kernel" in p for p in added)
    assert all("lora_kernel" in p for p in paths)
    # Each attention layer: its first update and its output update.
    attentions = 1 + kind.startswith("decoder")
    assert len(added) == 2 * attentions
    # Every enabled update moves in training; nothing else does.
    inputs = list(_data())
    if kind in ("self_attention", "encoder_block"):
        inputs = inputs[0]
    model = _model_of(layer, kind)
    frozen = {
        w.path: to_numpy(w) for w in layer.weights if "lora" not in w.path
    }
    lora = {
        w.path: to_numpy(w) for w in layer.weights if "lora_kernel_b" in w.path
    }
    _fit(model, inputs)
    for w in layer.weights:
        if "lora" not in w.path:
            np.testing.assert_array_equal(to_numpy(w), frozen[w.path], w.path)
        elif w.path in lora:
            assert not np.array_equal(to_numpy(w), lora[w.path]), w.path


def _model_of(layer, kind):
    x, e = keras.Input((T, D)), keras.Input((S, D))
    if kind in ("self_attention", "encoder_block"):
        return keras.Model(x, layer(x))
    return keras.Model([x, e], layer(x, e))


def test_fused_targets_added_later_are_refused_naming_the_kernel():
    layer = _layer("self_attention")
    layer.enable_lora(RANK, targets=("query",))
    before = _state(layer)
    with pytest.raises(ValueError, match="`qkv` of layer `layer`"):
        layer.enable_lora(RANK, targets=("key",))
    _assert_same_state(before, _state(layer))
