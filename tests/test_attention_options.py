"""The options of the attention layers, against NumPy.

`num_key_value_heads`, `sliding_window`, `use_gate`, `rotary_embedding`,
`use_output_bias`, `use_query_key_norm`, `attention_logit_soft_cap`,
`attention_scale`, `rotary_fraction`, `use_alibi` and `alibi_slope_scale`
(Falcon's ALiBi, added before the scale), alone and combined,
on both attention layers and on each attention path (fused where the
backend has a kernel, explicit, chunked), against the NumPy reference of
tests/reference.py, written from the equations: grouped-query attention
(query head `i` reads key/value head
`i // (num_heads // num_key_value_heads)`), a `|i - j| < sliding_window`
band (with the causal mask, the Mistral window), a sigmoid gate of the
query on the heads' outputs, and so on. Cached decoding equals the full
call, with a cache of `num_key_value_heads` heads; the override point
`_compute_attention` changes the scores on every path; the default path
runs none of the options' ops; rotary positions are refused where they
cannot hold.
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
from tests.reference import alibi_slopes
from tests.reference import attention_with_options

B, T, S, D, HEADS, KEY_DIM = 2, 7, 6, 24, 4, 4
BACKEND = keras.backend.backend()


def _rotary():
    return keras_hub.layers.RotaryEmbedding()


OPTIONS = {
    "gqa": dict(num_key_value_heads=2),
    "mqa": dict(num_key_value_heads=1),
    "window": dict(sliding_window=3),
    "causal_window": dict(sliding_window=3, use_causal_mask=True),
    "gate": dict(use_gate=True),
    "rotary": dict(rotary_embedding=_rotary()),
    "no_output_bias": dict(use_output_bias=False),
    "output_bias_only": dict(use_bias=False, use_output_bias=True),
    "query_key_norm": dict(use_query_key_norm=True),
    "soft_cap": dict(attention_logit_soft_cap=0.5),
    "scale": dict(attention_scale=0.9),
    "partial_rotary": dict(rotary_embedding=_rotary(), rotary_fraction=0.5),
    "alibi": dict(use_alibi=True),
    "causal_alibi": dict(use_alibi=True, use_causal_mask=True),
    "scaled_alibi": dict(
        use_alibi=True, use_causal_mask=True, alibi_slope_scale=2.5
    ),
    "all": dict(
        num_key_value_heads=2,
        sliding_window=4,
        use_causal_mask=True,
        use_gate=True,
        rotary_embedding=_rotary(),
        rotary_fraction=0.5,
        use_output_bias=False,
        use_query_key_norm=True,
        attention_logit_soft_cap=2.0,
        attention_scale=0.7,
        use_alibi=True,
        alibi_slope_scale=0.5,
    ),
}


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(B, T, D)).astype("float32")
    value = rng.normal(size=(B, S, D)).astype("float32")
    return query, value


def _randomize_norms(layer):
    """Query/key norm scales away from their initial ones."""
    if layer.use_query_key_norm:
        rng = np.random.default_rng(3)
        for norm in (layer.query_norm, layer.key_norm):
            norm.scale.assign(rng.uniform(0.5, 1.5, norm.scale.shape))


def _skip_fused_on_tensorflow(path):
    if path == "fused" and BACKEND == "tensorflow":
        pytest.skip("TensorFlow has no fused attention kernel")


@pytest.mark.parametrize("path", list(ATTENTION_PATHS))
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("layer_name", ["self", "cross"])
def test_option_matches_numpy_reference(layer_name, option, path):
    _skip_fused_on_tensorflow(path)
    kwargs = dict(key_dim=KEY_DIM, **OPTIONS[option], **ATTENTION_PATHS[path])
    query, value = _inputs()
    query_mask = padding_masks(T, (T, 5))
    if layer_name == "self":
        layer = keras_mha.MultiHeadSelfAttention(HEADS, **kwargs)
        layer.build(query.shape)
        _randomize_norms(layer)
        outputs = layer(query, mask=query_mask)
        expected = attention_with_options(
            layer, query, query, query_mask, query_mask
        )
    else:
        layer = keras_mha.MultiHeadAttention(HEADS, **kwargs)
        layer.build(query.shape, value.shape)
        _randomize_norms(layer)
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
@pytest.mark.parametrize("option", ["causal_alibi", "scaled_alibi", "all"])
def test_cached_decoding_equals_the_full_call(option, path):
    _skip_fused_on_tensorflow(path)
    layer = keras_mha.MultiHeadSelfAttention(
        HEADS, key_dim=KEY_DIM, **OPTIONS[option], **ATTENTION_PATHS[path]
    )
    query, _ = _inputs(1)
    layer.build(query.shape)
    _randomize_norms(layer)
    full = to_numpy(layer(query))
    cache = layer.get_initial_cache(B, T)
    # num_key_value_heads / num_heads the size of a full cache.
    heads = layer.num_key_value_heads or HEADS
    assert tuple(cache.shape) == (B, 2, heads, T, KEY_DIM)
    steps, index = [], 0
    # Uneven steps: a prompt of 3, then one token at a time.
    for length in (3, 1, 1, 1, 1):
        step, cache = layer(
            query[:, index : index + length],
            cache=cache,
            cache_update_index=index,
        )
        steps.append(to_numpy(step))
        index += length
    np.testing.assert_allclose(
        np.concatenate(steps, axis=1), full, rtol=1e-4, atol=1e-5
    )


def test_cross_attention_cache_with_options_equals_the_full_call():
    layer = keras_mha.MultiHeadAttention(
        HEADS,
        key_dim=KEY_DIM,
        use_query_key_norm=True,
        attention_logit_soft_cap=1.0,
        use_alibi=True,
    )
    query, value = _inputs(2)
    layer.build(query.shape, value.shape)
    _randomize_norms(layer)
    full = to_numpy(layer(query, value))
    cached = layer(query, cache=layer.compute_cache(value))[0]
    np.testing.assert_allclose(to_numpy(cached), full, rtol=1e-4, atol=1e-5)


def test_alibi_slopes_are_the_standard_ones():
    from keras_mha._attention import alibi_slopes as ours

    # Eight heads: 1/2, 1/4, ... 1/256, as in the paper.
    np.testing.assert_allclose(ours(8), 2.0 ** -np.arange(1, 9))
    for heads in (1, 3, 4, 6, 12):
        np.testing.assert_allclose(ours(heads), alibi_slopes(heads))


def test_alibi_matches_keras_hub_alibi_bias():
    """The same probabilities as keras_hub's AlibiBias on causal logits."""
    heads, length = 6, 5
    layer = keras_mha.MultiHeadSelfAttention(
        heads, key_dim=2, use_alibi=True, use_causal_mask=True
    )
    x, _ = _inputs(4)
    _, scores = layer(x[:, :length], return_attention_scores=True)
    plain = keras_mha.MultiHeadSelfAttention(
        heads, key_dim=2, use_causal_mask=True
    )
    plain.build(x[:, :length].shape)
    plain.set_weights(layer.get_weights())
    # keras_hub adds its bias to (b, n, t, s) logits; recover the logits
    # of the plain layer from its probabilities up to a row constant.
    _, plain_scores = plain(x[:, :length], return_attention_scores=True)
    logits = np.log(np.maximum(to_numpy(plain_scores), 1e-30))
    biased = to_numpy(keras_hub.layers.AlibiBias()(logits))
    causal = np.tril(np.ones((length, length), bool))
    biased = np.where(causal, biased, -np.inf)
    expected = np.exp(biased - biased.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(to_numpy(scores), expected, rtol=1e-4, atol=1e-6)


class _DistanceBias(keras_mha.MultiHeadSelfAttention):
    """Subtracts |i - j| from every logit: one method changes the scores."""

    def _compute_attention(
        self,
        query,
        key,
        value,
        masks,
        training=None,
        return_attention_scores=False,
        bias=None,
    ):
        i = keras.ops.arange(keras.ops.shape(query)[2])[:, None]
        j = keras.ops.arange(keras.ops.shape(key)[2])[None]
        bias = -keras.ops.cast(keras.ops.abs(i - j), "float32")
        return super()._compute_attention(
            query, key, value, masks, training, return_attention_scores, bias
        )


@pytest.mark.parametrize("path", list(ATTENTION_PATHS))
def test_overriding_compute_attention_changes_the_scores(path):
    _skip_fused_on_tensorflow(path)
    layer = _DistanceBias(HEADS, key_dim=KEY_DIM, **ATTENTION_PATHS[path])
    query, _ = _inputs(5)
    layer.build(query.shape)
    i, j = np.arange(T)[:, None], np.arange(T)[None]
    expected = attention_with_options(
        layer, query, query, bias=-np.abs(i - j).astype("float32")
    )
    np.testing.assert_allclose(
        to_numpy(layer(query)), expected, rtol=1e-4, atol=1e-5
    )
    # The scores differ from those of the same weights without the bias.
    assert not np.allclose(
        expected, attention_with_options(layer, query, query)
    )


def test_default_path_runs_no_option_op(monkeypatch):
    """No tanh (soft cap), no RMS norm, no bias, no concatenation."""

    def refuse(*args, **kwargs):
        raise AssertionError("an option's op ran on the default path")

    layer = keras_mha.MultiHeadSelfAttention(HEADS, flash_attention=False)
    query, _ = _inputs()
    layer.build(query.shape)
    for name in ("tanh", "rms_normalization", "concatenate"):
        monkeypatch.setattr(keras.ops, name, refuse)
    layer(query, mask=padding_masks(T, (T, 5)))
    # The weights of before the options: qkv and output, kernel and bias.
    assert len(layer.trainable_weights) == 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_key_value_heads=3), "num_key_value_heads=3 must divide"),
        (dict(num_key_value_heads=0), "num_key_value_heads"),
        (dict(sliding_window=0), "sliding_window"),
        (dict(use_gate="yes"), "use_gate"),
        (dict(rotary_embedding="rope"), "rotary_embedding"),
        (dict(use_output_bias="no"), "use_output_bias"),
        (dict(use_query_key_norm=1), "use_query_key_norm"),
        (dict(query_key_norm_epsilon=0.0), "query_key_norm_epsilon"),
        (dict(attention_logit_soft_cap=-1.0), "attention_logit_soft_cap"),
        (dict(attention_scale=0), "attention_scale"),
        (dict(rotary_fraction=1.5), "rotary_fraction"),
        (dict(rotary_fraction=0.5), "needs one"),
        (
            dict(rotary_embedding=_rotary(), rotary_fraction=0.3, key_dim=4),
            "rotates 1",
        ),
        (dict(use_alibi="yes"), "use_alibi"),
        (dict(use_alibi=True, alibi_slope_scale=0.0), "alibi_slope_scale"),
        (dict(alibi_slope_scale=0.5), "needs use_alibi=True"),
    ],
    ids=[
        "kv_heads_not_dividing",
        "kv_heads_zero",
        "window_zero",
        "gate",
        "rotary",
        "output_bias",
        "qk_norm",
        "qk_norm_epsilon",
        "soft_cap",
        "scale",
        "fraction_range",
        "fraction_without_rotary",
        "fraction_odd",
        "alibi",
        "alibi_slope_scale",
        "slope_scale_without_alibi",
    ],
)
def test_bad_options_name_the_argument(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        keras_mha.MultiHeadSelfAttention(HEADS, **kwargs)


def test_odd_rotary_width_from_the_input_width_is_refused_at_build():
    layer = keras_mha.MultiHeadSelfAttention(
        2, rotary_embedding=_rotary(), rotary_fraction=0.5
    )
    with pytest.raises(ValueError, match="rotary_fraction"):
        layer.build((B, T, 12))  # key_dim 6: 3 rotated dims


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
    projections = 2 if layer_cls is keras_mha.MultiHeadSelfAttention else 6
    run_layer_test(
        layer_cls,
        {"num_heads": HEADS, "key_dim": KEY_DIM, **OPTIONS["all"]},
        inputs,
        expected_output_shape=(B, T, D),
        # Projections and the gate with biases, the output kernel alone,
        # the two norm scales.
        expected_num_trainable_weights=projections + 2 + 1 + 2,
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("path", list(ATTENTION_PATHS))
@pytest.mark.parametrize("option", ["all", "causal_alibi"])
def test_mixed_precision_is_close_to_float32(option, path, policy):
    _skip_fused_on_tensorflow(path)
    kwargs = dict(key_dim=KEY_DIM, **OPTIONS[option], **ATTENTION_PATHS[path])
    query, _ = _inputs(6)
    reference = keras_mha.MultiHeadSelfAttention(HEADS, **kwargs)
    expected = to_numpy(reference(query))
    layer = keras_mha.MultiHeadSelfAttention(HEADS, dtype=policy, **kwargs)
    layer.build(query.shape)
    layer.set_weights(reference.get_weights())
    outputs = to_numpy(keras.ops.cast(layer(query), "float32"))
    assert np.all(np.isfinite(outputs))
    np.testing.assert_allclose(outputs, expected, rtol=0.05, atol=0.05)


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
