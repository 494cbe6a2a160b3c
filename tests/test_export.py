"""The SavedModel export: strings to strings, served in a process that
cannot import Keras, keras_hub or keras_mha, byte-equal to the Python
translator, padding-invariant, and written atomically."""

import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_mha.seq2seq.export import export_translator
from keras_mha.seq2seq.serving import translate_in_fresh_process
from tests.seq2seq_helpers import small_translator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHORT = ["Paul has two cats.", "I see six dogs!"]
LONG = [
    "Does Anne-Sophie have seventy-seven pencils? "
    "We don't want ninety-nine cakes. Marie has eighty-two boats."
]
ACCENTED = ["Chloé has eighty-one trees.", "Léa a-t-elle vu l'été ?"]
PUNCTUATED = ["Does Hugo have forty-four birds?!", "« I see — twelve cakes »"]
UNSEEN = ["Jean-Luc has ninety-one zorblaxes.", "Qwertyuiop ăîșț 日本"]
BLANK = ["", "   "]
SENTENCES = SHORT + LONG + ACCENTED + PUNCTUATED + UNSEEN + BLANK
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
TF_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the SavedModel export runs TensorFlow ops: TensorFlow backend only",
)


@pytest.fixture(scope="module")
def translator():
    """A tiny translator trained for a few epochs (outputs vary by input)."""
    return small_translator(seed=1)[0]


@pytest.fixture(scope="module")
def exported(translator, tmp_path_factory):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the export needs the TensorFlow backend")
    path = tmp_path_factory.mktemp("export") / "translator"
    return export_translator(path, translator)


@pytest.fixture(scope="module")
def expected(translator):
    """The Python translator, one sentence at a time (no padding)."""
    return {s: translator.translate([s])[0] for s in SENTENCES}


def serve(path, batches):
    """The export's answers from a process that cannot import Keras."""
    return translate_in_fresh_process(path, batches)


@TF_ONLY
def test_served_translations_equal_the_python_translator(expected, exported):
    # The test means something only if translations differ by sentence.
    assert len(set(expected.values())) > 5, expected
    mixed = SENTENCES[::-1]
    served = serve(exported, [mixed, SHORT, LONG + UNSEEN])
    assert served == [
        [expected[s] for s in batch] for batch in (mixed, SHORT, LONG + UNSEEN)
    ]


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the translator's tokenizers run TensorFlow Text ops",
)
def test_batches_equal_single_sentences_and_blank_gives_empty(
    translator, expected
):
    assert translator.translate(SENTENCES) == [expected[s] for s in SENTENCES]
    assert [expected[s] for s in BLANK] == ["", ""]
    assert all(expected[s] for s in SHORT + LONG + UNSEEN)


@TF_ONLY
def test_saved_model_cli_runs_the_export(expected, exported, tmp_path):
    sentences = [SHORT[0], ACCENTED[0]]
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "examples", "saved_model_cli.py"),
            "run",
            "--dir",
            str(exported),
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--input_exprs",
            f"sentences={sentences!r}",
            "--outdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served = np.load(tmp_path / "translations.npy", allow_pickle=True)
    assert [text.decode("utf-8") for text in served] == [
        expected[sentence] for sentence in sentences
    ]


@TF_ONLY
def test_export_refuses_an_existing_path(translator, tmp_path):
    path = tmp_path / "translator"
    path.mkdir()
    (path / "keep.txt").write_text("not a SavedModel")
    with pytest.raises(FileExistsError, match=str(path)):
        export_translator(path, translator)
    assert (path / "keep.txt").exists()
    export_translator(path, translator, overwrite=True)
    assert not (path / "keep.txt").exists()
    assert (path / "saved_model.pb").exists()


def snapshot(path):
    """Every file under `path` with its bytes."""
    return {
        os.path.relpath(os.path.join(root, name), path): open(
            os.path.join(root, name), "rb"
        ).read()
        for root, _, names in os.walk(path)
        for name in names
    }


def fail_saving(*args, **kwargs):
    """Writes part of a SavedModel, then fails like a full disk."""
    with open(os.path.join(args[1], "saved_model.pb"), "wb") as file:
        file.write(b"half")
    raise OSError("No space left on device")


def patch_saved_model_save(monkeypatch):
    """Makes `tf.saved_model.save` fail, whatever ran before.

    The first import of `tensorflow.saved_model.experimental` (Keras's
    export does it) replaces the `tf.saved_model` module object; importing
    it first makes the patch land on the object that the export calls.
    """
    import tensorflow as tf
    import tensorflow.saved_model.experimental

    monkeypatch.setattr(tf.saved_model, "save", fail_saving)


@TF_ONLY
def test_failed_export_leaves_nothing_behind(translator, tmp_path, monkeypatch):
    patch_saved_model_save(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        export_translator(tmp_path / "translator", translator)
    assert os.listdir(tmp_path) == []


@TF_ONLY
@pytest.mark.parametrize("failure", ["save", "rename"])
def test_failed_export_keeps_the_existing_export(
    translator, exported, tmp_path, monkeypatch, failure
):
    path = tmp_path / "translator"
    shutil.copytree(exported, path)
    before = snapshot(path)
    if failure == "save":
        patch_saved_model_save(monkeypatch)
    else:  # The final rename of the new export into place fails.
        rename = os.rename

        def fail_into_place(source, destination):
            if (
                str(destination) == str(path)
                and ".export-" in str(source)
                and not str(source).endswith(".old")
            ):
                raise OSError("Rename failed")
            rename(source, destination)

        monkeypatch.setattr(os, "rename", fail_into_place)
    with pytest.raises(OSError, match="failed|No space"):
        export_translator(path, translator, overwrite=True)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["translator"]
    assert snapshot(path) == before


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="checks the error given on the other backends",
)
def test_export_needs_the_tensorflow_backend(tmp_path):
    untrained = small_translator(epochs=0, num_pairs=40)[0]
    with pytest.raises(ValueError, match="needs the TensorFlow backend"):
        export_translator(tmp_path / "t", untrained)
    assert os.listdir(tmp_path) == []


@TF_ONLY
def test_export_refuses_two_different_tokenizers(translator, tmp_path):
    from keras_mha.seq2seq import Translator
    from keras_mha.seq2seq import train_tokenizer

    other = train_tokenizer(["Un autre vocabulaire."] * 10, 300)
    mixed = Translator(translator.model, translator.source_tokenizer, other)
    with pytest.raises(ValueError, match="one tokenizer for both sides"):
        export_translator(tmp_path / "t", mixed)
    assert os.listdir(tmp_path) == []
