"""A translator's files: `save` then `load` gives the same translator
(model, tokenizers, lengths); a missing directory or file is a
`FileNotFoundError` naming it, a damaged file a `ValueError` naming it,
and a refused load writes nothing. TensorFlow only (TF Text tokenizers)."""

import json
import os
import shutil

import keras
import numpy as np
import pytest

from keras_mha.seq2seq import persistence
from tests.seq2seq_helpers import small_translator

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TF Text tokenizers"
)


@pytest.fixture(scope="module")
def translator():
    """An untrained translator with lengths other than the defaults."""
    translator = small_translator(epochs=0, num_pairs=200)[0]
    translator.max_length, translator.max_source_length = 7, 30
    return translator


@pytest.fixture(scope="module")
def translator_dir(translator, tmp_path_factory):
    """A directory written by `Translator.save`."""
    directory = str(tmp_path_factory.mktemp("translator"))
    translator.save(directory)
    return directory


def _contents(directory):
    return {
        name: open(os.path.join(directory, name), "rb").read()
        for name in sorted(os.listdir(directory))
    }


def _weights(model):
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def test_save_writes_the_four_files(translator, translator_dir):
    assert sorted(os.listdir(translator_dir)) == [
        "source.spm",
        "target.spm",
        "translator.json",
        "translator.keras",
    ]
    with open(os.path.join(translator_dir, "translator.json")) as file:
        assert json.load(file) == {"max_length": 7, "max_source_length": 30}
    with open(os.path.join(translator_dir, "source.spm"), "rb") as file:
        assert file.read() == translator.source_tokenizer.proto


def test_load_gives_the_translator_back(translator, translator_dir):
    from keras_mha.seq2seq import Translator

    loaded = Translator.load(translator_dir)
    assert (loaded.max_length, loaded.max_source_length) == (7, 30)
    # One joint tokenizer, as it was saved.
    assert loaded.source_tokenizer is loaded.target_tokenizer
    assert loaded.source_tokenizer.proto == translator.source_tokenizer.proto
    for got, want in zip(_weights(loaded.model), _weights(translator.model)):
        np.testing.assert_array_equal(got, want)
    sentences = ["Marie has three cats.", "I see six dogs!", ""]
    assert loaded.translate(sentences) == translator.translate(sentences)


def test_two_tokenizers_load_apart(translator, tmp_path):
    from keras_mha.seq2seq import train_tokenizer
    from keras_mha.seq2seq.tokenizers import TokenizerPair

    other = train_tokenizer(["Un autre vocabulaire."] * 10, 300)
    tokenizers = TokenizerPair(translator.source_tokenizer, other, 9, 11)
    persistence.save(translator.model, tokenizers, tmp_path)
    _, loaded = persistence.load(tmp_path)
    assert loaded.source_tokenizer.proto == translator.source_tokenizer.proto
    assert loaded.target_tokenizer.proto == other.proto
    assert (loaded.max_length, loaded.max_source_length) == (9, 11)


def test_save_tokenizers_writes_all_but_the_model(
    translator, translator_dir, tmp_path
):
    directory = str(tmp_path / "run")
    persistence.save_tokenizers(translator.tokenizers, directory)
    assert sorted(os.listdir(directory)) == [
        "source.spm",
        "target.spm",
        "translator.json",
    ]
    # A checkpoint beside them makes a directory that loads.
    shutil.copy(os.path.join(translator_dir, "translator.keras"), directory)
    _, loaded = persistence.load(directory)
    assert (loaded.max_length, loaded.max_source_length) == (7, 30)


TRANSLATOR_DAMAGE = {
    "keras_random": ("translator.keras", lambda d: os.urandom(2000)),
    "keras_half": ("translator.keras", lambda d: d[: len(d) // 2]),
    "spm_random": ("source.spm", lambda d: os.urandom(2000)),
    "spm_half": ("source.spm", lambda d: d[: len(d) // 2]),
    "spm_empty": ("target.spm", lambda d: b""),
    "json_garbage": ("translator.json", lambda d: b"\x00{max_length"),
    "json_other": ("translator.json", lambda d: b'{"max_length": 8}'),
    "json_length_1": (
        "translator.json",
        lambda d: b'{"max_length": 1, "max_source_length": 8}',
    ),
}


@pytest.mark.parametrize("damage", TRANSLATOR_DAMAGE)
def test_damaged_translator_file_is_named_and_nothing_is_written(
    translator_dir, tmp_path, damage
):
    from keras_mha.seq2seq import Translator

    directory = str(tmp_path / "translator")
    shutil.copytree(translator_dir, directory)
    name, damaged = TRANSLATOR_DAMAGE[damage]
    path = os.path.join(directory, name)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(damaged(data))
    before = _contents(directory)
    with pytest.raises(ValueError) as info:
        Translator.load(directory)
    message = str(info.value)
    assert path in message
    # The words outside the path (whose test name says "damaged").
    words = message.replace(path, "")
    assert "damaged" in words or "truncated or corrupt" in words
    assert _contents(directory) == before


def test_missing_translator_directory_or_file_is_named(
    translator_dir, tmp_path
):
    from keras_mha.seq2seq import Translator

    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=f"directory={missing!r}"):
        Translator.load(missing)
    assert not os.path.exists(missing)
    for name in ("translator.keras", "source.spm", "translator.json"):
        directory = str(tmp_path / name.replace(".", "_"))
        shutil.copytree(translator_dir, directory)
        os.remove(os.path.join(directory, name))
        with pytest.raises(FileNotFoundError, match=name):
            Translator.load(directory)
