"""A translator's files: its model, its tokenizers and their lengths.

A translator directory holds `translator.keras` (the model, written and
read through `keras_mha.saving`), `source.spm` and `target.spm` (the
SentencePiece models of the tokenizers) and `translator.json` (the
lengths). `save_tokenizers` writes all but the model, which is what a
training checkpoint needs beside it; `load` checks every file before it
uses any, and names the one that is missing or damaged.
"""

import json
import os

from keras_mha import saving
from keras_mha._validation import check_int_at_least
from keras_mha.seq2seq.tokenizers import END_ID
from keras_mha.seq2seq.tokenizers import TokenizerPair

MODEL_FILE = "translator.keras"
LENGTHS_FILE = "translator.json"
SIDES = ("source", "target")


def save(model, tokenizers, directory):
    """Writes `model` and `tokenizers` into `directory`.

    The model goes to `translator.keras` through
    `keras_mha.saving.save_model` (atomic: a failed save keeps the file
    that was there), the rest as `save_tokenizers` writes it.

    Args:
        model: the translator's `keras_mha.seq2seq.TransformerSeq2Seq`.
        tokenizers: its `keras_mha.seq2seq.tokenizers.TokenizerPair`.
        directory: str or `os.PathLike`. Created if it does not exist.

    Returns:
        `None`.

    Example:

    >>> tokenizer = keras_mha.seq2seq.train_tokenizer(["Un chat."] * 9, 300)
    >>> model = keras_mha.seq2seq.TransformerSeq2Seq(
    ...     tokenizer.vocabulary_size(), tokenizer.vocabulary_size(),
    ...     hidden_dim=8, num_heads=2, intermediate_dim=8, num_layers=1,
    ... )
    >>> tokenizers = keras_mha.seq2seq.tokenizers.TokenizerPair(
    ...     tokenizer, tokenizer, max_length=12
    ... )
    >>> keras_mha.seq2seq.persistence.save(model, tokenizers, "translator")
    >>> import os
    >>> sorted(os.listdir("translator"))
    ['source.spm', 'target.spm', 'translator.json', 'translator.keras']
    """
    save_tokenizers(tokenizers, directory)
    saving.save_model(model, os.path.join(directory, MODEL_FILE))


def save_tokenizers(tokenizers, directory):
    """Writes the tokenizers (`source.spm`, `target.spm`) and their lengths
    (`translator.json`) into `directory`: what a model checkpoint
    (`translator.keras`) needs beside it for `load`.

    Args:
        tokenizers: a `keras_mha.seq2seq.tokenizers.TokenizerPair`.
        directory: str or `os.PathLike`. Created if it does not exist.

    Returns:
        `None`.

    Example:

    >>> tokenizer = keras_mha.seq2seq.train_tokenizer(["Un chat."] * 9, 300)
    >>> tokenizers = keras_mha.seq2seq.tokenizers.TokenizerPair(
    ...     tokenizer, tokenizer, max_length=12
    ... )
    >>> keras_mha.seq2seq.persistence.save_tokenizers(tokenizers, "run")
    >>> open("run/translator.json").read()
    '{"max_length": 12, "max_source_length": 256}'
    """
    os.makedirs(directory, exist_ok=True)
    for side in SIDES:
        tokenizer = getattr(tokenizers, f"{side}_tokenizer")
        with open(os.path.join(directory, f"{side}.spm"), "wb") as file:
            file.write(tokenizer.proto)
    with open(os.path.join(directory, LENGTHS_FILE), "w") as file:
        json.dump(
            {
                "max_length": tokenizers.max_length,
                "max_source_length": tokenizers.max_source_length,
            },
            file,
        )


def load(directory):
    """Reads what `save` (or a checkpoint beside `save_tokenizers`) wrote.

    Each file is checked before any is used, and nothing is written: the
    lengths (`translator.json`), the tokenizers (`source.spm`,
    `target.spm`), then the model (`translator.keras`, through
    `keras_mha.saving.load_model`, in safe mode). Two equal tokenizer
    files give one tokenizer serving both sides.

    Args:
        directory: str or `os.PathLike`, a directory that `save` wrote.

    Returns:
        A tuple `(model, tokenizers)`: the `keras.Model` and a
        `keras_mha.seq2seq.tokenizers.TokenizerPair`.

    Raises:
        FileNotFoundError: if `directory` or one of its files is missing,
            naming it.
        ValueError: if one of the files is damaged (truncated, corrupt or
            not what `save` writes), naming it.

    Example:

    >>> tokenizer = keras_mha.seq2seq.train_tokenizer(["Un chat."] * 9, 300)
    >>> tokenizers = keras_mha.seq2seq.tokenizers.TokenizerPair(
    ...     tokenizer, tokenizer
    ... )
    >>> keras_mha.seq2seq.persistence.save_tokenizers(tokenizers, "no_model")
    >>> keras_mha.seq2seq.persistence.load("no_model")
    Traceback (most recent call last):
    ...
    FileNotFoundError: ...'no_model/translator.keras'
    """
    import keras_hub

    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            "`directory` expected an existing directory written by "
            f"Translator.save. Received: directory={directory!r}"
        )
    lengths = _read_lengths(os.path.join(directory, LENGTHS_FILE))
    protos = [
        _read_proto(os.path.join(directory, f"{side}.spm")) for side in SIDES
    ]
    model = saving.load_model(os.path.join(directory, MODEL_FILE))
    tokenizers = [
        keras_hub.tokenizers.SentencePieceTokenizer(proto=proto)
        for proto in dict.fromkeys(protos)
    ]
    if len(tokenizers) == 1:  # One joint tokenizer serves both sides.
        tokenizers *= 2
    return model, TokenizerPair(*tokenizers, **lengths)


def _missing(path):
    return FileNotFoundError(
        "Translator.load expected the file that Translator.save writes. "
        f"Received: missing file {path!r}"
    )


def _damaged(path, reason):
    return ValueError(
        f"Translator.load cannot read {path!r}: the file is damaged "
        f"({reason}); save the translator again."
    )


def _read_lengths(path):
    """The `max_length` and `max_source_length` in `translator.json`,
    checked as `TokenizerPair` checks them."""
    if not os.path.isfile(path):
        raise _missing(path)
    try:
        with open(path, "rb") as file:
            lengths = json.loads(file.read())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _damaged(path, f"not valid JSON: {error}") from error
    keys = {"max_length", "max_source_length"}
    if not isinstance(lengths, dict) or set(lengths) != keys:
        raise _damaged(path, f"expected a JSON object of {sorted(keys)}")
    for name, value in lengths.items():
        try:
            check_int_at_least(name, value, 2)
        except (TypeError, ValueError) as error:
            raise _damaged(path, str(error)) from error
    return lengths


def _read_proto(path):
    """The bytes of a SentencePiece model file, checked to parse.

    TF Text would report a damaged model only when the tokenizer first
    runs, as an `InternalError` that names no file.
    """
    import sentencepiece

    if not os.path.isfile(path):
        raise _missing(path)
    with open(path, "rb") as file:
        proto = file.read()
    try:
        pieces = sentencepiece.SentencePieceProcessor(
            model_proto=proto
        ).get_piece_size()
    except RuntimeError as error:
        raise _damaged(path, "not a SentencePiece model") from error
    if pieces <= END_ID:
        raise _damaged(
            path, f"a SentencePiece model of {pieces} pieces, no end token"
        )
    return proto
