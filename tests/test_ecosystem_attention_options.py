"""`num_key_value_heads`, `sliding_window` and `use_gate` against NumPy.

Each option, alone and combined, on both attention layers and on each
attention path (the fused kernel where the backend has one, the explicit
softmax, and chunked attention), equals the NumPy reference of
tests/reference.py, written from the equations: grouped-query attention
(query head `i` reads key/value head
`i // (num_heads // num_key_value_heads)`), a `|i - j| < sliding_window`
band (with the causal mask, the Mistral window), and a sigmoid gate of the
query on the heads' outputs. Cached decoding with all options equals the
full call, with a cache of `num_key_value_heads` heads.
"""

import keras
import keras_hub
import numpy as np
import pytest

import keras_mha
from tests.layer_test_case import ATTENTION_PATHS
from tests.layer_test_case import padding_masks
from tests.layer_test_case import run_layer_test
from tests.layer_test_case import to_numpy
from tests.reference import attention_with_options

B, T, S, D, HEADS, KEY_DIM = 2, 7, 6, 24, 4, 2
BACKEND = keras.backend.backend()
OPTIONS = {
    "gqa": dict(num_key_value_heads=2),
    "mqa": dict(num_key_value_heads=1),
    "window": dict(sliding_window=3),
    "causal_window": dict(sliding_window=3, use_causal_mask=True),
    "gate": dict(use_gate=True),
    "rotary": dict(rotary_embedding=keras_hub.layers.RotaryEmbedding()),
    "all": dict(
        num_key_value_heads=2,
        sliding_window=2,
        use_causal_mask=True,
        use_gate=True,
        rotary_embedding=keras_hub.layers.RotaryEmbedding(),
    ),
}


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(B, T, D)).astype("float32")
    value = rng.normal(size=(B, S, D)).astype("float32")
    return query, value


@pytest.mark.parametrize("path", list(ATTENTION_PATHS))
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("layer_name", ["self", "cross"])
def test_option_matches_numpy_reference(layer_name, option, path):
    if path == "fused" and BACKEND == "tensorflow":
        pytest.skip("TensorFlow has no fused attention kernel")
    kwargs = dict(key_dim=KEY_DIM, **OPTIONS[option], **ATTENTION_PATHS[path])
    query, value = _inputs()
    query_mask = padding_masks(T, (T, 5))
    if layer_name == "self":
        layer = keras_mha.MultiHeadSelfAttention(HEADS, **kwargs)
        outputs = layer(query, mask=query_mask)
        expected = attention_with_options(
            layer, query, query, query_mask, query_mask
        )
    else:
        layer = keras_mha.MultiHeadAttention(HEADS, **kwargs)
        key_mask = padding_masks(S, (4, S))
        outputs = layer(
            query, value, query_mask=query_mask, value_mask=key_mask
        )
        expected = attention_with_options(
            layer, query, value, query_mask, key_mask
        )
    np.testing.assert_allclose(
        to_numpy(outputs), expected, rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("path", list(ATTENTION_PATHS))
def test_cached_decoding_with_every_option_equals_the_full_call(path):
    if path == "fused" and BACKEND == "tensorflow":
        pytest.skip("TensorFlow has no fused attention kernel")
    layer = keras_mha.MultiHeadSelfAttention(
        HEADS, key_dim=KEY_DIM, **OPTIONS["all"], **ATTENTION_PATHS[path]
    )
    query, _ = _inputs(1)
    full = to_numpy(layer(query))
    cache = layer.get_initial_cache(B, T)
    # num_key_value_heads / num_heads the size of a full cache.
    assert tuple(cache.shape) == (B, 2, 2, T, KEY_DIM)
    steps = []
    for index in range(T):
        step, cache = layer(
            query[:, index : index + 1], cache=cache, cache_update_index=index
        )
        steps.append(to_numpy(step))
    np.testing.assert_allclose(
        np.concatenate(steps, axis=1), full, rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_key_value_heads=3), "num_key_value_heads=3 must divide"),
        (dict(num_key_value_heads=0), "num_key_value_heads"),
        (dict(sliding_window=0), "sliding_window"),
        (dict(use_gate="yes"), "use_gate"),
        (dict(rotary_embedding="rope"), "rotary_embedding"),
    ],
    ids=[
        "kv_heads_not_dividing",
        "kv_heads_zero",
        "window_zero",
        "gate",
        "rotary",
    ],
)
def test_bad_options_name_the_argument(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        keras_mha.MultiHeadSelfAttention(HEADS, **kwargs)


@pytest.mark.parametrize(
    "layer_cls, inputs",
    [
        (keras_mha.MultiHeadSelfAttention, np.ones((B, T, D), "float32")),
        (
            keras_mha.MultiHeadAttention,
            {
                "query": np.ones((B, T, D), "float32"),
                "value": np.ones((B, S, D), "float32"),
            },
        ),
    ],
    ids=["self", "cross"],
)
def test_layer_contract_with_every_option(layer_cls, inputs, tmp_path):
    """Config round trip, `.keras` reload, mixed precision, fit step."""
    fused = 2 if layer_cls is keras_mha.MultiHeadSelfAttention else 6
    run_layer_test(
        layer_cls,
        {"num_heads": HEADS, **OPTIONS["all"]},
        inputs,
        expected_output_shape=(B, T, D),
        # Projections and the gate, each a kernel and a bias.
        expected_num_trainable_weights=fused + 2 + 2,
        tmp_path=tmp_path,
    )


def _rotary_cross_attention():
    layer = keras_mha.MultiHeadAttention(
        HEADS,
        key_dim=KEY_DIM,
        rotary_embedding=keras_hub.layers.RotaryEmbedding(),
    )
    query, value = _inputs()
    layer(query, value)
    return layer, query, value


def test_rotary_with_a_precomputed_cross_attention_cache_is_refused():
    # Its queries would all be rotated as position 0 at every step.
    layer, query, value = _rotary_cross_attention()
    with pytest.raises(ValueError, match="`compute_cache` cannot be used"):
        layer.compute_cache(value)
    cache = layer.get_initial_cache(B, S)
    with pytest.raises(ValueError, match="cache_update_index=None"):
        layer(query[:, 3:4], cache=cache)
    # Without a cache the queries take positions 0 ... t - 1.
    full = to_numpy(layer(query, value))
    step = to_numpy(layer(query[:, :4], value))
    np.testing.assert_allclose(step, full[:, :4], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "layer_cls, kwargs, message",
    [
        (
            keras_mha.MultiHeadSelfAttention,
            dict(num_heads=3),
            r"key_dim=3 \(width 9 // num_heads=3\)",
        ),
        (
            keras_mha.MultiHeadAttention,
            dict(num_heads=2, key_dim=5),
            "key_dim=5",
        ),
    ],
    ids=["self_from_width", "cross_explicit"],
)
def test_rotary_needs_an_even_key_dim_at_build(layer_cls, kwargs, message):
    """At construction when `key_dim` is given, else at build."""
    inputs = keras.Input((T, 9))
    with pytest.raises(
        ValueError, match=rf"`key_dim` expected an even.*{message}"
    ):
        layer = layer_cls(
            rotary_embedding=keras_hub.layers.RotaryEmbedding(), **kwargs
        )
        if layer_cls is keras_mha.MultiHeadSelfAttention:
            layer(inputs)
        else:
            layer(inputs, inputs)


def test_int8_quantize_of_rotary_layers_warns_nothing_of_theirs():
    import warnings

    x = keras.Input((T, D))
    rotary = keras_hub.layers.RotaryEmbedding()
    y = keras_mha.MultiHeadSelfAttention(HEADS, rotary_embedding=rotary)(x)
    y = keras_mha.MultiHeadAttention(HEADS, rotary_embedding=rotary)(y, x)
    model = keras.Model(x, y)
    query, _ = _inputs()
    before = to_numpy(model(query))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.quantize("int8")
    complaints = [
        str(w.message) for w in caught if "quantize" in str(w.message)
    ]
    assert not [c for c in complaints if "RotaryEmbedding" in c], complaints
    assert model.layers[1].qkv_dense.quantization_mode == "int8"
    after = to_numpy(model(query))
    assert np.abs(after - before).max() < 0.1 * np.abs(before).max()
