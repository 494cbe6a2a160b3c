"""`Translator.translate` takes a list of strings and nothing else.

A bare string, a non-string item or a bad `batch_size` is a `TypeError` or
`ValueError` naming the argument and the value, before any translation
runs: no string is read as its characters, no `None` translated as
`"None"`. Its lengths are checked, and a new `max_length` applies to the
next translation; a translation survives TensorFlow dropping the
tokenizers' resources. TensorFlow only (the tokenizers run TensorFlow
Text; the other backends are covered by the decoding tests).
"""

import keras
import numpy as np
import pytest

from tests.seq2seq_helpers import small_translator

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the translator's tokenizers run TensorFlow Text ops",
)


@pytest.fixture(scope="module")
def translator():
    from keras_mha.seq2seq import Translator

    untrained = small_translator(epochs=0, num_pairs=200)[0]
    # Short outputs: an untrained model decodes every step.
    return Translator(
        untrained.model,
        untrained.source_tokenizer,
        untrained.target_tokenizer,
        max_length=6,
    )


@pytest.mark.parametrize(
    "sentences, error, match",
    [
        ("Marie has eighty-two cats.", TypeError, "not a bare str"),
        (b"Marie has cats.", TypeError, "not a bare bytes"),
        (None, TypeError, r"Received: sentences=None of type NoneType"),
        (42, TypeError, r"Received: sentences=42 of type int"),
        ({"a": 1}, TypeError, r"of type dict"),
        (["a cat", None], TypeError, r"item 1 is a NoneType.*sentences\[1\]"),
        (["a cat", 42], TypeError, r"item 1 is a int.*sentences\[1\]=42"),
        ((b"a cat",), TypeError, r"item 0 is a bytes.*sentences\[0\]=b'a"),
        (np.array([["a cat"]]), TypeError, r"sentences of shape \(1, 1\)"),
    ],
    ids=[
        "bare_str",
        "bare_bytes",
        "None",
        "int",
        "dict",
        "None_item",
        "int_item",
        "bytes_item",
        "2d_array",
    ],
)
def test_translate_refuses_what_is_not_a_list_of_str(
    translator, sentences, error, match
):
    with pytest.raises(error, match=match) as info:
        translator.translate(sentences)
    assert "`sentences` expected a list, tuple or 1-D array of str" in str(
        info.value
    )


@pytest.mark.parametrize(
    "batch_size, error",
    [(-1, ValueError), (0, ValueError), (1.5, TypeError), (None, TypeError)],
    ids=["-1", "0", "1.5", "None"],
)
def test_translate_refuses_a_bad_batch_size(translator, batch_size, error):
    with pytest.raises(error, match=rf"Received: batch_size={batch_size}"):
        translator.translate(["a cat"], batch_size=batch_size)


def test_list_tuple_and_array_of_str_translate_alike(translator):
    sentences = ["Marie has three cats.", "", "42 dogs"]
    expected = translator.translate(sentences)
    assert len(expected) == 3 and all(isinstance(t, str) for t in expected)
    assert translator.translate(tuple(sentences)) == expected
    assert translator.translate(np.array(sentences)) == expected
    assert translator.translate(sentences, batch_size=1) == expected
    assert translator.translate([]) == []


@pytest.mark.parametrize(
    "name, value, error",
    [("max_length", 1, ValueError), ("max_source_length", "8", TypeError)],
    ids=["max_length_1", "max_source_length_str"],
)
def test_bad_lengths_are_refused_and_a_refused_one_changes_nothing(
    translator, name, value, error
):
    from keras_mha.seq2seq import Translator

    match = rf"`{name}` expected an integer >= 2. Received: {name}={value!r}"
    with pytest.raises(error, match=match):
        Translator(
            translator.model,
            translator.source_tokenizer,
            translator.target_tokenizer,
            **{name: value},
        )
    with pytest.raises(error, match=match):
        setattr(translator, name, value)
    assert (translator.max_length, translator.max_source_length) == (6, 256)


def test_a_new_max_length_applies_to_the_next_translation(translator):
    from keras_mha.seq2seq import Translator

    def untrained(max_length):
        return Translator(
            translator.model,
            translator.source_tokenizer,
            translator.target_tokenizer,
            max_length=max_length,
        )

    sentences = ["Marie has three cats.", "42 dogs"]
    changed = untrained(6)
    longer = changed.translate(sentences)  # traced for 6 tokens
    changed.max_length = 3
    shorter = untrained(3).translate(sentences)
    assert longer != shorter  # the untrained model decodes every step
    assert changed.translate(sentences) == shorter


def test_translation_survives_tensorflow_dropping_the_tokenizers(translator):
    sentences = ["Marie has three cats.", "42 dogs"]
    expected = translator.translate(sentences)
    # Clears TensorFlow's kernel cache, and the SentencePiece resources that
    # the traced translation holds.
    keras.utils.set_random_seed(0)
    assert translator.translate(sentences) == expected
    assert translator.translate(sentences, compile=False) == expected
