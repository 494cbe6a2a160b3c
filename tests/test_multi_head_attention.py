import keras
import numpy as np
import pytest

import keras_mha
from tests import reference
from tests.layer_test_case import decode_in_steps
from tests.layer_test_case import run_layer_test
from tests.layer_test_case import to_numpy

# Distinct sizes: the key sequence (4) is shorter than the query one (5), and
# the value width (8) differs from the query width (12).
BATCH, QUERY_LEN, KEY_LEN, WIDTH, VALUE_WIDTH, HEADS = 2, 5, 4, 12, 8, 3


def _query(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(BATCH, QUERY_LEN, WIDTH)).astype("float32")


def _value(seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(BATCH, KEY_LEN, VALUE_WIDTH)).astype("float32")


@pytest.mark.parametrize(
    "kwargs, width_out",
    [({}, WIDTH), ({"key_dim": 2, "value_dim": 6, "output_dim": 7}, 7)],
    ids=["default", "custom_dims"],
)
@pytest.mark.parametrize(
    "call_kwargs",
    [{}, {"return_attention_scores": True}],
    ids=["outputs", "with_scores"],
)
def test_layer_conventions(kwargs, width_out, call_kwargs, tmp_path):
    run_layer_test(
        keras_mha.MultiHeadAttention,
        {"num_heads": HEADS, **kwargs},
        {"query": _query(), "value": _value()},
        expected_output_shape=(BATCH, QUERY_LEN, width_out),
        expected_num_trainable_weights=8,
        call_kwargs=call_kwargs,
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize(
    "return_scores", [False, True], ids=["fused", "explicit"]
)
def test_matches_numpy_reference_with_key_padding(return_scores):
    layer = keras_mha.MultiHeadAttention(
        HEADS, bias_initializer="random_normal"
    )
    value_mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
    out = layer(
        _query(),
        _value(),
        value_mask=value_mask,
        return_attention_scores=return_scores,
    )
    expected, expected_probs = reference.attention(
        _query(),
        _value(),
        *reference.weights_of(layer),
        mask=value_mask[:, None, :],
    )
    if return_scores:
        out, scores = out
        assert tuple(scores.shape) == (BATCH, HEADS, QUERY_LEN, KEY_LEN)
        np.testing.assert_allclose(to_numpy(scores), expected_probs, atol=1e-5)
    np.testing.assert_allclose(to_numpy(out), expected, atol=1e-5)


def test_separate_key_sequence():
    layer = keras_mha.MultiHeadAttention(HEADS)
    key = np.random.default_rng(5).normal(size=(BATCH, KEY_LEN, 6))
    out = layer(_query(), _value(), key=key.astype("float32"))
    assert tuple(out.shape) == (BATCH, QUERY_LEN, WIDTH)
    assert tuple(layer.key_dense.kernel.shape) == (6, HEADS, WIDTH // HEADS)


def test_implicit_masks_of_query_and_value():
    embed_q = keras.layers.Embedding(10, WIDTH, mask_zero=True)
    embed_v = keras.layers.Embedding(10, VALUE_WIDTH, mask_zero=True)
    layer = keras_mha.MultiHeadAttention(HEADS)
    q_ids = keras.Input((None,), dtype="int32")
    v_ids = keras.Input((None,), dtype="int32")
    out = layer(embed_q(q_ids), embed_v(v_ids))
    assert out._keras_mask is not None  # the query's mask propagates
    model = keras.Model([q_ids, v_ids], out)
    queries = np.array([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]])
    values = np.array([[1, 2, 0, 0], [3, 4, 5, 6]])
    explicit = layer(
        embed_q(queries),
        embed_v(values),
        query_mask=queries != 0,
        value_mask=values != 0,
    )
    np.testing.assert_allclose(
        to_numpy(model([queries, values])), to_numpy(explicit), atol=1e-6
    )


def test_symbolic_scores_have_the_key_length():
    query = keras.Input((QUERY_LEN, WIDTH))
    value = keras.Input((KEY_LEN, VALUE_WIDTH))
    _, scores = keras_mha.MultiHeadAttention(HEADS)(
        query, value, return_attention_scores=True
    )
    assert tuple(scores.shape) == (None, HEADS, QUERY_LEN, KEY_LEN)


def test_value_padding_is_invisible():
    layer = keras_mha.MultiHeadAttention(HEADS)
    short = _value()[:, :2]
    padded = np.concatenate([short, _value(seed=3)[:, :3]], axis=1)
    mask = np.array([[1, 1, 0, 0, 0]] * BATCH, bool)
    np.testing.assert_allclose(
        to_numpy(layer(_query(), padded, value_mask=mask)),
        to_numpy(layer(_query(), short)),
        atol=1e-5,
    )


def test_bad_mask_shape():
    layer = keras_mha.MultiHeadAttention(HEADS)
    with pytest.raises(
        ValueError, match=r"value_mask` expected shape \(2, 4\).*\(2, 5\)"
    ):
        layer(_query(), _value(), value_mask=np.ones((BATCH, 5), bool))
    with pytest.raises(ValueError, match=r"attention_mask.*\(2, 5, 5\)"):
        layer(_query(), _value(), attention_mask=np.ones((BATCH, 5, 5), bool))


def test_cross_attention_with_compute_cache_equals_uncached():
    layer = keras_mha.MultiHeadAttention(
        HEADS, bias_initializer="random_normal"
    )
    query, value = _query(), _value()
    value_mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
    expected = to_numpy(layer(query, value, value_mask=value_mask))
    cache = layer.compute_cache(value)
    assert tuple(cache.shape) == (BATCH, 2, HEADS, KEY_LEN, WIDTH // HEADS)
    # The whole query at once, and one query position at a time; `value`
    # is only read for its shape, the keys and values come from the cache.
    outputs, same_cache = layer(
        query, value, value_mask=value_mask, cache=cache
    )
    np.testing.assert_allclose(to_numpy(outputs), expected, atol=1e-5)
    np.testing.assert_array_equal(to_numpy(same_cache), to_numpy(cache))
    steps, _ = decode_in_steps(
        lambda chunk, index, cache: layer(
            chunk, value, value_mask=value_mask, cache=cache
        ),
        query,
        (1,) * QUERY_LEN,
        cache,
    )
    np.testing.assert_allclose(steps, expected, atol=1e-5)
    # With a cache, `value` may be left out.
    outputs, _ = layer(query, value_mask=value_mask, cache=cache)
    np.testing.assert_allclose(to_numpy(outputs), expected, atol=1e-5)


def test_cached_causal_self_attention_equals_full_sequence():
    # MultiHeadAttention used as self-attention, with a cache it fills.
    layer = keras_mha.MultiHeadAttention(HEADS, use_causal_mask=True)
    query = _query()
    expected = to_numpy(layer(query, query))
    steps, _ = decode_in_steps(
        lambda chunk, index, cache: layer(
            chunk, chunk, cache=cache, cache_update_index=index
        ),
        query,
        (2, 2, 1),
        layer.get_initial_cache(BATCH, QUERY_LEN),
    )
    np.testing.assert_allclose(steps, expected, atol=1e-5)


def test_bad_caches():
    layer = keras_mha.MultiHeadAttention(HEADS)
    with pytest.raises(ValueError, match="built=False"):
        layer.compute_cache(_value())
    layer(_query(), _value())
    with pytest.raises(ValueError, match="value=None, cache=None"):
        layer(_query())
    with pytest.raises(ValueError, match="cache_update_index=2"):
        layer(_query(), _value(), cache_update_index=2)
    with pytest.raises(ValueError, match=r"cache.shape=\(2, 2, 3, 4, 5\)"):
        layer(_query(), _value(), cache=np.zeros((2, 2, 3, 4, 5), "float32"))
    uneven = keras_mha.MultiHeadAttention(HEADS, key_dim=2, value_dim=6)
    uneven(_query(), _value())
    with pytest.raises(ValueError, match="key_dim=2, value_dim=6"):
        uneven.compute_cache(_value())
