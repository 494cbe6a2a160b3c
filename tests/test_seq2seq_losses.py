"""`SmoothedSparseCrossentropy`: Keras's two cross-entropies in one loss."""

import keras
import numpy as np
import pytest

from keras_mha import seq2seq
from tests.layer_test_case import to_numpy

# Batch 2, length 5, 7 classes; 0 is padding.
LABELS = np.array([[4, 1, 6, 0, 0], [2, 5, 3, 1, 0]], "int32")
LOGITS = np.random.default_rng(0).normal(size=(2, 5, 7)).astype("float32")


def reference(labels, logits, smoothing):
    """Mean over non-padding positions of the smoothed cross-entropy."""
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    targets = np.eye(logits.shape[-1])[labels] * (1 - smoothing)
    targets += smoothing / logits.shape[-1]
    losses = -(targets * log_probs).sum(-1)
    return losses[labels != 0].mean()


def test_without_smoothing_it_is_keras_sparse_crossentropy():
    ours = seq2seq.SmoothedSparseCrossentropy(label_smoothing=0.0)
    keras_loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=0
    )
    np.testing.assert_allclose(
        to_numpy(ours(LABELS, LOGITS)),
        to_numpy(keras_loss(LABELS, LOGITS)),
        rtol=1e-5,
    )


@pytest.mark.parametrize("smoothing", [0.1, 0.5])
def test_smoothing_matches_keras_categorical_crossentropy(smoothing):
    ours = seq2seq.SmoothedSparseCrossentropy(label_smoothing=smoothing)
    valid = LABELS != 0
    keras_loss = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=smoothing
    )
    expected = keras_loss(np.eye(7)[LABELS[valid]], LOGITS[valid])
    got = to_numpy(ours(LABELS, LOGITS))
    np.testing.assert_allclose(got, to_numpy(expected), rtol=1e-5)
    np.testing.assert_allclose(
        got, reference(LABELS, LOGITS, smoothing), rtol=1e-5
    )


def test_padding_counts_for_nothing():
    loss = seq2seq.SmoothedSparseCrossentropy()
    changed = LOGITS.copy()
    changed[LABELS == 0] = 100.0  # Whatever the model says at padding.
    np.testing.assert_allclose(
        to_numpy(loss(LABELS, LOGITS)), to_numpy(loss(LABELS, changed))
    )


def test_sum_reduction_sums_the_valid_positions():
    loss = seq2seq.SmoothedSparseCrossentropy(reduction="sum")
    np.testing.assert_allclose(
        to_numpy(loss(LABELS, LOGITS)),
        reference(LABELS, LOGITS, 0.1) * np.sum(LABELS != 0),
        rtol=1e-5,
    )


def test_half_precision_logits_give_a_float32_loss():
    loss = seq2seq.SmoothedSparseCrossentropy()
    value = loss(LABELS, LOGITS.astype("float16"))
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    np.testing.assert_allclose(
        to_numpy(value), reference(LABELS, LOGITS, 0.1), rtol=1e-2
    )


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"label_smoothing": 1.0}, ValueError, "label_smoothing=1.0"),
        ({"label_smoothing": -0.1}, ValueError, "label_smoothing=-0.1"),
        ({"label_smoothing": "0.1"}, TypeError, "label_smoothing='0.1'"),
        ({"ignore_class": 0.5}, ValueError, "ignore_class=0.5"),
    ],
    ids=["one", "negative", "string", "float-class"],
)
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        seq2seq.SmoothedSparseCrossentropy(**kwargs)


def test_a_compiled_model_saves_and_loads_with_its_loss(tmp_path):
    inputs = keras.Input((5,), dtype="int32")
    logits = keras.layers.Dense(7)(keras.layers.Embedding(7, 3)(inputs))
    model = keras.Model(inputs, logits)
    model.compile(
        "adam",
        seq2seq.SmoothedSparseCrossentropy(label_smoothing=0.2, ignore_class=0),
    )
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(loaded.loss, seq2seq.SmoothedSparseCrossentropy)
    assert loaded.loss.get_config() == model.loss.get_config()
    assert loaded.loss.label_smoothing == 0.2
