"""The subword tokenizers give every text back byte for byte, and split an
unseen word into pieces, never into an unknown token."""

import pytest

from keras_mha import seq2seq
from keras_mha.seq2seq.tokenizers import UNKNOWN_ID

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
