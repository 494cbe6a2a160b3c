"""Bad arguments and inputs, table-driven, for every public layer.

Each row builds or calls a layer wrongly and names the error it must raise
and what its message must say: the argument, and the expected form. The
error must be raised by the package's own checks (the innermost frame is in
`keras_mha`), never by a backend op deep inside a call. Zero-length
sequences are valid input (see `test_zero_length_sequences`).
"""

import keras
import numpy as np
import pytest

from keras_mha import MultiHeadAttention
from keras_mha import MultiHeadSelfAttention
from keras_mha import SinusoidalPositionEncoding
from keras_mha import TransformerDecoderBlock
from keras_mha import TransformerEncoderBlock
from tests.layer_test_case import assert_clear_error

B, T, S, D, HEADS, FFN = 2, 5, 7, 12, 3, 7


def floats(*shape):
    return np.random.default_rng(0).random(shape, dtype="float32")


def ints(*shape):
    return np.random.default_rng(0).integers(1, 9, shape).astype("int32")


def bools(*shape):
    return np.ones(shape, bool)


def called(layer, *args, **kwargs):
    """`layer` after a first, valid call (so it is built)."""
    layer(*args, **kwargs)
    return layer


x, e = floats(B, T, D), floats(B, S, D)

# (id, thunk, error type, fragments the message must contain)
CONSTRUCTOR_CASES = [
    (
        "mha-num_heads-0",
        lambda: MultiHeadAttention(0),
        ValueError,
        ["num_heads=0", "positive integer"],
    ),
    (
        "mha-num_heads-negative",
        lambda: MultiHeadAttention(-2),
        ValueError,
        ["num_heads=-2", "positive integer"],
    ),
    (
        "mha-num_heads-float",
        lambda: MultiHeadAttention(2.5),
        TypeError,
        ["num_heads=2.5", "positive integer"],
    ),
    (
        "mha-num_heads-bool",
        lambda: MultiHeadAttention(True),
        TypeError,
        ["num_heads=True", "positive integer"],
    ),
    (
        "mha-num_heads-str",
        lambda: MultiHeadAttention("3"),
        TypeError,
        ["num_heads='3'", "positive integer"],
    ),
    (
        "mha-key_dim-0",
        lambda: MultiHeadAttention(3, key_dim=0),
        ValueError,
        ["key_dim=0", "positive integer"],
    ),
    (
        "mha-value_dim-negative",
        lambda: MultiHeadAttention(3, value_dim=-1),
        ValueError,
        ["value_dim=-1", "positive integer"],
    ),
    (
        "mha-output_dim-float",
        lambda: MultiHeadAttention(3, output_dim=1.5),
        TypeError,
        ["output_dim=1.5", "positive integer"],
    ),
    (
        "mha-dropout-1",
        lambda: MultiHeadAttention(3, dropout=1.0),
        ValueError,
        ["dropout=1.0", "[0, 1)"],
    ),
    (
        "mha-dropout-negative",
        lambda: MultiHeadAttention(3, dropout=-0.1),
        ValueError,
        ["dropout=-0.1", "[0, 1)"],
    ),
    (
        "mha-dropout-nan",
        lambda: MultiHeadAttention(3, dropout=float("nan")),
        ValueError,
        ["dropout=nan", "[0, 1)"],
    ),
    (
        "mha-dropout-str",
        lambda: MultiHeadAttention(3, dropout="0.1"),
        TypeError,
        ["dropout='0.1'", "[0, 1)"],
    ),
    (
        "mha-flash_attention-str",
        lambda: MultiHeadAttention(3, flash_attention="yes"),
        ValueError,
        ["flash_attention='yes'", "None, True or False"],
    ),
    (
        "mhsa-num_heads-0",
        lambda: MultiHeadSelfAttention(0),
        ValueError,
        ["num_heads=0", "positive integer"],
    ),
    (
        "mhsa-dropout-1.5",
        lambda: MultiHeadSelfAttention(3, dropout=1.5),
        ValueError,
        ["dropout=1.5", "[0, 1)"],
    ),
    (
        "spe-max_wavelength-0",
        lambda: SinusoidalPositionEncoding(max_wavelength=0),
        ValueError,
        ["max_wavelength=0", "positive finite number"],
    ),
    (
        "spe-max_wavelength-str",
        lambda: SinusoidalPositionEncoding(max_wavelength="1e4"),
        TypeError,
        ["max_wavelength='1e4'", "positive finite number"],
    ),
    (
        "encoder-num_heads-0",
        lambda: TransformerEncoderBlock(0, intermediate_dim=FFN),
        ValueError,
        ["num_heads=0", "positive integer"],
    ),
    (
        "encoder-intermediate_dim-0",
        lambda: TransformerEncoderBlock(HEADS, intermediate_dim=0),
        ValueError,
        ["intermediate_dim=0", "positive integer"],
    ),
    (
        "encoder-dropout-1",
        lambda: TransformerEncoderBlock(
            HEADS, intermediate_dim=FFN, dropout=1.0
        ),
        ValueError,
        ["dropout=1.0", "[0, 1)"],
    ),
    (
        "encoder-layer_norm_epsilon-0",
        lambda: TransformerEncoderBlock(
            HEADS, intermediate_dim=FFN, layer_norm_epsilon=0
        ),
        ValueError,
        ["layer_norm_epsilon=0", "positive finite number"],
    ),
    (
        "decoder-num_heads-float",
        lambda: TransformerDecoderBlock(1.5, intermediate_dim=FFN),
        TypeError,
        ["num_heads=1.5", "positive integer"],
    ),
    (
        "decoder-dropout-negative",
        lambda: TransformerDecoderBlock(
            HEADS, intermediate_dim=FFN, dropout=-1
        ),
        ValueError,
        ["dropout=-1", "[0, 1)"],
    ),
    (
        "decoder-flash_attention-int",
        lambda: TransformerDecoderBlock(
            HEADS, intermediate_dim=FFN, flash_attention=2
        ),
        ValueError,
        ["flash_attention=2", "None, True or False"],
    ),
]

RANK = "rank-3 tensor of shape (batch, sequence, features)"
FLOAT = "floating-point tensor"

CALL_CASES = [
    # Wrong rank.
    (
        "mhsa-inputs-rank-2",
        lambda: MultiHeadSelfAttention(HEADS)(floats(B, D)),
        ValueError,
        ["inputs.shape=(2, 12)", RANK],
    ),
    (
        "mhsa-inputs-rank-4",
        lambda: MultiHeadSelfAttention(HEADS)(floats(B, T, 2, D)),
        ValueError,
        ["inputs.shape=(2, 5, 2, 12)", RANK],
    ),
    (
        "mha-value-rank-2",
        lambda: MultiHeadAttention(HEADS)(x, floats(S, D)),
        ValueError,
        ["value.shape=(7, 12)", RANK],
    ),
    (
        "mha-key-rank-4",
        lambda: MultiHeadAttention(HEADS)(x, e, key=floats(B, S, 1, D)),
        ValueError,
        ["key.shape=(2, 7, 1, 12)", RANK],
    ),
    (
        "spe-token-ids-rank-2",
        lambda: SinusoidalPositionEncoding()(ints(B, T)),
        ValueError,
        ["inputs.shape=(2, 5)", RANK],
    ),
    (
        "encoder-inputs-rank-2",
        lambda: TransformerEncoderBlock(HEADS, intermediate_dim=FFN)(
            floats(B, D)
        ),
        ValueError,
        ["inputs.shape=(2, 12)", RANK],
    ),
    (
        "decoder-encoder_sequence-rank-2",
        lambda: TransformerDecoderBlock(HEADS, intermediate_dim=FFN)(
            x, floats(B, D)
        ),
        ValueError,
        ["encoder_sequence.shape=(2, 12)", RANK],
    ),
    # Wrong width, after the layer was built for another one.
    (
        "mhsa-inputs-width",
        lambda: called(MultiHeadSelfAttention(HEADS), x)(floats(B, T, 9)),
        ValueError,
        ["inputs.shape=(2, 5, 9)", "last dimension 12"],
    ),
    (
        "mha-query-width",
        lambda: called(MultiHeadAttention(HEADS), x, e)(floats(B, T, 9), e),
        ValueError,
        ["query.shape=(2, 5, 9)", "last dimension 12"],
    ),
    (
        "mha-value-width",
        lambda: called(MultiHeadAttention(HEADS), x, e)(x, floats(B, S, 9)),
        ValueError,
        ["value.shape=(2, 7, 9)", "last dimension 12"],
    ),
    (
        "mha-key-width",
        lambda: called(MultiHeadAttention(HEADS), x, e)(
            x, e, key=floats(B, S, 9)
        ),
        ValueError,
        ["key.shape=(2, 7, 9)", "last dimension 12"],
    ),
    (
        "spe-inputs-width",
        lambda: called(SinusoidalPositionEncoding(), x)(floats(B, T, 9)),
        ValueError,
        ["inputs.shape=(2, 5, 9)", "last dimension 12"],
    ),
    (
        "encoder-inputs-width",
        lambda: called(TransformerEncoderBlock(HEADS, intermediate_dim=FFN), x)(
            floats(B, T, 9)
        ),
        ValueError,
        ["inputs.shape=(2, 5, 9)", "last dimension 12"],
    ),
    (
        "decoder-decoder_sequence-width",
        lambda: called(
            TransformerDecoderBlock(HEADS, intermediate_dim=FFN), x, e
        )(floats(B, T, 9), e),
        ValueError,
        ["decoder_sequence.shape=(2, 5, 9)", "last dimension 12"],
    ),
    (
        "decoder-encoder_sequence-width",
        lambda: called(
            TransformerDecoderBlock(HEADS, intermediate_dim=FFN), x, e
        )(x, floats(B, S, 9)),
        ValueError,
        ["encoder_sequence.shape=(2, 7, 9)", "last dimension 12"],
    ),
    # Sizes that must agree between inputs.
    (
        "mha-batch-mismatch",
        lambda: MultiHeadAttention(HEADS)(x, floats(B + 1, S, D)),
        ValueError,
        ["query.shape=(2, 5, 12)", "value.shape=(3, 7, 12)", "same batch size"],
    ),
    (
        "mha-key-value-length-mismatch",
        lambda: MultiHeadAttention(HEADS)(x, e, key=floats(B, S + 1, D)),
        ValueError,
        ["key.shape=(2, 8, 12)", "same sequence length"],
    ),
    # Integer ids where embeddings are expected.
    (
        "mhsa-int-ids",
        lambda: MultiHeadSelfAttention(HEADS)(ints(B, T, D)),
        TypeError,
        ["inputs.dtype=int32", FLOAT],
    ),
    (
        "mha-int-query",
        lambda: MultiHeadAttention(HEADS)(ints(B, T, D), e),
        TypeError,
        ["query.dtype=int32", FLOAT],
    ),
    (
        "mha-int-value",
        lambda: MultiHeadAttention(HEADS)(x, ints(B, S, D)),
        TypeError,
        ["value.dtype=int32", FLOAT],
    ),
    (
        "mha-int-key",
        lambda: MultiHeadAttention(HEADS)(x, e, key=ints(B, S, D)),
        TypeError,
        ["key.dtype=int32", FLOAT],
    ),
    (
        "encoder-int-ids",
        lambda: TransformerEncoderBlock(HEADS, intermediate_dim=FFN)(
            ints(B, T, D)
        ),
        TypeError,
        ["inputs.dtype=int32", FLOAT],
    ),
    (
        "decoder-int-decoder_sequence",
        lambda: TransformerDecoderBlock(HEADS, intermediate_dim=FFN)(
            ints(B, T, D), e
        ),
        TypeError,
        ["decoder_sequence.dtype=int32", FLOAT],
    ),
    (
        "decoder-int-encoder_sequence",
        lambda: TransformerDecoderBlock(HEADS, intermediate_dim=FFN)(
            x, ints(B, S, D)
        ),
        TypeError,
        ["encoder_sequence.dtype=int32", FLOAT],
    ),
    # Masks of the wrong shape.
    (
        "mhsa-mask-length",
        lambda: MultiHeadSelfAttention(HEADS)(x, mask=bools(B, T + 1)),
        ValueError,
        ["mask.shape=(2, 6)", "expected shape (2, 5)"],
    ),
    (
        "mhsa-mask-rank",
        lambda: MultiHeadSelfAttention(HEADS)(x, mask=bools(B, T, 1)),
        ValueError,
        ["mask.shape=(2, 5, 1)", "expected shape (2, 5)"],
    ),
    (
        "mhsa-attention_mask-shape",
        lambda: MultiHeadSelfAttention(HEADS)(
            x, attention_mask=bools(B, T, T + 1)
        ),
        ValueError,
        ["attention_mask.shape=(2, 5, 6)", "(2, 3, 5, 5)"],
    ),
    (
        "mha-query_mask-shape",
        lambda: MultiHeadAttention(HEADS)(x, e, query_mask=bools(B, S)),
        ValueError,
        ["query_mask.shape=(2, 7)", "expected shape (2, 5)"],
    ),
    (
        "mha-value_mask-shape",
        lambda: MultiHeadAttention(HEADS)(x, e, value_mask=bools(B, T)),
        ValueError,
        ["value_mask.shape=(2, 5)", "expected shape (2, 7)"],
    ),
    (
        "mha-key_mask-shape",
        lambda: MultiHeadAttention(HEADS)(x, e, key_mask=bools(B, T)),
        ValueError,
        ["key_mask.shape=(2, 5)", "expected shape (2, 7)"],
    ),
    (
        "mha-attention_mask-transposed",
        lambda: MultiHeadAttention(HEADS)(x, e, attention_mask=bools(B, S, T)),
        ValueError,
        ["attention_mask.shape=(2, 7, 5)", "(2, 3, 5, 7)"],
    ),
    (
        "mha-attention_mask-heads",
        lambda: MultiHeadAttention(HEADS)(
            x, e, attention_mask=bools(B, HEADS + 1, T, S)
        ),
        ValueError,
        ["attention_mask.shape=(2, 4, 5, 7)", "(2, 3, 5, 7)"],
    ),
    (
        "encoder-padding_mask-shape",
        lambda: TransformerEncoderBlock(HEADS, intermediate_dim=FFN)(
            x, padding_mask=bools(B, T + 1)
        ),
        ValueError,
        ["padding_mask.shape=(2, 6)", "expected shape (2, 5)"],
    ),
    (
        "encoder-attention_mask-shape",
        lambda: TransformerEncoderBlock(HEADS, intermediate_dim=FFN)(
            x, attention_mask=bools(B, T)
        ),
        ValueError,
        ["attention_mask.shape=(2, 5)", "(2, 3, 5, 5)"],
    ),
    (
        "decoder-decoder_padding_mask-shape",
        lambda: TransformerDecoderBlock(HEADS, intermediate_dim=FFN)(
            x, e, decoder_padding_mask=bools(B, S)
        ),
        ValueError,
        ["decoder_padding_mask.shape=(2, 7)", "expected shape (2, 5)"],
    ),
    (
        "decoder-encoder_padding_mask-shape",
        lambda: TransformerDecoderBlock(HEADS, intermediate_dim=FFN)(
            x, e, encoder_padding_mask=bools(B, T)
        ),
        ValueError,
        ["encoder_padding_mask.shape=(2, 5)", "expected shape (2, 7)"],
    ),
    (
        "decoder-decoder_attention_mask-shape",
        lambda: TransformerDecoderBlock(HEADS, intermediate_dim=FFN)(
            x, e, decoder_attention_mask=bools(B, T, S)
        ),
        ValueError,
        ["decoder_attention_mask.shape=(2, 5, 7)", "(2, 3, 5, 5)"],
    ),
    # Heads that don't divide the width.
    (
        "mhsa-num_heads-divides-width",
        lambda: MultiHeadSelfAttention(5)(x),
        ValueError,
        ["num_heads=5", "must divide the input width 12"],
    ),
    (
        "mha-num_heads-divides-width",
        lambda: MultiHeadAttention(5)(x, e),
        ValueError,
        ["num_heads=5", "must divide the input width 12"],
    ),
    (
        "encoder-num_heads-divides-width",
        lambda: TransformerEncoderBlock(5, intermediate_dim=FFN)(x),
        ValueError,
        ["num_heads=5", "must divide the input width 12"],
    ),
    (
        "decoder-num_heads-divides-width",
        lambda: TransformerDecoderBlock(7, intermediate_dim=FFN)(x, e),
        ValueError,
        ["num_heads=7", "must divide the input width 12"],
    ),
    # Positions.
    (
        "spe-start_index-negative",
        lambda: SinusoidalPositionEncoding()(x, start_index=-1),
        ValueError,
        ["start_index=-1", "non-negative integer"],
    ),
    (
        "spe-start_index-float",
        lambda: SinusoidalPositionEncoding()(x, start_index=1.5),
        TypeError,
        ["start_index=1.5", "non-negative integer"],
    ),
    (
        "spe-start_index-str",
        lambda: SinusoidalPositionEncoding()(x, start_index="3"),
        TypeError,
        ["start_index='3'", "non-negative integer"],
    ),
    # The decoder's cross-attention is fixed when it is built.
    (
        "decoder-encoder_sequence-missing",
        lambda: called(
            TransformerDecoderBlock(HEADS, intermediate_dim=FFN), x, e
        )(x),
        ValueError,
        ["encoder_sequence=None", "every call"],
    ),
]


@pytest.mark.parametrize(
    "thunk, error_type, fragments",
    [case[1:] for case in CONSTRUCTOR_CASES],
    ids=[case[0] for case in CONSTRUCTOR_CASES],
)
def test_bad_constructor_arguments(thunk, error_type, fragments):
    assert_clear_error(thunk, error_type, fragments)


@pytest.mark.parametrize(
    "thunk, error_type, fragments",
    [case[1:] for case in CALL_CASES],
    ids=[case[0] for case in CALL_CASES],
)
def test_bad_call_inputs(thunk, error_type, fragments):
    assert_clear_error(thunk, error_type, fragments)


def test_bad_mask_in_functional_model_raises_when_building_it():
    """Symbolic calls trace `call`, so its checks run on `keras.Input`s."""
    inputs = keras.Input((T, D))
    mask = keras.Input((T + 1,), dtype="bool")
    # JAX and PyTorch trace with a stand-in batch size for `None`.
    with pytest.raises(ValueError, match=r"padding_mask.shape=\(\w+, 6\)"):
        TransformerEncoderBlock(HEADS, intermediate_dim=FFN)(
            inputs, padding_mask=mask
        )


# Zero-length sequences are valid: a zero-length query gives a zero-length
# output; zero-length keys leave every query nothing to attend to, so its
# attention output is zeros (as for a fully masked row) and the layer returns
# the output projection's bias.
ZERO_LENGTH_CASES = [
    (
        "mhsa-empty-sequence",
        lambda: MultiHeadSelfAttention(HEADS),
        (floats(B, 0, D),),
        (B, 0, D),
    ),
    (
        "mhsa-causal-empty-sequence",
        lambda: MultiHeadSelfAttention(HEADS, use_causal_mask=True),
        (floats(B, 0, D),),
        (B, 0, D),
    ),
    (
        "mha-empty-query",
        lambda: MultiHeadAttention(HEADS),
        (floats(B, 0, D), e),
        (B, 0, D),
    ),
    (
        "mha-empty-keys",
        lambda: MultiHeadAttention(HEADS),
        (x, floats(B, 0, D)),
        (B, T, D),
    ),
    (
        "spe-empty-sequence",
        lambda: SinusoidalPositionEncoding(),
        (floats(B, 0, D),),
        (B, 0, D),
    ),
    (
        "encoder-empty-sequence",
        lambda: TransformerEncoderBlock(HEADS, intermediate_dim=FFN),
        (floats(B, 0, D),),
        (B, 0, D),
    ),
    (
        "decoder-empty-target",
        lambda: TransformerDecoderBlock(HEADS, intermediate_dim=FFN),
        (floats(B, 0, D), e),
        (B, 0, D),
    ),
    (
        "decoder-empty-source",
        lambda: TransformerDecoderBlock(HEADS, intermediate_dim=FFN),
        (x, floats(B, 0, D)),
        (B, T, D),
    ),
]


@pytest.mark.parametrize(
    "make_layer, inputs, expected_shape",
    [case[1:] for case in ZERO_LENGTH_CASES],
    ids=[case[0] for case in ZERO_LENGTH_CASES],
)
def test_zero_length_sequences(make_layer, inputs, expected_shape):
    layer = make_layer()
    outputs = keras.ops.convert_to_numpy(layer(*inputs))
    assert outputs.shape == expected_shape
    assert np.all(np.isfinite(outputs))


def test_empty_keys_give_the_output_bias():
    layer = MultiHeadAttention(
        HEADS, bias_initializer=keras.initializers.Constant(0.25)
    )
    outputs = keras.ops.convert_to_numpy(layer(x, floats(B, 0, D)))
    bias = keras.ops.convert_to_numpy(layer.output_dense.bias)
    np.testing.assert_array_equal(outputs, np.broadcast_to(bias, outputs.shape))
