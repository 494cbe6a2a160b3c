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

B, T, S, D, HEADS, FFN, RANK = 2, 5, 6, 12, 3, 7, 2
HK = D // HEADS


def _np(x):
    return keras.ops.convert_to_numpy(x)


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
            weights[f"{sub.name}/kernel"] = _np(sub.kernel)
            weights[f"{sub.name}/bias"] = _np(sub.bias)
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
    expected = _np(model(inputs))
    layer.enable_lora(RANK)
    trainable = sorted(w.path for w in model.trainable_weights)
    assert trainable == [
        "attention/query/lora_kernel_a",
        "attention/query/lora_kernel_b",
        "attention/value/lora_kernel_a",
        "attention/value/lora_kernel_b",
    ]
    np.testing.assert_allclose(_np(model(inputs)), expected, atol=1e-6)
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
    expected = _np(model(x))
    layer.enable_lora(RANK, targets=targets)
    assert all("lora" in w.path for w in model.trainable_weights)
    np.testing.assert_allclose(_np(model(x)), expected, atol=1e-6)
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
    frozen = {w.path: _np(w) for w in model.weights if "lora" not in w.path}
    _fit(model, inputs)
    for w in model.weights:
        if "lora" not in w.path:
            np.testing.assert_array_equal(_np(w), frozen[w.path], w.path)
    tuned = _np(model(inputs))
    path = tmp_path / "tuned.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(_np(reloaded(inputs)), tuned, atol=1e-5)


def test_bad_targets_name_the_argument():
    _, layer = _self_model()
    with pytest.raises(ValueError, match="targets"):
        layer.enable_lora(RANK, targets=("query_dense",))
    with pytest.raises(ValueError, match="rank"):
        layer.enable_lora(0)
