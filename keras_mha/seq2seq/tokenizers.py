"""Lossless subword tokenizers learned from a corpus.

`train_tokenizer` learns a SentencePiece model with identity normalization,
whitespace kept as written and byte fallback, and wraps it in keras_hub's
`SentencePieceTokenizer`: detokenizing the ids of any text gives the text
back byte for byte (case, punctuation, hyphens, apostrophes, accents,
spacing), and a character never seen in training comes out as its UTF-8
bytes, never as an unknown token. Ids 0-3 are padding, unknown, start and
end; the tokenizer runs TensorFlow Text ops, so a SavedModel that embeds it
serves wherever TensorFlow Text's kernels are loaded.
"""

import io

PAD_ID, UNKNOWN_ID, START_ID, END_ID = 0, 1, 2, 3
# 4 special pieces and 256 byte pieces come before any learned piece.
_RESERVED = 4 + 256


def train_tokenizer(texts, vocabulary_size=1000, model_type="unigram"):
    """Learns a lossless SentencePiece tokenizer from `texts`.

    Args:
        texts: iterable of strings to learn the pieces from.
        vocabulary_size: int. Most pieces, the 260 special and byte
            pieces included; fewer when the texts do not yield that many.
            Defaults to `1000`.
        model_type: `"unigram"` or `"bpe"`. Defaults to `"unigram"`.

    Returns:
        A `keras_hub.tokenizers.SentencePieceTokenizer`.

    Example:

    >>> tokenizer = keras_mha.seq2seq.train_tokenizer(
    ...     ["Quatre-vingt-deux chats."] * 20, 300
    ... )
    >>> tokenizer.detokenize(tokenizer("Quatre-vingt-trois Zèbres !"))
    'Quatre-vingt-trois Zèbres !'
    """
    import keras_hub
    import sentencepiece

    if not isinstance(vocabulary_size, int) or vocabulary_size <= _RESERVED:
        raise ValueError(
            f"`vocabulary_size` expected an integer above {_RESERVED} (the "
            "special and byte pieces). "
            f"Received: vocabulary_size={vocabulary_size!r}"
        )
    if model_type not in ("unigram", "bpe"):
        raise ValueError(
            "`model_type` expected 'unigram' or 'bpe'. "
            f"Received: model_type={model_type!r}"
        )
    texts = [text for text in texts if text.strip()]
    if not texts:
        raise ValueError("`texts` expected at least one non-blank text.")
    proto = io.BytesIO()
    try:
        _train(sentencepiece, texts, proto, vocabulary_size, model_type)
    except RuntimeError as error:
        # SentencePiece needs a piece for each character it keeps.
        raise ValueError(
            f"`vocabulary_size` is too small for the characters of `texts` "
            f"({error}). Received: vocabulary_size={vocabulary_size}"
        ) from error
    return keras_hub.tokenizers.SentencePieceTokenizer(proto=proto.getvalue())


def _train(sentencepiece, texts, proto, vocabulary_size, model_type):
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=proto,
        vocab_size=vocabulary_size,
        model_type=model_type,
        # Lossless: no normalization, spaces as written, bytes for the rest.
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        byte_fallback=True,
        character_coverage=0.9995,
        hard_vocab_limit=False,
        split_digits=True,
        pad_id=PAD_ID,
        unk_id=UNKNOWN_ID,
        bos_id=START_ID,
        eos_id=END_ID,
        num_threads=1,
        minloglevel=2,
    )
