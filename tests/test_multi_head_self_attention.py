import keras
import numpy as np
import pytest
from keras import ops

import keras_mha
from keras_mha import _attention
from tests import reference
from tests.layer_test_case import decode_in_steps
from tests.layer_test_case import run_layer_test
from tests.layer_test_case import to_numpy

# Distinct sizes so a swapped axis cannot pass.
BATCH, SEQ, WIDTH, HEADS = 2, 5, 12, 3


def _inputs(seed=0, seq=SEQ):
    return (
        np.random.default_rng(seed)
        .normal(size=(BATCH, seq, WIDTH))
        .astype("float32")
    )


def _padding():
    return np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)


def _layer(**kwargs):
    kwargs.setdefault("bias_initializer", "random_normal")
    return keras_mha.MultiHeadSelfAttention(HEADS, **kwargs)


@pytest.mark.parametrize(
    "kwargs, width_out, num_weights",
    [
        ({}, WIDTH, 4),
        ({"key_dim": 2, "value_dim": 6, "output_dim": 7}, 7, 4),
        ({"use_causal_mask": True, "dropout": 0.1, "seed": 3}, WIDTH, 4),
        ({"use_bias": False}, WIDTH, 2),
    ],
    ids=["default", "custom_dims", "causal_dropout", "no_bias"],
)
def test_layer_conventions(kwargs, width_out, num_weights, tmp_path):
    run_layer_test(
        keras_mha.MultiHeadSelfAttention,
        {"num_heads": HEADS, **kwargs},
        _inputs(),
        expected_output_shape=(BATCH, SEQ, width_out),
        expected_num_trainable_weights=num_weights,
        tmp_path=tmp_path,
    )


def test_layer_conventions_of_every_output(tmp_path):
    """Outputs and scores alike: shapes, dtypes, saving, policies."""
    run_layer_test(
        keras_mha.MultiHeadSelfAttention,
        {"num_heads": HEADS, "use_causal_mask": True},
        _inputs(),
        expected_output_shape=(BATCH, SEQ, WIDTH),
        expected_num_trainable_weights=4,
        call_kwargs={"return_attention_scores": True},
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("with_mask", [False, True], ids=["no_mask", "padding"])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"key_dim": 2, "value_dim": 5, "output_dim": 7}],
    ids=["default_dims", "custom_dims"],
)
def test_matches_numpy_reference(kwargs, with_mask):
    layer = _layer(**kwargs)
    x = _inputs()
    mask = _padding() if with_mask else None
    outputs, scores = layer(x, mask=mask, return_attention_scores=True)
    fused = layer(x, mask=mask)
    ref_mask = None
    if with_mask:
        ref_mask = _padding()[:, :, None] & _padding()[:, None, :]
    expected, expected_probs = reference.attention(
        x, x, *reference.weights_of(layer), mask=ref_mask
    )
    if with_mask:  # Padded queries attend to nothing: zero heads, bias only.
        np.testing.assert_allclose(to_numpy(scores)[0, :, 3:], 0.0)
    np.testing.assert_allclose(to_numpy(scores), expected_probs, atol=1e-5)
    np.testing.assert_allclose(to_numpy(outputs), expected, atol=1e-5)
    np.testing.assert_allclose(to_numpy(fused), expected, atol=1e-5)


def test_scores_are_probabilities_with_exact_zeros_at_masked_keys():
    layer = _layer()
    mask = _padding()
    _, scores = layer(_inputs(), mask=mask, return_attention_scores=True)
    scores = to_numpy(scores)
    assert scores.shape == (BATCH, HEADS, SEQ, SEQ)
    np.testing.assert_allclose(scores[1].sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(scores[0, :, :3].sum(-1), 1.0, atol=1e-6)
    assert np.all(scores[0, :, :, 3:] == 0.0)


@pytest.mark.parametrize(
    "return_scores", [False, True], ids=["fused", "explicit"]
)
def test_fully_masked_query_rows_give_zeros_not_nan(return_scores):
    layer = _layer(use_bias=False)
    attention_mask = np.ones((BATCH, SEQ, SEQ), bool)
    attention_mask[0, 2] = False  # query 2 of sample 0 sees no key
    out = layer(
        _inputs(),
        attention_mask=attention_mask,
        return_attention_scores=return_scores,
    )
    out = to_numpy(out[0] if return_scores else out)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[0, 2], 0.0)
    assert np.all(np.abs(out[0, [0, 1, 3, 4]]).sum(-1) > 0)


def test_implicit_mask_equals_explicit_masks_and_propagates():
    tokens = np.array([[3, 1, 4, 0, 0], [2, 7, 1, 8, 2]])
    embedding = keras.layers.Embedding(10, WIDTH, mask_zero=True)
    layer = _layer()
    inputs = keras.Input((None,), dtype="int32")
    x = layer(embedding(inputs))
    assert x._keras_mask is not None
    implicit = keras.Model(inputs, x)(tokens)
    embedded = embedding(tokens)
    explicit_padding = layer(embedded, mask=tokens != 0)
    as_attention_mask = layer(
        embedded,
        mask=np.ones_like(tokens, bool),
        attention_mask=(tokens != 0)[:, :, None] & (tokens != 0)[:, None, :],
    )
    np.testing.assert_allclose(
        to_numpy(implicit), to_numpy(explicit_padding), atol=1e-6
    )
    np.testing.assert_allclose(
        to_numpy(implicit), to_numpy(as_attention_mask), atol=1e-6
    )


def test_permutation_equivariance_without_positions():
    layer = _layer()
    x = _inputs()
    perm = np.array([3, 0, 4, 1, 2])
    np.testing.assert_allclose(
        to_numpy(layer(x[:, perm])), to_numpy(layer(x))[:, perm], atol=1e-5
    )


@pytest.mark.parametrize(
    "return_scores", [False, True], ids=["fused", "explicit"]
)
def test_causal_mask_hides_the_future(return_scores):
    layer = _layer(use_causal_mask=True)
    x = _inputs()
    changed = x.copy()
    changed[:, 3:] = _inputs(seed=1)[:, 3:]

    def run(inputs):
        out = layer(inputs, return_attention_scores=return_scores)
        return to_numpy(out[0] if return_scores else out)

    np.testing.assert_allclose(run(changed)[:, :3], run(x)[:, :3], atol=1e-6)
    assert not np.allclose(run(changed)[:, 3:], run(x)[:, 3:])


def test_padding_is_invisible_to_real_tokens():
    layer = _layer()
    x = _inputs()[:1, :3]
    padded = np.concatenate([x, _inputs(seed=2)[:1, :4]], axis=1)
    mask = np.array([[1, 1, 1, 0, 0, 0, 0]], bool)
    np.testing.assert_allclose(
        to_numpy(layer(padded, mask=mask))[:, :3], to_numpy(layer(x)), atol=1e-5
    )


def test_dropout_applies_in_training_only():
    layer = _layer(dropout=0.5, seed=1)
    x = _inputs()
    inference = to_numpy(layer(x, training=False))
    np.testing.assert_allclose(inference, to_numpy(layer(x)), atol=1e-6)
    assert not np.allclose(to_numpy(layer(x, training=True)), inference)


class _Spy:
    """Records the calls of `keras.ops.dot_product_attention`.

    Pretends the backend has a fused kernel, so that the choice of path is
    tested on every backend (TensorFlow has none and takes the explicit
    path by default, see `test_tensorflow_defaults_to_the_explicit_path`).
    """

    def __init__(self, monkeypatch, fused_backend=True):
        self.calls = []
        monkeypatch.setattr(
            _attention, "_backend_has_fused_kernel", lambda: fused_backend
        )
        original = ops.dot_product_attention

        def spy(*args, **kwargs):
            self.calls.append(kwargs)
            return original(*args, **kwargs)

        monkeypatch.setattr(_attention.ops, "dot_product_attention", spy)


def test_fused_kernel_at_inference_even_with_dropout(monkeypatch):
    spy = _Spy(monkeypatch)
    layer = _layer(dropout=0.3)
    layer(_inputs(), training=False)
    assert len(spy.calls) == 1
    layer(_inputs(), training=True)
    layer(_inputs(), return_attention_scores=True)
    assert len(spy.calls) == 1  # dropout in training and scores: explicit


def test_causal_only_passes_is_causal_instead_of_a_mask(monkeypatch):
    spy = _Spy(monkeypatch)
    _layer(use_causal_mask=True)(_inputs())
    assert spy.calls == [
        {"mask": None, "is_causal": True, "flash_attention": None}
    ]


def test_backends_without_a_fused_kernel_default_to_the_explicit_path(
    monkeypatch,
):
    backend = keras.backend.backend()
    jax_gpu = False
    if backend == "jax":
        import jax

        # JAX's fused kernel is cuDNN's, on a GPU; on a CPU its op is einsums.
        jax_gpu = jax.default_backend() == "gpu"
    assert _attention._backend_has_fused_kernel() == (
        backend == "torch" or jax_gpu
    )
    # Keras's op is two einsums around a softmax on TensorFlow, slower than
    # the explicit heads-first matmuls, so it is only taken on request.
    spy = _Spy(monkeypatch, fused_backend=False)
    layer, x = _layer(), _inputs()
    explicit = to_numpy(layer(x))
    assert spy.calls == []
    monkeypatch.setattr(_attention, "_backend_has_fused_kernel", lambda: True)
    np.testing.assert_allclose(to_numpy(layer(x)), explicit, atol=1e-5)
    assert len(spy.calls) == 1


def test_flash_attention_false_uses_the_explicit_path(monkeypatch):
    spy = _Spy(monkeypatch)
    layer = _layer(flash_attention=False)
    layer(_inputs())
    assert spy.calls == []
    assert layer.get_config()["flash_attention"] is False


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_heads": 0}, ValueError, "Received: num_heads=0"),
        ({"num_heads": -2}, ValueError, "Received: num_heads=-2"),
        ({"num_heads": 2.5}, TypeError, "num_heads=2.5"),
        ({"num_heads": 3, "dropout": 1.0}, ValueError, r"\[0, 1\)"),
        ({"num_heads": 3, "dropout": -0.1}, ValueError, "dropout=-0.1"),
        ({"num_heads": 3, "key_dim": 0}, ValueError, "key_dim=0"),
        (
            {"num_heads": 3, "flash_attention": "yes"},
            ValueError,
            "flash_attention",
        ),
    ],
    ids=lambda v: (
        str(v) if not isinstance(v, dict) else "-".join(map(str, v.values()))
    ),
)
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        keras_mha.MultiHeadSelfAttention(**kwargs)


def test_heads_must_divide_width_without_key_dim():
    with pytest.raises(
        ValueError, match="num_heads=5 must divide the input width 12"
    ):
        keras_mha.MultiHeadSelfAttention(5)(_inputs())
    out = keras_mha.MultiHeadSelfAttention(5, key_dim=4)(_inputs())
    assert tuple(out.shape) == (BATCH, SEQ, WIDTH)


def test_bad_inputs():
    layer = _layer()
    with pytest.raises(ValueError, match=r"rank-3.*inputs.shape=\(2, 12\)"):
        layer(np.zeros((2, 12), "float32"))
    layer(_inputs())
    with pytest.raises(ValueError, match=r"last dimension 12.*\(2, 5, 8\)"):
        layer(np.zeros((2, 5, 8), "float32"))
    with pytest.raises(TypeError, match="floating-point.*int32"):
        layer(np.zeros((2, 5, 12), "int32"))
    with pytest.raises(ValueError, match=r"attention_mask.*\(2, 5, 4\)"):
        layer(_inputs(), attention_mask=np.ones((2, 5, 4), bool))
    with pytest.raises(
        ValueError, match=r"`mask` expected shape \(2, 5\).*\(2, 4\)"
    ):
        layer(_inputs(), mask=np.ones((2, 4), bool))


def test_symbolic_scores_shape():
    x = keras.Input((None, WIDTH))
    out, scores = _layer()(x, return_attention_scores=True)
    assert tuple(out.shape) == (None, None, WIDTH)
    assert tuple(scores.shape) == (None, HEADS, None, None)


def compiled(fn):
    """`fn` compiled by the backend (XLA on TensorFlow and JAX)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    return fn


def _decode_with_cache(layer, x, steps, **kwargs):
    """Runs `x` through `layer` in chunks of `steps` lengths with a cache."""

    def step(chunk, index, cache):
        return layer(chunk, cache=cache, cache_update_index=index, **kwargs)

    return decode_in_steps(
        step, x, steps, layer.get_initial_cache(BATCH, x.shape[1])
    )


def _attention_inputs(layer, x):
    from keras_mha._heads import project_fused_qkv

    return project_fused_qkv(
        layer.qkv_dense, x, layer._key_dim, layer._value_dim
    )


@pytest.mark.parametrize(
    "steps",
    [(1,) * SEQ, (3, 1, 1), (2, 3)],
    ids=["token_by_token", "prompt_then_tokens", "two_chunks"],
)
def test_cached_steps_equal_the_full_causal_sequence(steps):
    layer = _layer(use_causal_mask=True)
    x = _inputs()
    expected = to_numpy(layer(x))
    outputs, cache = _decode_with_cache(layer, x, steps)
    np.testing.assert_allclose(outputs, expected, atol=1e-5)
    assert tuple(cache.shape) == (BATCH, 2, HEADS, SEQ, WIDTH // HEADS)
    # The cache holds the keys and values of the full sequence.
    _, k, v = _attention_inputs(layer, x)
    np.testing.assert_allclose(to_numpy(cache[:, 0]), to_numpy(k), atol=1e-5)
    np.testing.assert_allclose(to_numpy(cache[:, 1]), to_numpy(v), atol=1e-5)


def test_cache_without_causal_mask_sees_only_written_positions():
    # One token at a time, a non-causal layer sees the prefix written so far:
    # the outputs of the causal layer with the same weights.
    layer = _layer()
    causal = _layer(use_causal_mask=True)
    x = _inputs()
    layer(x)
    causal(x)
    causal.set_weights(layer.get_weights())
    outputs, _ = _decode_with_cache(layer, x, (1,) * SEQ)
    np.testing.assert_allclose(outputs, to_numpy(causal(x)), atol=1e-5)


def test_cached_steps_return_scores_over_the_cache():
    layer = _layer(use_causal_mask=True)
    x = _inputs()
    _, expected = layer(x, return_attention_scores=True)
    cache = layer.get_initial_cache(BATCH, SEQ)
    _out, scores, cache = layer(
        x[:, :2],
        cache=cache,
        cache_update_index=0,
        return_attention_scores=True,
    )
    assert tuple(scores.shape) == (BATCH, HEADS, 2, SEQ)
    np.testing.assert_allclose(
        to_numpy(scores), to_numpy(expected)[:, :, :2], atol=1e-5
    )


def test_compiled_decode_loop_with_a_static_cache():
    layer = _layer(use_causal_mask=True)
    x = _inputs()
    expected = to_numpy(layer(x))

    @compiled
    def decode(x):
        def body(i, state):
            outputs, cache = state
            token = ops.slice(x, (0, i, 0), (BATCH, 1, WIDTH))
            out, cache = layer(token, cache=cache, cache_update_index=i)
            outputs = ops.slice_update(outputs, (0, i, 0), out)
            return outputs, cache

        state = (ops.zeros_like(x), layer.get_initial_cache(BATCH, SEQ))
        return ops.fori_loop(0, SEQ, body, state)[0]

    np.testing.assert_allclose(
        to_numpy(decode(ops.convert_to_tensor(x))), expected, atol=1e-5
    )


def test_symbolic_call_with_a_cache():
    layer = _layer(use_causal_mask=True)
    layer(_inputs())
    cache = keras.Input((2, HEADS, 7, WIDTH // HEADS), batch_size=BATCH)
    out, scores, new_cache = layer(
        keras.Input((1, WIDTH), batch_size=BATCH),
        cache=cache,
        cache_update_index=0,
        return_attention_scores=True,
    )
    assert tuple(out.shape) == (BATCH, 1, WIDTH)
    assert tuple(scores.shape) == (BATCH, HEADS, 1, 7)
    assert tuple(new_cache.shape) == tuple(cache.shape)


def test_bad_caches():
    layer = _layer(use_causal_mask=True)
    x = _inputs()
    layer(x)
    with pytest.raises(ValueError, match="cache_update_index=None"):
        layer(x, cache=layer.get_initial_cache(BATCH, SEQ))
    bad = np.zeros((BATCH, 2, HEADS + 1, SEQ, WIDTH // HEADS), "float32")
    with pytest.raises(
        ValueError,
        match=r"`cache` expected shape \(batch, 2, 3, length, 4\)"
        r".*cache.shape=\(2, 2, 4, 5, 4\)",
    ):
        layer(x, cache=bad, cache_update_index=0)
    with pytest.raises(ValueError, match="cache.shape=\\(2, 5, 4\\)"):
        layer(
            x, cache=np.zeros((BATCH, SEQ, 4), "float32"), cache_update_index=0
        )
    with pytest.raises(ValueError, match="built=False"):
        _layer().get_initial_cache(BATCH, SEQ)
    uneven = _layer(key_dim=2, value_dim=5)
    uneven(x)
    with pytest.raises(ValueError, match="key_dim=2, value_dim=5"):
        uneven.get_initial_cache(BATCH, SEQ)
    with pytest.raises(ValueError, match="key_dim=2, value_dim=5"):
        uneven(
            x,
            cache=np.zeros((BATCH, 2, HEADS, SEQ, 2), "float32"),
            cache_update_index=0,
        )


@pytest.mark.parametrize(
    "layer_class, inputs, methods",
    [
        (
            keras_mha.MultiHeadSelfAttention,
            (_inputs(),),
            {"get_initial_cache": (BATCH, 7)},
        ),
        (
            keras_mha.MultiHeadAttention,
            (_inputs(), _inputs(1, seq=4)),
            {"get_initial_cache": (BATCH, 7), "compute_cache": (_inputs(),)},
        ),
    ],
    ids=["self_attention", "cross_attention"],
)
def test_every_public_method_works_on_its_own_inputs(
    layer_class, inputs, methods
):
    """Siblings, not a subclass: no inherited method expects other inputs."""
    layer = layer_class(HEADS)
    layer(*inputs)
    own = set(dir(layer_class)) - set(dir(keras.layers.Layer))
    public = {name for name in own if not name.startswith("_")}
    # enable_lora takes no inputs (tests/test_ecosystem_lora.py).
    assert public == {*methods, "enable_lora"}
    for name, args in methods.items():
        cache = getattr(layer, name)(*args)
        assert cache.shape[:3] == (BATCH, 2, HEADS), name


def test_self_attention_has_no_cross_attention_cache():
    """Its cache is filled by calling it with `cache_update_index`."""
    assert not issubclass(
        keras_mha.MultiHeadSelfAttention, keras_mha.MultiHeadAttention
    )
    assert not hasattr(keras_mha.MultiHeadSelfAttention, "compute_cache")
    layer = _layer(use_causal_mask=True)
    x = _inputs()
    expected = to_numpy(layer(x))
    outputs, cache = layer(
        x, cache=layer.get_initial_cache(BATCH, SEQ + 2), cache_update_index=0
    )
    np.testing.assert_allclose(to_numpy(outputs), expected, atol=1e-5)
    assert tuple(cache.shape) == (BATCH, 2, HEADS, SEQ + 2, WIDTH // HEADS)
