import keras
import numpy as np
import pytest
from keras import ops

import keras_mha
from tests.layer_test_case import run_layer_test
from tests.layer_test_case import to_numpy

BATCH, SEQ, WIDTH, HEADS, FFN = 2, 5, 12, 3, 7


def _inputs(seed=0, seq=SEQ):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(BATCH, seq, WIDTH)).astype("float32")


def _block(**kwargs):
    return keras_mha.TransformerEncoderBlock(
        HEADS, intermediate_dim=FFN, **kwargs
    )


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"norm_first": True}, {"dropout": 0.1, "activation": "gelu"}],
    ids=["post_ln", "pre_ln", "dropout_gelu"],
)
def test_layer_conventions(kwargs, tmp_path):
    run_layer_test(
        keras_mha.TransformerEncoderBlock,
        {"num_heads": HEADS, "intermediate_dim": FFN, **kwargs},
        _inputs(),
        expected_output_shape=(BATCH, SEQ, WIDTH),
        # attention 4 + ffn 4 + two layer norms 4
        expected_num_trainable_weights=12,
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
def test_add_and_norm_structure(norm_first):
    block = _block(norm_first=norm_first, bias_initializer="random_normal")
    # A backend tensor: `x + layer(x)` with a NumPy `x` fails on PyTorch.
    x = ops.convert_to_tensor(_inputs())
    out = to_numpy(block(x))
    attention, ffn_in, ffn_out = (
        block.self_attention,
        block.ffn_intermediate,
        block.ffn_output,
    )
    norm1, norm2 = block.self_attention_norm, block.ffn_norm
    ffn = lambda h: ffn_out(ffn_in(h))
    if norm_first:
        h = x + attention(norm1(x))
        expected = h + ffn(norm2(h))
    else:
        h = norm1(x + attention(x))
        expected = norm2(h + ffn(h))
    np.testing.assert_allclose(out, to_numpy(expected), atol=1e-5)


def test_padding_is_invisible_and_implicit_equals_explicit():
    block = _block()
    tokens = np.array([[3, 1, 4, 0, 0], [2, 7, 1, 8, 2]])
    embedding = keras.layers.Embedding(10, WIDTH, mask_zero=True)
    ids = keras.Input((None,), dtype="int32")
    out = block(embedding(ids))
    assert out._keras_mask is not None
    implicit = to_numpy(keras.Model(ids, out)(tokens))
    explicit = to_numpy(block(embedding(tokens), padding_mask=tokens != 0))
    np.testing.assert_allclose(implicit, explicit, atol=1e-6)
    unpadded = to_numpy(block(embedding(tokens[:1, :3])))
    np.testing.assert_allclose(implicit[:1, :3], unpadded, atol=1e-5)


def test_attention_mask_and_scores():
    block = _block()
    attention_mask = np.tril(np.ones((SEQ, SEQ), bool))[None].repeat(BATCH, 0)
    out, scores = block(
        _inputs(), attention_mask=attention_mask, return_attention_scores=True
    )
    assert tuple(scores.shape) == (BATCH, HEADS, SEQ, SEQ)
    assert np.all(to_numpy(scores)[:, :, 0, 1:] == 0)
    symbolic, symbolic_scores = block(
        keras.Input((None, WIDTH)), return_attention_scores=True
    )
    assert tuple(symbolic_scores.shape) == (None, HEADS, None, None)


def test_jit_compiled_training():
    inputs = keras.Input((None, WIDTH))
    model = keras.Model(inputs, _block(dropout=0.1)(inputs))
    model.compile("adam", "mse", jit_compile=True)
    history = model.fit(_inputs(), _inputs(seed=1), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_heads": 0, "intermediate_dim": 4}, ValueError, "num_heads=0"),
        (
            {"num_heads": 2, "intermediate_dim": 0},
            ValueError,
            "intermediate_dim=0",
        ),
        (
            {"num_heads": 2, "intermediate_dim": 4, "dropout": 1.5},
            ValueError,
            "dropout=1.5",
        ),
        (
            {"num_heads": 2, "intermediate_dim": 4, "layer_norm_epsilon": 0},
            ValueError,
            "layer_norm_epsilon=0",
        ),
    ],
    ids=["heads", "intermediate_dim", "dropout", "epsilon"],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        keras_mha.TransformerEncoderBlock(**kwargs)


def test_bad_inputs():
    with pytest.raises(
        ValueError, match="num_heads=5 must divide the input width 12"
    ):
        keras_mha.TransformerEncoderBlock(5, intermediate_dim=FFN)(_inputs())
    block = _block()
    block(_inputs())
    with pytest.raises(ValueError, match=r"last dimension 12.*\(2, 5, 6\)"):
        block(np.zeros((BATCH, SEQ, 6), "float32"))
    with pytest.raises(
        ValueError, match=r"padding_mask` expected shape \(2, 5\).*\(2, 3\)"
    ):
        block(_inputs(), padding_mask=np.ones((BATCH, 3), bool))


def _reversal_accuracy(use_positions, seed=0):
    """Token accuracy of a small encoder trained to reverse sequences."""
    keras.utils.set_random_seed(seed)
    vocab, length, width = 10, 8, 64
    rng = np.random.default_rng(seed)
    x = rng.integers(1, vocab, size=(6000, length))
    y = x[:, ::-1]
    tokens = keras.Input((length,), dtype="int32")
    h = keras.layers.Embedding(vocab, width)(tokens)
    if use_positions:
        h = keras_mha.SinusoidalPositionEncoding()(h)
    for _ in range(2):
        h = keras_mha.TransformerEncoderBlock(
            4, intermediate_dim=128, norm_first=True
        )(h)
    probs = keras.layers.Dense(vocab, activation="softmax")(h)
    model = keras.Model(tokens, probs)
    model.compile(
        keras.optimizers.Adam(2e-3),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x[:5000], y[:5000], epochs=12, batch_size=64, verbose=0)
    return model.evaluate(x[5000:], y[5000:], verbose=0)[1]


@pytest.mark.slow
def test_learns_to_reverse_sequences_only_with_positions():
    assert _reversal_accuracy(use_positions=True) > 0.95
    # Without positions, self-attention is permutation-equivariant and
    # cannot know where a token must go.
    assert _reversal_accuracy(use_positions=False) < 0.5
