"""Length-bucketed training data: every pair once, little padding, and
`model.fit` with its callbacks (BackupAndRestore resume included)."""

import os

import keras
import numpy as np
import pytest

from keras_mha import seq2seq
from keras_mha.seq2seq.tokenizers import END_ID
from keras_mha.seq2seq.tokenizers import START_ID
from keras_mha.seq2seq.translator import BUCKET_BOUNDARIES
from tests.seq2seq_helpers import small_translator


@pytest.fixture(scope="module")
def translator_and_pairs():
    translator, pairs = small_translator(epochs=0, num_pairs=300)
    # A few long pairs, as in a real corpus: padding to them is waste.
    pairs = pairs + [(" ".join(s for s, _ in pairs[:8]), pairs[0][1])] * 3
    return translator, pairs


def batches(translator, pairs, bucketed, pad_to_boundaries=None):
    data = translator.dataset(
        pairs,
        16,
        bucketed=bucketed,
        shuffle=False,
        pad_to_boundaries=pad_to_boundaries,
    )
    return [(s.numpy(), i.numpy(), y.numpy()) for (s, i), y in data]


@pytest.mark.parametrize(
    "bucketed, to_boundary",
    [(True, False), (True, True), (False, None)],
    ids=["bucketed", "to-boundary", "padded"],
)
def test_every_pair_is_taught_once(translator_and_pairs, bucketed, to_boundary):
    translator, pairs = translator_and_pairs
    source_ids, target_ids = translator.token_ids(pairs)
    seen = []
    for sources, inputs, labels in batches(
        translator, pairs, bucketed, to_boundary
    ):
        assert inputs.shape == labels.shape
        for source, inp, label in zip(sources, inputs, labels):
            target = np.concatenate([[START_ID], label[label != 0]])
            assert target[-1] == END_ID
            # The decoder input is the target shifted right.
            np.testing.assert_array_equal(inp[inp != 0], target[:-1])
            seen.append((tuple(source[source != 0]), tuple(target)))
    expected = [(tuple(s), tuple(t)) for s, t in zip(source_ids, target_ids)]
    assert sorted(seen) == sorted(expected)


def test_bucketing_pads_less(translator_and_pairs):
    translator, pairs = translator_and_pairs

    def padding(bucketed, to_boundary=None):
        labels = [
            y for _, _, y in batches(translator, pairs, bucketed, to_boundary)
        ]
        return 1 - sum((y != 0).sum() for y in labels) / sum(
            y.size for y in labels
        )

    padded = padding(False)
    assert padding(True, False) < padded / 3, (padding(True, False), padded)
    assert padding(True, True) < padded / 2, (padding(True, True), padded)


def test_padding_to_boundaries_bounds_the_batch_shapes(translator_and_pairs):
    translator, pairs = translator_and_pairs
    free = batches(translator, pairs, True, False)
    bounded = batches(translator, pairs, True, True)
    source_ids, target_ids = translator.token_ids(pairs)
    for ids, column in ((source_ids, 0), (target_ids, 1)):
        longest = max(len(row) for row in ids) - column  # targets: shifted
        lengths = {b for b in BUCKET_BOUNDARIES if b < longest} | {longest}
        free_lengths = [batch[column].shape[1] for batch in free]
        bounded_lengths = [batch[column].shape[1] for batch in bounded]
        # The same batches, each padded up to the next boundary.
        assert all(
            n == min(b for b in lengths if b >= m)
            for m, n in zip(free_lengths, bounded_lengths)
        )
        assert set(bounded_lengths) <= lengths
        assert len(set(bounded_lengths)) < len(set(free_lengths))
    for free_batch, bounded_batch in zip(free, bounded):
        for ids, padded in zip(free_batch, bounded_batch):
            np.testing.assert_array_equal(padded[:, : ids.shape[1]], ids)
            assert not padded[:, ids.shape[1] :].any()
    # The default: bounded on JAX only.
    default = [batch[0].shape for batch in batches(translator, pairs, True)]
    jax = keras.backend.backend() == "jax"
    assert default == [batch[0].shape for batch in (bounded if jax else free)]


class Interrupt(keras.callbacks.Callback):
    """Stops training like Ctrl-C at the end of the first epoch."""

    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


def test_interrupted_fit_resumes_from_its_backup(
    translator_and_pairs, tmp_path
):
    translator, pairs = translator_and_pairs
    train, validation = pairs[:250], pairs[250:]
    # The interruption comes after BackupAndRestore saved the epoch: the
    # callbacks passed in run after the translator's own.
    with pytest.raises(KeyboardInterrupt):
        seq2seq.fit_translator(
            translator,
            train,
            validation,
            str(tmp_path),
            epochs=3,
            verbose=0,
            callbacks=[Interrupt()],
        )
    assert os.path.isdir(tmp_path / "backup")
    epochs = seq2seq.fit_translator(
        translator,
        train,
        validation,
        str(tmp_path),
        epochs=3,
        verbose=0,
    )
    assert epochs == 3
    assert not os.path.exists(tmp_path / "backup")
    # The checkpoint and the tokenizers load back into a translator.
    loaded = seq2seq.Translator.load(str(tmp_path))
    assert loaded.max_length == translator.max_length
    assert loaded.source_tokenizer is loaded.target_tokenizer
    (translation,) = loaded.translate([pairs[0][0]])
    assert isinstance(translation, str)
