"""The layers' contract: caches never give silently wrong results, every
bad argument is a clear error, and masks, warnings and quantization behave
as with Keras's own layers.

Each table row was a silent wrong result, a backend traceback or a Keras
incompatibility before; the row pins the clear error or the Keras-equal
result that replaced it.
"""

import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_mha
from keras_mha import MultiHeadAttention
from keras_mha import MultiHeadSelfAttention
from keras_mha import SinusoidalPositionEncoding
from keras_mha import TransformerDecoderBlock
from keras_mha import TransformerEncoderBlock
from tests.layer_test_case import assert_clear_error
from tests.layer_test_case import to_numpy

# Distinct sizes so a swapped axis cannot pass.
B, T, S, D, HEADS, FFN = 2, 5, 7, 12, 3, 7
HEAD = D // HEADS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def floats(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def built(layer, *inputs):
    layer(*inputs)
    return layer


def causal_self_attention():
    return built(
        MultiHeadSelfAttention(HEADS, use_causal_mask=True), floats(B, T, D)
    )


def cross_attention():
    return built(MultiHeadAttention(HEADS), floats(B, T, D), floats(B, S, D))


def decoder():
    return built(
        TransformerDecoderBlock(HEADS, intermediate_dim=FFN),
        floats(B, T, D),
        floats(B, S, D),
    )


def step(layer, tokens, index, cache_length=5, batch=B, dtype=None):
    """One cached step of the causal self-attention at `index`."""
    cache = layer.get_initial_cache(batch, cache_length)
    if dtype is not None:
        cache = ops.cast(cache, dtype)
    return layer(floats(B, tokens, D), cache=cache, cache_update_index=index)


def decoder_step(block, tokens, index, cache_batch=B, cross_cache=None):
    return block(
        floats(B, tokens, D),
        floats(B, S, D) if cross_cache is None else None,
        self_attention_cache=block.get_initial_cache(cache_batch, 5),
        self_attention_cache_update_index=index,
        cross_attention_cache=cross_cache,
    )


# (id, thunk, error type, fragments the message must contain)
CACHE_CASES = [
    (
        "index-at-the-end",
        lambda: step(causal_self_attention(), 1, 5),
        ValueError,
        ["cache_update_index=5", "0 <= cache_update_index <= 4"],
    ),
    (
        "index-past-the-end",
        lambda: step(causal_self_attention(), 1, 6),
        ValueError,
        ["cache_update_index=6", "holds 5"],
    ),
    (
        "index-negative",
        lambda: step(causal_self_attention(), 1, -1),
        ValueError,
        ["cache_update_index=-1", "non-negative"],
    ),
    (
        "write-overflows-the-cache",
        lambda: step(causal_self_attention(), 3, 4),
        ValueError,
        ["cache_update_index=4", "3 new position(s)", "<= 2"],
    ),
    (
        "index-tensor-past-the-end",
        lambda: step(causal_self_attention(), 1, ops.convert_to_tensor(5)),
        ValueError,
        ["cache_update_index=5", "<= 4"],
    ),
    (
        "index-tensor-negative",
        lambda: step(causal_self_attention(), 1, ops.convert_to_tensor(-1)),
        ValueError,
        ["cache_update_index=-1", "non-negative"],
    ),
    (
        "index-float",
        lambda: step(causal_self_attention(), 1, 1.0),
        TypeError,
        ["cache_update_index=1.0", "integer"],
    ),
    (
        "index-float-tensor",
        lambda: step(causal_self_attention(), 1, ops.convert_to_tensor(1.0)),
        TypeError,
        ["cache_update_index=", "integer scalar tensor"],
    ),
    (
        "index-bool",
        lambda: step(causal_self_attention(), 1, True),
        TypeError,
        ["cache_update_index=True", "integer"],
    ),
    (
        "cache-batch-larger-than-inputs",
        lambda: causal_self_attention()(
            floats(1, 1, D),
            cache=causal_self_attention().get_initial_cache(B, 5),
            cache_update_index=0,
        ),
        ValueError,
        [f"cache.shape=({B}, 2, {HEADS}, 5, {HEAD})", "batch size 1"],
    ),
    (
        "cache-int32",
        lambda: step(causal_self_attention(), 1, 0, dtype="int32"),
        TypeError,
        ["cache.dtype=int32", "floating-point"],
    ),
    (
        "cross-cache-batch",
        lambda: cross_attention()(
            floats(1, T, D),
            cache=cross_attention().compute_cache(floats(B, S, D)),
        ),
        ValueError,
        [f"cache.shape=({B}, 2, {HEADS}, {S}, {HEAD})", "batch size 1"],
    ),
    (
        "mha-cache-index-past-the-end",
        lambda: cross_attention()(
            floats(B, 2, D),
            floats(B, 2, D),
            cache=cross_attention().get_initial_cache(B, 3),
            cache_update_index=2,
        ),
        ValueError,
        ["cache_update_index=2", "<= 1"],
    ),
    (
        "decoder-index-past-the-end",
        lambda: decoder_step(decoder(), 1, 5),
        ValueError,
        ["self_attention_cache_update_index=5", "self_attention_cache"],
    ),
    (
        "decoder-index-negative",
        lambda: decoder_step(decoder(), 1, -1),
        ValueError,
        ["self_attention_cache_update_index=-1", "non-negative"],
    ),
    (
        "decoder-cache-batch",
        lambda: decoder_step(decoder(), 1, 0, cache_batch=1),
        ValueError,
        ["self_attention_cache.shape=(1, 2, 3, 5, 4)", f"batch size {B}"],
    ),
    (
        "decoder-cross-cache-int",
        lambda: decoder_step(
            decoder(),
            1,
            0,
            cross_cache=np.zeros((B, 2, HEADS, S, HEAD), "int32"),
        ),
        TypeError,
        ["cross_attention_cache.dtype=int32"],
    ),
    (
        "decoder-index-without-cache",
        lambda: decoder()(
            floats(B, 1, D),
            floats(B, S, D),
            self_attention_cache_update_index=0,
        ),
        ValueError,
        ["self_attention_cache=None", "self_attention_cache_update_index=0"],
    ),
]


@pytest.mark.parametrize(
    "thunk, error_type, fragments",
    [case[1:] for case in CACHE_CASES],
    ids=[case[0] for case in CACHE_CASES],
)
def test_a_cache_that_cannot_take_the_write_is_an_error(
    thunk, error_type, fragments
):
    assert_clear_error(thunk, error_type, fragments)


@pytest.mark.parametrize("tokens, index", [(1, 4), (3, 2), (5, 0)])
def test_writes_that_end_at_the_cache_end_equal_the_full_pass(tokens, index):
    """The bound is exact: index + new length == cache length is valid."""
    layer = causal_self_attention()
    x = floats(B, T, D, seed=3)
    full = to_numpy(layer(x))
    cache = layer.get_initial_cache(B, T)
    if index:
        _, cache = layer(x[:, :index], cache=cache, cache_update_index=0)
    out, cache = layer(
        x[:, index : index + tokens], cache=cache, cache_update_index=index
    )
    np.testing.assert_allclose(to_numpy(out), full[:, index:], atol=1e-5)


ARGUMENT_CASES = [
    (
        "self-attention-get_initial_cache-negative-batch",
        lambda: causal_self_attention().get_initial_cache(-1, 4),
        ValueError,
        ["batch_size=-1", "positive integer"],
    ),
    (
        "self-attention-get_initial_cache-float-batch",
        lambda: causal_self_attention().get_initial_cache(2.5, 4),
        TypeError,
        ["batch_size=2.5", "positive integer or an integer scalar tensor"],
    ),
    (
        "self-attention-get_initial_cache-str-batch",
        lambda: causal_self_attention().get_initial_cache("2", 4),
        TypeError,
        ["batch_size='2'", "positive integer"],
    ),
    (
        "get_initial_cache-negative-batch-tensor",
        lambda: causal_self_attention().get_initial_cache(
            ops.convert_to_tensor(-2), 4
        ),
        ValueError,
        ["batch_size=-2", "positive integer"],
    ),
    (
        "decoder-get_initial_cache-zero-length",
        lambda: decoder().get_initial_cache(2, 0),
        ValueError,
        ["max_length=0", "positive integer"],
    ),
    (
        "compute_cache-wrong-width",
        lambda: cross_attention().compute_cache(floats(B, S, D + 1)),
        ValueError,
        ["value.shape=(2, 7, 13)", "last dimension 12"],
    ),
    (
        "compute_cache-rank-2",
        lambda: cross_attention().compute_cache(floats(B, D)),
        ValueError,
        ["value.shape=(2, 12)", "rank-3"],
    ),
    (
        "compute_cache-key-length",
        lambda: cross_attention().compute_cache(
            floats(B, S, D), floats(B, S - 1, D)
        ),
        ValueError,
        ["sequence length", "key.shape=(2, 6, 12)"],
    ),
    (
        "compute_cache-int",
        lambda: cross_attention().compute_cache(np.ones((B, S, D), "int32")),
        TypeError,
        ["value.dtype=int32", "floating-point"],
    ),
    (
        "compute_cross_attention_cache-wrong-width",
        lambda: decoder().compute_cross_attention_cache(floats(B, S, D + 1)),
        ValueError,
        ["encoder_sequence.shape=(2, 7, 13)", "last dimension 12"],
    ),
    (
        "compute_cross_attention_cache-rank-2",
        lambda: decoder().compute_cross_attention_cache(floats(B, D)),
        ValueError,
        ["encoder_sequence.shape=(2, 12)", "rank-3"],
    ),
    (
        "compute_cross_attention_cache-int",
        lambda: decoder().compute_cross_attention_cache(
            np.ones((B, S, D), "int32")
        ),
        TypeError,
        ["encoder_sequence.dtype=int32", "floating-point"],
    ),
    (
        "mha-use_causal_mask-str",
        lambda: MultiHeadAttention(HEADS, use_causal_mask="no"),
        TypeError,
        ["use_causal_mask='no'", "True or False"],
    ),
    (
        "mhsa-use_bias-str",
        lambda: MultiHeadSelfAttention(HEADS, use_bias="no"),
        TypeError,
        ["use_bias='no'", "True or False"],
    ),
    (
        "encoder-norm_first-int",
        lambda: TransformerEncoderBlock(
            HEADS, intermediate_dim=FFN, norm_first=1
        ),
        TypeError,
        ["norm_first=1", "True or False"],
    ),
    (
        "spe-add_to_input-none",
        lambda: SinusoidalPositionEncoding(add_to_input=None),
        TypeError,
        ["add_to_input=None", "True or False"],
    ),
    (
        "spe-max_wavelength-nan",
        lambda: SinusoidalPositionEncoding(max_wavelength=float("nan")),
        ValueError,
        ["max_wavelength=nan", "positive finite number"],
    ),
    (
        "spe-max_wavelength-inf",
        lambda: SinusoidalPositionEncoding(max_wavelength=float("inf")),
        ValueError,
        ["max_wavelength=inf", "positive finite number"],
    ),
    (
        "spe-start_index-float-tensor",
        lambda: SinusoidalPositionEncoding()(
            floats(B, T, D), start_index=ops.convert_to_tensor(1.0)
        ),
        TypeError,
        ["start_index=", "integer scalar tensor"],
    ),
    (
        "spe-start_index-negative-tensor",
        lambda: SinusoidalPositionEncoding()(
            floats(B, T, D), start_index=ops.convert_to_tensor(-2)
        ),
        ValueError,
        ["start_index=-2", "non-negative"],
    ),
    (
        "spe-int-inputs",
        lambda: SinusoidalPositionEncoding()(np.ones((B, T, D), "int32")),
        TypeError,
        ["inputs.dtype=int32", "floating-point"],
    ),
    (
        "save_model-missing-directory",
        lambda: keras_mha.saving.save_model(
            keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]),
            os.path.join("missing_directory", "m.keras"),
        ),
        FileNotFoundError,
        ["filepath='missing_directory/m.keras'", "does not exist"],
    ),
    (
        "plot_attention_scores-columns-0",
        lambda: keras_mha.visualize.plot_attention_scores(
            np.full((HEADS, T, T), 0.2), columns=0
        ),
        ValueError,
        ["columns=0", "positive integer"],
    ),
    (
        "plot_layer_attention-example-out-of-batch",
        lambda: keras_mha.visualize.plot_layer_attention(
            MultiHeadSelfAttention(HEADS), floats(B, T, D), example=5
        ),
        ValueError,
        ["example=5", "batch of 2"],
    ),
]
if keras.backend.backend() == "tensorflow":
    ARGUMENT_CASES += [
        (
            f"{name}-flash_attention-on-tensorflow",
            make,
            ValueError,
            ["flash_attention=True", "TensorFlow"],
        )
        for name, make in (
            ("mha", lambda: MultiHeadAttention(HEADS, flash_attention=True)),
            (
                "mhsa",
                lambda: MultiHeadSelfAttention(HEADS, flash_attention=True),
            ),
            (
                "encoder",
                lambda: TransformerEncoderBlock(
                    HEADS, intermediate_dim=FFN, flash_attention=True
                ),
            ),
            (
                "decoder",
                lambda: TransformerDecoderBlock(
                    HEADS, intermediate_dim=FFN, flash_attention=True
                ),
            ),
        )
    ]


@pytest.mark.parametrize(
    "thunk, error_type, fragments",
    [case[1:] for case in ARGUMENT_CASES],
    ids=[case[0] for case in ARGUMENT_CASES],
)
def test_bad_arguments_are_clear_errors(
    thunk, error_type, fragments, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # For the relative path of save_model.
    assert_clear_error(thunk, error_type, fragments)


def test_get_initial_cache_takes_a_batch_size_tensor():
    """As a decoding loop passes `ops.shape(ids)[0]` when it is traced."""
    layer = causal_self_attention()
    cache = layer.get_initial_cache(ops.convert_to_tensor(B), 4)
    assert tuple(cache.shape) == (B, 2, HEADS, 4, HEAD)


def test_save_model_to_a_missing_directory_writes_nothing(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(FileNotFoundError):
        keras_mha.saving.save_model(model, tmp_path / "missing" / "m.keras")
    assert list(tmp_path.iterdir()) == []


def test_self_attention_has_no_compute_cache():
    """The sibling design: no inherited method of another layer."""
    with pytest.raises(AttributeError, match="compute_cache"):
        causal_self_attention().compute_cache(floats(B, T, D))


# Attention masks as keras.layers.MultiHeadAttention takes them: axes are
# inserted at -3 up to rank 4, then the mask broadcasts to (b, n, t, s).
MASK_SHAPES = [
    (B, T, S),
    (T, S),
    (1, T, S),
    (1, 1, T, S),
    (B, 1, T, S),
    (B, HEADS, T, S),
    (B, 1, S),
    (1, S),
    (B, T, 1),
    (1, 1, 1, S),
    (1, HEADS, 1, S),
]


def _random_mask(shape):
    mask = np.random.default_rng(len(shape)).random(shape) > 0.4
    mask[..., 0] = True  # Every query sees a key (Keras averages otherwise).
    return mask


def _keras_twin(layer):
    """A keras.layers.MultiHeadAttention with `layer`'s weights."""
    twin = keras.layers.MultiHeadAttention(HEADS, HEAD)
    twin(floats(B, T, D), floats(B, S, D))
    twin.set_weights(layer.get_weights())
    return twin


@pytest.mark.parametrize("shape", MASK_SHAPES, ids=str)
def test_attention_mask_shapes_mean_what_they_mean_in_keras(shape):
    layer = MultiHeadAttention(HEADS, bias_initializer="random_normal")
    query, value = floats(B, T, D), floats(B, S, D, seed=1)
    layer(query, value)
    mask = _random_mask(shape)
    ours, our_scores = layer(
        query, value, attention_mask=mask, return_attention_scores=True
    )
    theirs, their_scores = _keras_twin(layer)(
        query, value, attention_mask=mask, return_attention_scores=True
    )
    np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), atol=1e-5)
    np.testing.assert_allclose(
        to_numpy(our_scores), to_numpy(their_scores), atol=1e-5
    )
    # The fused or explicit path without scores agrees too.
    np.testing.assert_allclose(
        to_numpy(layer(query, value, attention_mask=mask)),
        to_numpy(theirs),
        atol=1e-5,
    )


@pytest.mark.parametrize("shape", [(T, T), (1, T, T), (1, 1, T, T), (B, 1, T)])
def test_self_attention_mask_equals_its_explicit_broadcast(shape):
    layer = MultiHeadSelfAttention(HEADS, use_causal_mask=True)
    x = floats(B, T, D)
    mask = _random_mask(shape)
    explicit = np.broadcast_to(
        mask.reshape(
            mask.shape[:-2] + (1,) * (4 - mask.ndim) + mask.shape[-2:]
        ),
        (B, HEADS, T, T),
    )
    np.testing.assert_allclose(
        to_numpy(layer(x, attention_mask=mask)),
        to_numpy(layer(x, attention_mask=explicit)),
        atol=1e-6,
    )


def test_submodules_are_reachable_from_the_package():
    """`import keras_mha` alone, in a fresh interpreter."""
    code = (
        "import keras_mha\n"
        "print(keras_mha.saving.save_model.__name__,"
        " keras_mha.seq2seq.export.export_translator.__name__,"
        " keras_mha.generate.__name__,"
        " keras_mha.visualize.plot_attention_scores.__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [
        "save_model",
        "export_translator",
        "generate",
        "plot_attention_scores",
    ]
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        keras_mha.nonexistent  # noqa: B018


def _one_token_calls():
    """Calls whose sequence or key length is 1: cached decoding steps."""
    x, one = floats(B, T, D), floats(B, 1, D)
    self_attention = built(
        MultiHeadSelfAttention(HEADS, use_causal_mask=True), x
    )
    cross = built(MultiHeadAttention(HEADS), x, one)
    block = built(TransformerDecoderBlock(HEADS, intermediate_dim=FFN), x, one)
    return {
        "self-attention-one-token": lambda: self_attention(one),
        "self-attention-cached-step": lambda: self_attention(
            one,
            cache=self_attention.get_initial_cache(B, 1),
            cache_update_index=0,
            return_attention_scores=True,
        ),
        "cross-attention-one-token-source": lambda: cross(
            x, one, return_attention_scores=True
        ),
        "cross-attention-cached": lambda: cross(
            one, cache=cross.compute_cache(one)
        ),
        "encoder-one-token": lambda: built(
            TransformerEncoderBlock(HEADS, intermediate_dim=FFN), one
        )(one, return_attention_scores=True),
        "decoder-cached-step-one-token-source": lambda: block(
            one,
            one,
            self_attention_cache=block.get_initial_cache(B, 1),
            self_attention_cache_update_index=0,
            return_attention_scores=True,
        ),
    }


@pytest.mark.parametrize("name", sorted(_one_token_calls()))
def test_length_one_calls_warn_nothing(name, caplog):
    call = _one_token_calls()[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    assert [str(w.message) for w in caught] == []
    assert caplog.records == []


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no_bias"])
def test_padded_queries_output_the_output_bias(use_bias):
    """As documented: a zero attention output, then the output projection."""
    layer = MultiHeadSelfAttention(
        HEADS,
        use_bias=use_bias,
        bias_initializer=keras.initializers.Constant(0.3),
    )
    mask = np.ones((B, T), bool)
    mask[0, 3:] = False
    outputs = to_numpy(layer(floats(B, T, D), mask=mask))
    bias = (
        to_numpy(layer.output_dense.bias)
        if use_bias
        else np.zeros(D, "float32")
    )
    np.testing.assert_allclose(outputs[0, 3:], np.broadcast_to(bias, (2, D)))
    assert np.all(np.abs(outputs[0, :3] - bias).sum(-1) > 1e-3)


def test_int8_quantize_warns_about_none_of_our_layers():
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(50, D, mask_zero=True)(tokens)
    x = SinusoidalPositionEncoding()(x)
    x = TransformerEncoderBlock(HEADS, intermediate_dim=FFN)(x)
    x = MultiHeadSelfAttention(HEADS, name="attention")(x)
    x = TransformerDecoderBlock(HEADS, intermediate_dim=FFN)(x, x)
    model = keras.Model(tokens, x)
    ids = np.random.default_rng(0).integers(1, 50, (B, T))
    before = to_numpy(model(ids))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.quantize("int8")
    ours = {
        cls.__name__
        for cls in (
            SinusoidalPositionEncoding,
            TransformerEncoderBlock,
            MultiHeadSelfAttention,
            MultiHeadAttention,
            TransformerDecoderBlock,
        )
    }
    complaints = [
        str(w.message) for w in caught if "quantize" in str(w.message)
    ]
    assert not [c for c in complaints if any(name in c for name in ours)]
    attention = model.get_layer("attention")
    assert attention.qkv_dense.quantization_mode == "int8"
    after = to_numpy(model(ids))
    assert np.abs(after - before).max() < 0.1 * np.abs(before).max()
