"""The SavedModel export: served in a fresh process with only TensorFlow,
equal to the Python model, padding-invariant, and written atomically."""

import json
import os
import shutil
import subprocess
import sys

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_mha.export import cacheable_decoder_layers
from keras_mha.export import decode
from keras_mha.export import export_translator
from keras_mha.export import generate
from tests.reliability_helpers import small_translation_model

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import language_model
import translate

MAX_LENGTH = 14
SHORT = ["I run.", "We sleep.", "She walks."]
LONG = [
    "The small sisters do not buy these beautiful houses.",
    "My old friends do not want the new red cars.",
    "Some black cats sleep near the white tables.",
]
SENTENCES = SHORT + LONG + ["The dogs eat zebras.", ""]
# Loads and calls the export in a process where nothing but TensorFlow can
# be imported: importing any of these names raises ImportError.
SERVE = """
import json, sys
for name in ("keras_mha", "keras", "keras_hub", "keras_nlp", "tensorflow_text"):
    sys.modules[name] = None
import tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
results = []
for batch in json.loads(sys.argv[2]):
    texts = serve(sentences=tf.constant(batch))["translations"].numpy()
    results.append([text.decode("utf-8") for text in texts])
print(json.dumps(results))
"""
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
TF_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the SavedModel export runs TensorFlow ops: TensorFlow backend only",
)


@pytest.fixture(scope="module")
def translator():
    """A tiny translator trained for a few epochs (outputs vary by input)."""
    _, translator = small_translation_model(epochs=4, seed=1)
    return translator


@pytest.fixture(scope="module")
def exported(translator, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "translator"
    return export_translator(path, *translator, max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def expected(translator):
    """The Python model's translations, one sentence at a time (no padding)."""
    return {
        sentence: translate.translate([sentence], *translator, MAX_LENGTH)[0]
        for sentence in SENTENCES
    }


def serve(path, batches):
    result = subprocess.run(
        [sys.executable, "-c", SERVE, str(path), json.dumps(batches)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@TF_ONLY
def test_served_translations_equal_the_python_model(expected, exported):
    # The test means something only if translations differ by sentence.
    assert len(set(expected.values())) > 3, expected
    mixed = [SENTENCES[i] for i in (0, 3, 1, 4, 2, 5, 6, 7)]
    served = serve(exported, [mixed, SHORT, LONG])
    assert served == [
        [expected[s] for s in batch] for batch in (mixed, SHORT, LONG)
    ]


def test_python_batches_equal_single_sentences(translator, expected):
    batched = translate.translate(SENTENCES, *translator, MAX_LENGTH)
    assert batched == [expected[sentence] for sentence in SENTENCES]


@TF_ONLY
def test_saved_model_cli_runs_the_export(expected, exported, tmp_path):
    sentences = [SHORT[0], LONG[0]]
    result = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "saved_model_cli"),
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
        export_translator(path, *translator, max_length=MAX_LENGTH)
    assert (path / "keep.txt").exists()
    export_translator(path, *translator, max_length=MAX_LENGTH, overwrite=True)
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


@TF_ONLY
def test_failed_export_leaves_nothing_behind(translator, tmp_path, monkeypatch):
    monkeypatch.setattr(tf.saved_model, "save", fail_saving)
    with pytest.raises(OSError, match="No space left"):
        export_translator(tmp_path / "translator", *translator)
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
        monkeypatch.setattr(tf.saved_model, "save", fail_saving)
    else:  # The final rename of the new export into place fails.
        rename = os.rename

        def fail_into_place(source, destination):
            if (
                str(destination) == str(path)
                and ".export-" in str(source)
                and (not str(source).endswith(".old"))
            ):
                raise OSError("Rename failed")
            rename(source, destination)

        monkeypatch.setattr(os, "rename", fail_into_place)
    with pytest.raises(OSError, match="failed|No space"):
        export_translator(
            path, *translator, max_length=MAX_LENGTH, overwrite=True
        )
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["translator"]
    assert snapshot(path) == before


@TF_ONLY
def test_export_rejects_a_vocabulary_without_the_end_token(
    translator, tmp_path
):
    encoder, decoder, source_vectorizer, vocabulary = translator
    with pytest.raises(ValueError, match="end_token='<eos>'"):
        export_translator(
            tmp_path / "t",
            encoder,
            decoder,
            source_vectorizer,
            vocabulary,
            end_token="<eos>",
        )
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="checks the error given on the other backends",
)
def test_export_needs_the_tensorflow_backend(translator, tmp_path):
    encoder, decoder, source_vectorizer, vocabulary = translator
    with pytest.raises(ValueError, match="needs the TensorFlow backend"):
        export_translator(
            tmp_path / "t", encoder, decoder, source_vectorizer, vocabulary
        )
    assert os.listdir(tmp_path) == []


def _decode_both_ways(encoder, decoder, source_ids, vocabulary, sampler):
    start_id, end_id = vocabulary.index("[start]"), vocabulary.index("[end]")
    return [
        keras.ops.convert_to_numpy(
            decode(
                encoder,
                decoder,
                source_ids,
                MAX_LENGTH,
                start_id,
                end_id,
                sampler=sampler,
                use_cache=use_cache,
            )
        )
        for use_cache in (True, False)
    ]


@pytest.fixture(scope="module")
def untrained():
    """A random translator: long outputs that differ by sentence."""
    keras.utils.set_random_seed(2)
    source_vectorizer = translate.make_vectorizer()
    source_vectorizer.adapt(SENTENCES)
    vocabulary = ["", "[UNK]", "[start]", "[end]"]
    vocabulary += [f"w{i}" for i in range(20)]
    model, encoder, decoder = translate.build_translator(
        source_vectorizer.vocabulary_size(),
        len(vocabulary),
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=16,
        num_layers=2,
        dropout=0.0,
    )
    # Never emit the end token, whatever the backend's random weights: every
    # output then runs to the last step.
    logits = decoder.get_layer("logits")
    bias = keras.ops.convert_to_numpy(logits.bias)
    bias[vocabulary.index("[end]")] = -1e3
    logits.bias.assign(bias)
    return model, encoder, decoder, source_vectorizer, vocabulary


@pytest.mark.parametrize("beams", [1, 3], ids=["greedy", "beam"])
@pytest.mark.parametrize("model", ["trained", "untrained"])
def test_cached_decoding_equals_recomputing_the_prefix(
    translator, untrained, model, beams
):
    if model == "trained":
        encoder, decoder, source_vectorizer, vocabulary = translator
    else:
        _, encoder, decoder, source_vectorizer, vocabulary = untrained
    assert cacheable_decoder_layers(decoder) is not None
    sampler = keras_hub.samplers.BeamSampler(beams) if beams > 1 else None
    cached, recomputed = _decode_both_ways(
        encoder,
        decoder,
        source_vectorizer(np.array(SENTENCES)),
        vocabulary,
        sampler,
    )
    np.testing.assert_array_equal(cached, recomputed)
    if model == "untrained":  # Long outputs: the cache is used at each step.
        assert np.all(cached[:, -1] != 0)


def test_reloaded_translator_still_decodes_with_the_cache(untrained, tmp_path):
    model, _, _, source_vectorizer, vocabulary = untrained
    path = tmp_path / "translator.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    decoder = reloaded.get_layer("decoder")
    decoder.supports_masking = True  # As in `translate.load_translator`.
    assert cacheable_decoder_layers(decoder) is not None
    source_ids = source_vectorizer(np.array(SENTENCES[:3]))
    cached, recomputed = _decode_both_ways(
        reloaded.get_layer("encoder"), decoder, source_ids, vocabulary, None
    )
    np.testing.assert_array_equal(cached, recomputed)


def test_a_decoder_that_is_not_a_plain_stack_recomputes_the_prefix(untrained):
    _, encoder, decoder, source_vectorizer, vocabulary = untrained
    target, encoded, source_mask = (
        keras.Input(x.shape[1:], dtype=x.dtype) for x in decoder.inputs
    )
    # A scaled copy of the decoder: the same outputs up to a factor, but
    # not a stack of layers `decode` knows how to cache.
    logits = keras.layers.Rescaling(2.0)(
        decoder([target, encoded, source_mask])
    )
    wrapped = keras.Model([target, encoded, source_mask], logits)
    wrapped.supports_masking = True
    assert cacheable_decoder_layers(wrapped) is None
    source_ids = source_vectorizer(np.array(SENTENCES[:3]))
    start_id, end_id = vocabulary.index("[start]"), vocabulary.index("[end]")
    ids = decode(encoder, wrapped, source_ids, MAX_LENGTH, start_id, end_id)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(ids),
        _decode_both_ways(encoder, decoder, source_ids, vocabulary, None)[0],
    )
    with pytest.raises(ValueError, match="use_cache=True"):
        decode(
            encoder,
            wrapped,
            source_ids,
            MAX_LENGTH,
            start_id,
            end_id,
            use_cache=True,
        )
    with pytest.raises(ValueError, match="use_cache='yes'"):
        decode(
            encoder,
            decoder,
            source_ids,
            MAX_LENGTH,
            start_id,
            end_id,
            use_cache="yes",
        )


@pytest.fixture(scope="module")
def language_model_untrained():
    keras.utils.set_random_seed(3)
    return language_model.build_language_model(
        30, hidden_dim=16, num_heads=2, intermediate_dim=16, num_layers=2
    )


# Prompts of 1, 4 and 2 tokens, right-padded.
PROMPTS = np.array([[5, 0, 0, 0], [7, 8, 9, 10], [11, 12, 0, 0]])


@pytest.mark.parametrize("beams", [1, 2], ids=["greedy", "beam"])
def test_generate_with_the_cache_equals_recomputing(
    language_model_untrained, beams
):
    model = language_model_untrained
    assert cacheable_decoder_layers(model) is not None
    sampler = keras_hub.samplers.BeamSampler(beams) if beams > 1 else None
    cached, recomputed = (
        keras.ops.convert_to_numpy(
            generate(model, PROMPTS, 12, sampler=sampler, use_cache=use)
        )
        for use in (True, False)
    )
    np.testing.assert_array_equal(cached, recomputed)
    # Each row keeps its own prompt and is continued right after it.
    for row, prompt in zip(cached, PROMPTS):
        length = int(np.sum(prompt != 0))
        np.testing.assert_array_equal(row[:length], prompt[:length])
    assert np.all(cached != 0)  # padding is never emitted


def test_generate_stops_each_row_at_the_end_token(language_model_untrained):
    model = language_model_untrained
    first = keras.ops.convert_to_numpy(generate(model, PROMPTS, 12))
    # Declare the token the first row emits first to be the end token.
    end_id = int(first[0, 1])
    ids = keras.ops.convert_to_numpy(
        generate(model, PROMPTS, 12, end_id=end_id)
    )
    assert ids[0, 1] == end_id
    assert np.all(ids[0, 2:] == 0)
    for row in ids:
        ends = np.flatnonzero(row == end_id)
        if ends.size:
            assert np.all(row[ends[0] + 1 :] == 0)


def test_generate_rejects_bad_arguments(language_model_untrained):
    model = language_model_untrained
    with pytest.raises(ValueError, match="max_length=4"):
        generate(model, PROMPTS, 4)
    with pytest.raises(ValueError, match=r"prompt_ids.shape=\(3,\)"):
        generate(model, [1, 2, 3], 8)
    with pytest.raises(ValueError, match="use_cache='yes'"):
        generate(model, PROMPTS, 8, use_cache="yes")
    ids = keras.Input((None,), dtype="int32")
    wrapped = keras.Model(ids, keras.layers.Rescaling(2.0)(model(ids)))
    assert cacheable_decoder_layers(wrapped) is None
    with pytest.raises(ValueError, match="use_cache=True"):
        generate(wrapped, PROMPTS, 8, use_cache=True)
    # Without the cache it still generates, by recomputing.
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(generate(wrapped, PROMPTS, 8)),
        keras.ops.convert_to_numpy(generate(model, PROMPTS, 8)),
    )
