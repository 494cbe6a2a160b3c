"""`model.quantize(mode)` on models of our layers: accuracy and reloading.

A model with every layer of the package is quantized to int8, int4 and
float8. Our layers warn about nothing (Keras's own leaf layers without
weights, `InputLayer`, `Dropout` and `LayerNormalization`, do, as they do
in any Keras model, and `Embedding` has no float8 mode); every projection
of our layers is quantized; the outputs stay within a relative error of the
float model's, measured here; and the quantized model saves to `.keras`
and reloads with `safe_mode=True` to the same outputs.
"""

import warnings

import keras
import numpy as np
import pytest

import keras_mha

VOCAB, WIDTH, HEADS, FFN = 41, 32, 4, 48
# Relative RMS error of the quantized model's outputs: about twice what
# `_relative_error` gave for `build_model()` on TensorFlow (int8 0.016,
# int4 0.20, float8 0.11).
TOLERANCE = {"int8": 0.04, "int4": 0.4, "float8": 0.25}


def build_model():
    keras.utils.set_random_seed(0)
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, WIDTH, mask_zero=True)(tokens)
    x = keras_mha.SinusoidalPositionEncoding()(x)
    x = keras_mha.TransformerEncoderBlock(
        HEADS, intermediate_dim=FFN, name="encoder"
    )(x)
    y = keras_mha.TransformerDecoderBlock(
        HEADS, intermediate_dim=FFN, name="decoder"
    )(x, x)
    y = keras_mha.MultiHeadSelfAttention(HEADS, name="self_attention")(y)
    y = keras_mha.MultiHeadAttention(HEADS, name="cross_attention")(y, x)
    return keras.Model(tokens, keras.layers.Dense(VOCAB, name="logits")(y))


def _tokens():
    tokens = np.random.default_rng(1).integers(1, VOCAB, (3, 9))
    tokens[0, 6:] = 0
    return tokens.astype("int32")


def _projections(model):
    """The Dense/EinsumDense sub-layers of our layers, by path."""
    ours = (
        keras_mha.MultiHeadAttention,
        keras_mha.MultiHeadSelfAttention,
        keras_mha.TransformerEncoderBlock,
        keras_mha.TransformerDecoderBlock,
    )
    found = {}
    for layer in model.layers:
        if isinstance(layer, ours):
            for sub in layer._flatten_layers(include_self=False):
                if isinstance(
                    sub, (keras.layers.Dense, keras.layers.EinsumDense)
                ):
                    found[sub.path] = sub
    return found


def _relative_error(got, want):
    return np.sqrt(np.mean((got - want) ** 2) / np.mean(want**2))


@pytest.mark.parametrize("mode", list(TOLERANCE))
def test_quantized_model_is_close_and_reloads(mode, tmp_path):
    model = build_model()
    tokens = _tokens()
    expected = keras.ops.convert_to_numpy(model(tokens))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.quantize(mode)
    ours = [
        str(w.message)
        for w in caught
        if any(name in str(w.message) for name in keras_mha.__all__)
    ]
    assert not ours, ours
    projections = _projections(model)
    # Encoder 4, decoder 8 (self, cross, FFN), self- 2 and cross-attention 4.
    assert len(projections) == 18
    for path, layer in projections.items():
        assert layer.quantization_mode == mode, path

    quantized = keras.ops.convert_to_numpy(model(tokens))
    error = _relative_error(quantized, expected)
    assert 0 < error < TOLERANCE[mode], error

    path = tmp_path / f"{mode}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    for sub_path, layer in _projections(reloaded).items():
        assert layer.quantization_mode == mode, sub_path
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(tokens)), quantized, atol=1e-6
    )


def test_float_layers_save_their_plain_policy():
    """Unquantized, the config's dtype is the layer's policy, not a map."""
    model = build_model()
    for name in ("encoder", "decoder", "self_attention", "cross_attention"):
        dtype = model.get_layer(name).get_config()["dtype"]
        assert dtype["class_name"] == "DTypePolicy", (name, dtype)
