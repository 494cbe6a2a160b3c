"""`TransformerSeq2Seq` and `TransformerCausalLM`: embedding scale, masks
and configs (cached decoding is in `test_seq2seq_decoding.py`)."""

import math

import keras
import numpy as np
import pytest

import keras_mha
from keras_mha import seq2seq
from tests.layer_test_case import to_numpy

SIZES = dict(hidden_dim=12, num_heads=3, intermediate_dim=7, num_layers=1)
SOURCES = np.array([[5, 6, 7, 0, 0], [8, 9, 0, 0, 0]], "int32")
TARGETS = np.array([[2, 4, 5, 6], [2, 7, 0, 0]], "int32")


def build(cls, scale_embeddings, seed=4):
    keras.utils.set_random_seed(seed)
    if cls == "seq2seq":
        return seq2seq.TransformerSeq2Seq(
            11, 13, scale_embeddings=scale_embeddings, dropout=0.0, **SIZES
        )
    return keras_mha.TransformerCausalLM(
        13, scale_embeddings=scale_embeddings, dropout=0.0, **SIZES
    )


def call(model, cls):
    if cls == "seq2seq":
        return to_numpy(model([SOURCES, TARGETS]))
    return to_numpy(model(TARGETS))


def test_embeddings_are_scaled_by_the_root_of_the_width():
    model = build("seq2seq", True)
    expected = to_numpy(model.source_embedding(SOURCES)) * math.sqrt(12)
    expected = to_numpy(model.source_position(expected))
    for block in model.encoder_blocks:
        expected = block(expected, padding_mask=SOURCES != 0)
    valid = SOURCES != 0
    np.testing.assert_allclose(
        to_numpy(model.encode(SOURCES))[valid],
        to_numpy(expected)[valid],
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("cls", ["seq2seq", "causal_lm"])
def test_the_scale_changes_the_model_and_nothing_else(cls):
    scaled, unscaled = build(cls, True), build(cls, False)
    assert len(scaled.weights) == len(unscaled.weights)
    unscaled.set_weights(scaled.get_weights())
    assert not np.allclose(call(scaled, cls), call(unscaled, cls))


def test_padding_stays_masked_through_the_scale():
    model = build("seq2seq", True)
    # The first row without its padding: its real positions must not move.
    alone = to_numpy(model.encode(SOURCES[:1, :3]))
    padded = to_numpy(model.encode(SOURCES[:1]))[:, :3]
    np.testing.assert_allclose(alone, padded, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", ["seq2seq", "causal_lm"])
def test_files_saved_before_the_option_load_unscaled(cls, tmp_path):
    unscaled = build(cls, False)
    config = unscaled.get_config()
    assert config["scale_embeddings"] is False
    del config["scale_embeddings"]  # As 0.1 wrote it.
    old = type(unscaled).from_config(config)
    assert old.scale_embeddings is False
    old.set_weights(unscaled.get_weights())
    np.testing.assert_allclose(
        call(old, cls), call(unscaled, cls), rtol=1e-6, atol=1e-6
    )
    scaled = build(cls, True)
    path = tmp_path / "scaled.keras"
    scaled.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    assert reloaded.scale_embeddings is True
    np.testing.assert_allclose(
        call(reloaded, cls), call(scaled, cls), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("cls", ["seq2seq", "causal_lm"])
def test_scale_embeddings_must_be_a_bool(cls):
    with pytest.raises(TypeError, match="scale_embeddings='yes'"):
        build(cls, "yes")
