"""The attention core: chunked attention equals the explicit path (values
and gradients), the automatic choice of chunking, and layers that chunk.

b batch, n heads, t query length, s key length, h head width.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_mha
from keras_mha import _attention
from tests.layer_test_case import to_numpy

# Distinct sizes so a swapped axis cannot pass; chunks of 16 do not divide
# the lengths, so every path has a short last chunk.
BATCH, HEADS, QUERIES, KEYS, HEAD_DIM, VALUE_DIM = 2, 3, 40, 37, 4, 5
CHUNK = 16


def _qkv(seed=0, queries=QUERIES, keys=KEYS):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(BATCH, HEADS, queries, HEAD_DIM)).astype("float32"),
        rng.normal(size=(BATCH, HEADS, keys, HEAD_DIM)).astype("float32"),
        rng.normal(size=(BATCH, HEADS, keys, VALUE_DIM)).astype("float32"),
    )


def _padding(length, valid):
    """`(b, length)` padding mask with `valid[i]` real tokens in row `i`."""
    return np.arange(length)[None] < np.array(valid)[:, None]


def _attention_mask(queries=QUERIES, keys=KEYS, seed=3):
    mask = np.random.default_rng(seed).random((BATCH, queries, keys)) > 0.3
    mask[1, 5] = False  # A query that may attend to no key.
    return mask


def _explicit(q, k, v, **masks):
    outputs, _ = _attention.attend(q, k, v, flash_attention=False, **masks)
    return ops.transpose(outputs, (0, 2, 1, 3))  # (b, n, t, hv)


def _chunked(q, k, v, chunk=CHUNK, **masks):
    return _attention.chunked_attention(q, k, v, chunk, **masks)


def _value_and_grads(fn, q, k, v):
    """`fn(q, k, v)` and the gradients of a weighted sum of it (q, k, v)."""
    weights = (
        np.random.default_rng(9)
        .normal(size=(BATCH, HEADS, q.shape[2], v.shape[-1]))
        .astype("float32")
    )
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        q, k, v = (tf.constant(x) for x in (q, k, v))
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            out = fn(q, k, v)
            loss = tf.reduce_sum(out * weights)
        return out, tape.gradient(loss, [q, k, v])
    if backend == "jax":
        import jax

        def loss(q, k, v):
            out = fn(q, k, v)
            return (out * weights).sum(), out

        (_, out), grads = jax.value_and_grad(loss, (0, 1, 2), has_aux=True)(
            q, k, v
        )
        return out, grads
    if backend == "torch":
        import torch

        q, k, v = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
        out = fn(q, k, v)
        (out * torch.tensor(weights, device=out.device)).sum().backward()
        return out, [q.grad, k.grad, v.grad]
    pytest.skip(f"No gradients on the {backend} backend.")


MASKS = {
    "none": {},
    "key_padding": {"key_mask": _padding(KEYS, [30, KEYS])},
    "query_and_key_padding": {
        "query_mask": _padding(QUERIES, [QUERIES, 21]),
        "key_mask": _padding(KEYS, [30, KEYS]),
    },
    "attention_mask": {"attention_mask": _attention_mask()},
    "attention_mask_per_head": {
        "attention_mask": np.random.default_rng(4).random(
            (BATCH, HEADS, QUERIES, KEYS)
        )
        > 0.5
    },
    "causal": {"use_causal_mask": True},
    "causal_offset": {"use_causal_mask": True, "causal_offset": 3},
    "causal_negative_offset": {"use_causal_mask": True, "causal_offset": -5},
    "causal_and_padding": {
        "use_causal_mask": True,
        "key_mask": _padding(KEYS, [KEYS, 17]),
    },
}


@pytest.mark.parametrize("masks", MASKS.values(), ids=MASKS.keys())
def test_chunked_equals_explicit_values_and_gradients(masks):
    q, k, v = _qkv()
    expected, expected_grads = _value_and_grads(
        lambda q, k, v: _explicit(q, k, v, **masks), q, k, v
    )
    outputs, grads = _value_and_grads(
        lambda q, k, v: _chunked(q, k, v, **masks), q, k, v
    )
    np.testing.assert_allclose(to_numpy(outputs), to_numpy(expected), atol=1e-5)
    for name, grad, expected_grad in zip("qkv", grads, expected_grads):
        np.testing.assert_allclose(
            to_numpy(grad),
            to_numpy(expected_grad),
            atol=1e-5,
            err_msg=f"d/d{name}",
        )


@pytest.mark.parametrize("chunk", [1, 7, 16, 36, 64], ids=lambda c: f"chunk{c}")
def test_chunk_sizes_that_do_not_divide_the_lengths(chunk):
    q, k, v = _qkv()
    masks = {"use_causal_mask": True, "key_mask": _padding(KEYS, [30, KEYS])}
    np.testing.assert_allclose(
        to_numpy(_chunked(q, k, v, chunk=chunk, **masks)),
        to_numpy(_explicit(q, k, v, **masks)),
        atol=1e-5,
    )


def test_causal_offset_as_a_tensor_equals_the_static_offset():
    # A tensor offset (cached decoding in a compiled loop) cannot skip the
    # blocks above the diagonal; it must still mask them.
    q, k, v = _qkv()
    static = _chunked(q, k, v, use_causal_mask=True, causal_offset=3)
    dynamic = _chunked(
        q,
        k,
        v,
        use_causal_mask=True,
        causal_offset=ops.convert_to_tensor(3, "int32"),
    )
    np.testing.assert_allclose(to_numpy(dynamic), to_numpy(static), atol=1e-6)


def test_fully_masked_rows_give_zeros_not_nan():
    q, k, v = _qkv()
    key_mask = _padding(KEYS, [0, KEYS])  # Sequence 0 has no key at all.
    attention_mask = _attention_mask()
    outputs, grads = _value_and_grads(
        lambda q, k, v: _chunked(
            q, k, v, key_mask=key_mask, attention_mask=attention_mask
        ),
        q,
        k,
        v,
    )
    outputs = to_numpy(outputs)
    np.testing.assert_array_equal(outputs[0], 0.0)
    np.testing.assert_array_equal(outputs[1, :, 5], 0.0)
    for grad in grads:
        assert np.all(np.isfinite(to_numpy(grad)))
    np.testing.assert_array_equal(to_numpy(grads[0])[0], 0.0)


def test_chunked_equals_explicit_in_cross_attention_lengths():
    q, k, v = _qkv(queries=9, keys=50)
    key_mask = _padding(50, [50, 33])
    np.testing.assert_allclose(
        to_numpy(_chunked(q, k, v, key_mask=key_mask)),
        to_numpy(_explicit(q, k, v, key_mask=key_mask)),
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "fused, query_length, key_length, chunk_size, expected",
    [
        (False, 2048, 2048, None, None),  # At the threshold: one block.
        (False, 2049, 2048, None, _attention.AUTO_CHUNK_SIZE),
        (True, 4096, 4096, None, None),  # A fused kernel needs no chunks.
        (False, None, 4096, None, None),  # Unknown lengths never chunk.
        (False, 4096, None, 16, None),
        (False, 40, 40, 16, 16),
        (True, 40, 40, 16, 16),  # An explicit size chunks on every backend.
        (False, 16, 16, 16, None),  # One chunk is one block.
    ],
    ids=[
        "at_threshold",
        "above_threshold",
        "fused_backend",
        "unknown_query",
        "unknown_key",
        "explicit",
        "explicit_fused_backend",
        "single_chunk",
    ],
)
def test_attention_chunk_size_for(
    monkeypatch, fused, query_length, key_length, chunk_size, expected
):
    monkeypatch.setattr(_attention, "_backend_has_fused_kernel", lambda: fused)
    assert (
        _attention.attention_chunk_size_for(
            query_length, key_length, chunk_size
        )
        == expected
    )


def test_attend_chunks_automatically_above_the_threshold(monkeypatch):
    monkeypatch.setattr(_attention, "_backend_has_fused_kernel", lambda: False)
    monkeypatch.setattr(_attention, "AUTO_CHUNK_THRESHOLD", 30 * 30)
    monkeypatch.setattr(_attention, "AUTO_CHUNK_SIZE", CHUNK)
    calls = []
    chunked = _attention.chunked_attention

    def spy(*args, **kwargs):
        calls.append(args[3])
        return chunked(*args, **kwargs)

    monkeypatch.setattr(_attention, "chunked_attention", spy)
    q, k, v = _qkv()
    _attention.attend(*_qkv(queries=20, keys=20))
    assert calls == []
    outputs, _ = _attention.attend(q, k, v, use_causal_mask=True)
    assert calls == [CHUNK]
    # Scores need the explicit probabilities: never chunked.
    _attention.attend(q, k, v, return_scores=True)
    assert calls == [CHUNK]
    np.testing.assert_allclose(
        to_numpy(ops.transpose(outputs, (0, 2, 1, 3))),
        to_numpy(_explicit(q, k, v, use_causal_mask=True)),
        atol=1e-5,
    )


def _sequence(seed=0, length=QUERIES, width=12):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(BATCH, length, width)).astype("float32")


@pytest.mark.parametrize(
    "layer_class, kwargs",
    [
        (keras_mha.MultiHeadSelfAttention, {"use_causal_mask": True}),
        (keras_mha.MultiHeadSelfAttention, {}),
        (keras_mha.MultiHeadAttention, {}),
    ],
    ids=["causal_self_attention", "self_attention", "cross_attention"],
)
def test_layer_with_attention_chunk_size_equals_without(layer_class, kwargs):
    chunked = layer_class(HEADS, attention_chunk_size=CHUNK, **kwargs)
    plain = layer_class(HEADS, flash_attention=False, **kwargs)
    if layer_class is keras_mha.MultiHeadAttention:
        inputs = (_sequence(), _sequence(seed=1, length=KEYS))
        masks = {"value_mask": _padding(KEYS, [KEYS, 25])}
    else:
        inputs = (_sequence(),)
        masks = {"mask": _padding(QUERIES, [QUERIES, 25])}
    chunked(*inputs)
    plain(*inputs)
    plain.set_weights(chunked.get_weights())
    np.testing.assert_allclose(
        to_numpy(chunked(*inputs, **masks)),
        to_numpy(plain(*inputs, **masks)),
        atol=1e-5,
    )
    assert chunked.get_config()["attention_chunk_size"] == CHUNK


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_chunked_attention_under_mixed_precision_is_finite(policy):
    keras.config.set_dtype_policy(policy)
    layer = keras_mha.MultiHeadSelfAttention(
        HEADS, use_causal_mask=True, attention_chunk_size=CHUNK
    )
    # Large inputs: float16 logits would overflow without the float32 upcast.
    x = 30.0 * _sequence()
    outputs = layer(x, mask=_padding(QUERIES, [QUERIES, 25]))
    assert keras.backend.standardize_dtype(outputs.dtype) == policy[6:]
    assert np.all(np.isfinite(to_numpy(ops.cast(outputs, "float32"))))
    # The same layer without chunks, under the same policy.
    reference = keras_mha.MultiHeadSelfAttention(
        HEADS, use_causal_mask=True, flash_attention=False
    )
    reference(x)
    reference.set_weights(layer.get_weights())
    expected = reference(x, mask=_padding(QUERIES, [QUERIES, 25]))
    np.testing.assert_allclose(
        to_numpy(ops.cast(outputs, "float32")),
        to_numpy(ops.cast(expected, "float32")),
        atol=0.5,
        rtol=0.05,
    )
