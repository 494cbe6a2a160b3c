"""`fit_translator`: `model.fit` on the translator's batches with its
callbacks (BackupAndRestore resume included), and a checkpoint that loads
back into a translator. The batches are tested in test_seq2seq_pipeline.py."""

import os

import keras
import pytest

from keras_mha import seq2seq
from tests.seq2seq_helpers import small_translator


@pytest.fixture(scope="module")
def translator_and_pairs():
    return small_translator(epochs=0, num_pairs=300)


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
