"""Every attention layer's per-head maps in one forward pass; words.

`attention_maps` runs a model once, eagerly, while the package's attention
layers hand their probabilities to a recorder (`keras_mha._capture`), so it
works for functional, sequential and subclassed models alike and reads no
private Keras state. `merge_subwords` turns maps over subword pieces into
maps over words. Notation: b batch, n heads, t queries, s keys.
"""

import re

import numpy as np

from keras_mha import _capture

# SentencePiece's word-start mark, WordPiece's continuation mark.
WORD_START, CONTINUATION = "\u2581", "##"
_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_SPECIAL_PIECE = re.compile(r"^(<[^<>\s]+>|\[[^\[\]\s]+\])$")


def attention_maps(model, inputs, **call_kwargs):
    """Every attention layer's per-head probabilities, from one pass.

    Calls `model(inputs, training=False, **call_kwargs)` once, eagerly;
    each `MultiHeadAttention` and `MultiHeadSelfAttention` it runs (also
    inside `TransformerEncoderBlock`, `TransformerDecoderBlock` and the
    models of `keras_mha.seq2seq`) computes its probabilities on the
    explicit path and records them. The outputs are those of a normal
    call.

    Args:
        model: a `keras.Model` (functional, sequential or subclassed) or
            layer containing keras_mha's attention layers.
        inputs: its inputs, as `model` takes them (for
            `TransformerSeq2Seq`, `[source_ids, target_ids]`).
        **call_kwargs: other call arguments of `model`.

    Returns:
        A dict from each attention call's key to its `(batch, num_heads,
        query_length, key_length)` float32 NumPy probabilities, in call
        order. The key is the layer's `path` (such as
        `"decoder_block_0/cross_attention"`); a layer called again in the
        same pass gets `":1"`, `":2"`, ... appended. Each row sums to 1;
        masked keys (padding, causal) are exactly 0, and so is every row
        of a query that may attend to no key.

    Example:

    >>> block = keras_mha.TransformerEncoderBlock(
    ...     2, intermediate_dim=8, name="encoder"
    ... )
    >>> model = keras.Sequential([keras.Input((5, 4)), block], name="model")
    >>> maps = attention_maps(model, np.ones((3, 5, 4)))
    >>> {path: m.shape for path, m in maps.items()}
    {'model/encoder/self_attention': (3, 2, 5, 5)}
    """
    return {
        r.path: r.scores for r in record_attention(model, inputs, **call_kwargs)
    }


def record_attention(model, inputs, **call_kwargs):
    """`attention_maps`' records: `Record(path, layer, scores)` in order."""
    with _capture.recording() as recorder:
        model(inputs, training=False, **call_kwargs)
    if not recorder.records and recorder.traced:
        raise ValueError(
            "`model` ran its attention layers only inside a traced function "
            "(tf.function, jax.jit or torch.compile), whose maps have no "
            "values: attention maps are read from an eager forward pass. "
            f"Received: model={getattr(model, 'name', model)!r}"
        )
    if not recorder.records:
        raise ValueError(
            "`model` ran no attention layer of keras_mha (MultiHeadAttention, "
            "MultiHeadSelfAttention or a block built from them). Received: "
            f"model={getattr(model, 'name', model)!r}"
        )
    return recorder.records


def word_groups(tokens):
    """Groups subword pieces into words.

    A piece starting with `▁` (SentencePiece) starts a word, one starting
    with `##` (WordPiece) continues the previous word, and so do unmarked
    pieces and byte pieces (`<0xC3>`) when the tokens use `▁` marks.
    Special pieces (`<s>`, `[START]`) are words of their own. Tokens with
    no marks at all are each a word.

    Args:
        tokens: list of piece strings.

    Returns:
        A list of `(word, indices)`: the word's text without marks (byte
        pieces decoded as UTF-8) and the indices of its pieces.

    Example:

    >>> word_groups(["<s>", "\u2581The", "\u2581se", "e", "s", "\u2581."])
    [('<s>', [0]), ('The', [1]), ('sees', [2, 3, 4]), ('.', [5])]
    """
    marked = any(str(t).startswith(WORD_START) for t in tokens)
    groups = []  # [parts, indices, special]
    for index, token in enumerate(map(str, tokens)):
        special = bool(_SPECIAL_PIECE.match(token)) and not _BYTE_PIECE.match(
            token
        )
        byte = _BYTE_PIECE.match(token)
        continues = (
            groups
            and not special
            and not groups[-1][2]
            and (
                token.startswith(CONTINUATION)
                or (marked and not token.startswith(WORD_START))
            )
        )
        if byte:
            part = bytes([int(byte.group(1), 16)])
        elif token.startswith(CONTINUATION) and continues:
            part = token[len(CONTINUATION) :]
        else:
            part = token.removeprefix(WORD_START)
        if continues:
            groups[-1][0].append(part)
            groups[-1][1].append(index)
        else:
            groups.append([[part], [index], special])
    return [(_join(parts), indices) for parts, indices, _ in groups]


def _join(parts):
    """Text of str and byte parts; runs of bytes decode as UTF-8."""
    text, pending = [], b""
    for part in parts:
        if isinstance(part, bytes):
            pending += part
            continue
        text.append(pending.decode("utf-8", "replace") + part)
        pending = b""
    return "".join(text) + pending.decode("utf-8", "replace")


def merge_subwords(scores, query_tokens, key_tokens):
    """Maps over pieces to maps over words.

    A word's weight as a key is the sum of its pieces' weights (so rows
    still sum to 1); as a query, the mean over its pieces' rows.

    Args:
        scores: array of shape `(..., query_length, key_length)`.
        query_tokens: the `query_length` pieces of the queries.
        key_tokens: the `key_length` pieces of the keys.

    Returns:
        `(scores, query_words, key_words)`: `(..., query_words,
        key_words)` float32 maps and the two lists of words.

    Example:

    >>> scores = np.array([[0.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0, 0, 1]])
    >>> words = ["\u2581a", "\u2581b", "c"]
    >>> merged, queries, keys = merge_subwords(scores, words, words)
    >>> merged.tolist(), keys
    ([[0.5, 0.5], [0.0, 1.0]], ['a', 'bc'])
    """
    scores = np.asarray(scores, "float32")
    for name, tokens, axis in (
        ("query_tokens", query_tokens, -2),
        ("key_tokens", key_tokens, -1),
    ):
        if len(tokens) != scores.shape[axis]:
            raise ValueError(
                f"`{name}` expected {scores.shape[axis]} pieces to match the "
                f"scores of shape {scores.shape}. Received: "
                f"len({name})={len(tokens)}"
            )
    query_groups, key_groups = (
        word_groups(query_tokens),
        word_groups(key_tokens),
    )
    average = np.zeros((len(query_groups), len(query_tokens)), "float32")
    for row, (_, indices) in enumerate(query_groups):
        average[row, indices] = 1.0 / len(indices)
    total = np.zeros((len(key_tokens), len(key_groups)), "float32")
    for column, (_, indices) in enumerate(key_groups):
        total[indices, column] = 1.0
    merged = average @ scores @ total  # (..., query_words, key_words)
    return (
        merged,
        [word for word, _ in query_groups],
        [word for word, _ in key_groups],
    )
