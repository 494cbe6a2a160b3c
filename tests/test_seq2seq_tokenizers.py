"""The subword tokenizers give every text back byte for byte, and split an
unseen word into pieces, never into an unknown token; a `TokenizerPair`
frames and cuts a translator's ids; `with_live_tokenizers` survives
TensorFlow dropping the tokenizers' resources."""

import numpy as np
import pytest

from keras_mha import seq2seq
from keras_mha.seq2seq.tokenizers import END_ID
from keras_mha.seq2seq.tokenizers import START_ID
from keras_mha.seq2seq.tokenizers import UNKNOWN_ID
from keras_mha.seq2seq.tokenizers import TokenizerPair
from keras_mha.seq2seq.tokenizers import with_live_tokenizers

TRAINING = [target for _, target in seq2seq.data.number_pairs(400, seed=5)] + [
    "L'été à Paris, c'est « beau » !",
    "Quatre-vingt-deux chats.",
]
HOSTILE = [
    "Quatre-vingt-deux chats.",
    "L'été, À l'œil nu : ÇA va ?",
    "  two  spaces,\ttab and trailing space ",
    "Zorblax grûnt-fëx!!! (123) — «guillemets»",
    "日本語 и кириллица, emoji 🙂",
    "",
    " ",
]


@pytest.fixture(scope="module")
def tokenizer():
    return seq2seq.train_tokenizer(TRAINING, 400)


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_detokenize_gives_the_text_back(tokenizer, text):
    ids = tokenizer(text)
    assert UNKNOWN_ID not in list(ids)
    assert tokenizer.detokenize(ids) == text


def test_an_unseen_word_comes_out_as_several_pieces(tokenizer):
    known = len(tokenizer("chats"))
    unseen = tokenizer("Zorblaxes")
    assert len(unseen) > 1 and UNKNOWN_ID not in list(unseen)
    assert known >= 1


def test_learned_pieces_are_shorter_than_bytes(tokenizer):
    text = "Marie a quatre-vingt-dix-neuf chats."
    assert len(tokenizer(text)) < len(text.encode("utf-8")) / 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vocabulary_size": 100}, "vocabulary_size=100"),
        ({"model_type": "word"}, "model_type='word'"),
        ({"texts": ["", "  "]}, "non-blank"),
    ],
    ids=["small_vocabulary", "model_type", "blank_texts"],
)
def test_train_tokenizer_rejects_bad_arguments(kwargs, message):
    arguments = {"texts": TRAINING, "vocabulary_size": 400, **kwargs}
    with pytest.raises(ValueError, match=message):
        seq2seq.train_tokenizer(**arguments)


# TokenizerPair: the translator's sentences <-> ids.


def _graph(pair, function, *args):
    """`function(*args)` in a graph, where keras_hub's tokenizers return
    ragged tensors, on live resources (every test starts with a seed,
    which drops them), as the translator runs it."""
    import tensorflow as tf

    return with_live_tokenizers(
        lambda: tf.function(function)(*args), [pair.source_tokenizer]
    )


@pytest.fixture(scope="module")
def pair(tokenizer):
    return TokenizerPair(
        tokenizer, tokenizer, max_length=5, max_source_length=4
    )


def test_source_ids_cut_pieces_then_end_then_pad(tokenizer, pair):
    import tensorflow as tf

    sentences = ["Quatre-vingt-deux chats.", "a", ""]
    ids = _graph(pair, pair.source_ids, tf.constant(sentences)).numpy()
    for row, text in zip(ids, sentences):
        pieces = [int(i) for i in tokenizer(text)][:3]  # max_source_length-1
        real = row[row != 0]
        assert list(real) == pieces + [END_ID]
        assert not row[len(real) :].any()  # padding after
    assert ids.shape == (3, 4)


def test_target_texts_stop_at_the_first_end_and_blank_is_empty(tokenizer, pair):
    import tensorflow as tf

    chats = [int(i) for i in tokenizer("deux chats")]
    other = [int(i) for i in tokenizer("zorblax")]
    width = len(chats) + len(other) + 2
    ids = np.zeros((3, width), "int32")
    ids[:, 0] = START_ID
    ids[0, 1 : 1 + len(chats)] = chats
    ids[0, 1 + len(chats)] = END_ID
    ids[0, 2 + len(chats) :] = other  # after the end: dropped
    ids[1, 1 : 1 + len(chats + other)] = chats + other  # no end: all kept
    ids[2, 1 : 1 + len(chats)] = chats  # a blank sentence: empty
    sentences = tf.constant(["x", "y", " \t"])
    texts = [t.decode() for t in pair.target_texts(ids, sentences).numpy()]
    assert texts == ["deux chats", "deux chats zorblax", ""]


def test_token_ids_frame_targets_and_cut_to_max_length(tokenizer, pair):
    pairs = [("deux", "deux chats"), ("Quatre-vingt-deux chats.", "a")]
    source_ids, target_ids = pair.token_ids(pairs)
    for (source, target), sources, targets in zip(
        pairs, source_ids, target_ids
    ):
        assert list(sources) == [int(i) for i in tokenizer(source)][:3] + [
            END_ID
        ]
        pieces = [int(i) for i in tokenizer(target)][:4]  # max_length - 1
        assert list(targets) == [START_ID, *pieces, END_ID]
        assert targets.dtype == np.int32


@pytest.mark.parametrize(
    "pairs, error, match",
    [
        ([], ValueError, r"Received: pairs=\[\]"),
        ("a\tb", TypeError, "of type str"),
        ([("a", "b"), ("c",)], TypeError, r"item 1 is not one.*pairs\[1\]"),
        ([("a", None)], TypeError, r"item 0.*pairs\[0\]=\('a', None\)"),
    ],
    ids=["empty", "bare_str", "single", "None"],
)
def test_token_ids_refuse_what_is_not_pairs_of_str(pair, pairs, error, match):
    with pytest.raises(error, match=match):
        pair.token_ids(pairs)


@pytest.mark.parametrize(
    "name, value, error",
    [
        ("max_length", 1, ValueError),
        ("max_length", 2.0, TypeError),
        ("max_length", True, TypeError),
        ("max_source_length", 0, ValueError),
        ("max_source_length", None, TypeError),
    ],
    ids=["length_1", "float", "bool", "source_0", "source_None"],
)
def test_lengths_are_checked_and_a_refused_one_changes_nothing(
    tokenizer, name, value, error
):
    match = rf"`{name}` expected an integer >= 2. Received: {name}={value!r}"
    with pytest.raises(error, match=match):
        TokenizerPair(tokenizer, tokenizer, **{name: value})
    pair = TokenizerPair(tokenizer, tokenizer, max_length=7)
    with pytest.raises(error, match=match):
        setattr(pair, name, value)
    assert (pair.max_length, pair.max_source_length) == (7, 256)


# with_live_tokenizers: TensorFlow drops the SentencePiece resources.


def _drop_resources():
    import keras

    keras.utils.set_random_seed(0)  # clears TensorFlow's kernel cache


def test_a_dropped_resource_is_rebuilt_once_and_the_call_rerun(tokenizer):
    import tensorflow as tf

    text = "Quatre-vingt-deux chats."
    calls, reloads = [], []

    def tokenize():
        calls.append(1)
        return tf.function(tokenizer)(tf.constant([text]))

    _drop_resources()
    with pytest.raises(tf.errors.NotFoundError, match="SentencepieceOp"):
        tokenize()  # what the function is there for
    calls.clear()
    ids = with_live_tokenizers(
        tokenize, [tokenizer, tokenizer], on_reload=lambda: reloads.append(1)
    )
    assert tokenizer.detokenize(ids.to_list()[0]) == text
    assert (len(calls), len(reloads)) == (2, 1)
    # Live resources: one call, no reload.
    with_live_tokenizers(tokenize, [tokenizer], lambda: reloads.append(1))
    assert (len(calls), len(reloads)) == (3, 1)


def test_other_errors_pass_through_without_a_reload(tokenizer):
    import tensorflow as tf

    proto, reloads = tokenizer.proto, []

    def fail():
        raise tf.errors.NotFoundError(None, None, "some other resource")

    with pytest.raises(tf.errors.NotFoundError, match="some other resource"):
        with_live_tokenizers(fail, [tokenizer], lambda: reloads.append(1))
    with pytest.raises(KeyError):
        with_live_tokenizers(lambda: {}["key"], [tokenizer])  # not TF's
    assert reloads == [] and tokenizer.proto is proto
