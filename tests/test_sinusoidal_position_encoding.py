import keras
import keras_hub
import numpy as np
import pytest
from keras import ops

import keras_mha
from tests.layer_test_case import decode_in_steps
from tests.layer_test_case import run_layer_test
from tests.layer_test_case import to_numpy

BATCH, SEQ = 2, 5


def _formula(positions, width, max_wavelength=10000.0):
    """PE(pos, 2i) = sin(pos / w^(2i/d)), PE(pos, 2i+1) = cos(same angle)."""
    pe = np.zeros((len(positions), width))
    for pos_index, pos in enumerate(positions):
        for k in range(width):
            i = k // 2
            angle = pos / max_wavelength ** (2 * i / width)
            pe[pos_index, k] = np.sin(angle) if k % 2 == 0 else np.cos(angle)
    return pe


@pytest.mark.parametrize("add_to_input", [True, False], ids=["add", "alone"])
def test_layer_conventions(add_to_input, tmp_path):
    run_layer_test(
        keras_mha.SinusoidalPositionEncoding,
        {"add_to_input": add_to_input, "max_wavelength": 500},
        np.random.default_rng(0)
        .normal(size=(BATCH, SEQ, 12))
        .astype("float32"),
        expected_output_shape=(BATCH, SEQ, 12),
        expected_num_trainable_weights=0,
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("width", [12, 7], ids=["even_width", "odd_width"])
def test_values_equal_the_formula(width):
    x = (
        np.random.default_rng(0)
        .normal(size=(BATCH, SEQ, width))
        .astype("float32")
    )
    layer = keras_mha.SinusoidalPositionEncoding()
    np.testing.assert_allclose(
        to_numpy(layer(x)) - x,
        np.broadcast_to(_formula(range(SEQ), width), x.shape),
        atol=1e-6,
    )
    alone = keras_mha.SinusoidalPositionEncoding(add_to_input=False)(x)
    np.testing.assert_allclose(
        to_numpy(alone)[1], _formula(range(SEQ), width), atol=1e-6
    )


def test_golden_values():
    # Position 1, width 4: sin(1), cos(1), sin(1/100), cos(1/100).
    pe = keras_mha.SinusoidalPositionEncoding(add_to_input=False)(
        np.zeros((1, 2, 4), "float32")
    )
    np.testing.assert_allclose(
        to_numpy(pe)[0, 1],
        [0.84147098, 0.54030231, 0.00999983, 0.99995],
        atol=1e-6,
    )


def test_equals_keras_hub_sine_position_encoding():
    x = np.zeros((BATCH, 9, 16), "float32")
    ours = keras_mha.SinusoidalPositionEncoding(add_to_input=False)(x)
    theirs = keras_hub.layers.SinePositionEncoding()(x)
    np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), atol=1e-5)


def test_start_index_step_by_step_equals_full():
    x = np.random.default_rng(0).normal(size=(BATCH, SEQ, 6)).astype("float32")
    layer = keras_mha.SinusoidalPositionEncoding()
    full = to_numpy(layer(x))
    steps, _ = decode_in_steps(
        lambda chunk, index, _: (layer(chunk, start_index=index), None),
        x,
        (1,) * SEQ,
    )
    np.testing.assert_allclose(steps, full, atol=1e-6)
    np.testing.assert_allclose(
        to_numpy(layer(x[:, 2:], start_index=ops.convert_to_tensor(2))),
        full[:, 2:],
        atol=1e-6,
    )


def test_positions_are_exact_under_float16():
    # keras_hub computes positions in the compute dtype, so float16 rounds
    # position 3001 to 3000; ours computes them in float32.
    x = np.zeros((1, 2, 8), "float32")
    layer = keras_mha.SinusoidalPositionEncoding(
        add_to_input=False, dtype="mixed_float16"
    )
    pe = to_numpy(layer(x, start_index=3000)).astype("float32")
    np.testing.assert_allclose(pe[0], _formula([3000, 3001], 8), atol=2e-3)


def test_keeps_the_mask_and_padding_cannot_leak():
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(10, 12, mask_zero=True)(tokens)
    x = keras_mha.SinusoidalPositionEncoding()(x)
    assert x._keras_mask is not None
    x = keras_mha.MultiHeadSelfAttention(3)(x)
    model = keras.Model(tokens, x)
    short = np.array([[4, 5, 6]])
    padded = np.array([[4, 5, 6, 0, 0]])
    np.testing.assert_allclose(
        to_numpy(model(padded))[:, :3], to_numpy(model(short)), atol=1e-5
    )


def test_unknown_sequence_length():
    inputs = keras.Input((None, 6))
    model = keras.Model(inputs, keras_mha.SinusoidalPositionEncoding()(inputs))
    for length in (3, 8):
        assert model(np.zeros((1, length, 6), "float32")).shape == (
            1,
            length,
            6,
        )


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_wavelength=0"):
        keras_mha.SinusoidalPositionEncoding(max_wavelength=0)
    layer = keras_mha.SinusoidalPositionEncoding()
    with pytest.raises(ValueError, match=r"rank-3.*\(2, 6\)"):
        layer(np.zeros((2, 6), "float32"))
    with pytest.raises(ValueError, match="start_index=-1"):
        layer(np.zeros((2, 3, 6), "float32"), start_index=-1)
