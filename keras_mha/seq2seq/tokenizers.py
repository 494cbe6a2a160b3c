"""Lossless subword tokenizers learned from a corpus.

`train_tokenizer` learns a SentencePiece model with identity normalization,
whitespace kept as written and byte fallback, and wraps it in keras_hub's
`SentencePieceTokenizer`: detokenizing the ids of any text gives the text
back byte for byte (case, punctuation, hyphens, apostrophes, accents,
spacing), and a character never seen in training comes out as its UTF-8
bytes, never as an unknown token. Ids 0-3 are padding, unknown, start and
end; the tokenizer runs TensorFlow Text ops, so a SavedModel that embeds it
serves wherever TensorFlow Text's kernels are loaded.

`TokenizerPair` holds a translator's source and target tokenizers and the
lengths they cut to: sentences to the ids the model reads, decoded ids
back to sentences, sentence pairs to training ids. `with_live_tokenizers`
runs a call again on fresh tokenizer resources when TensorFlow has dropped
them.
"""

import io

import numpy as np

from keras_mha._validation import check_int_at_least
from keras_mha._validation import check_pairs

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


class TokenizerPair:
    """The source and target tokenizers of a translator and the lengths
    they cut to.

    Its methods run TensorFlow (Text) ops whatever the Keras backend, as
    keras_hub's tokenizers do; one joint tokenizer may serve both sides.
    The lengths can be set later, checked as in the constructor.

    Args:
        source_tokenizer: tokenizer of the source (a keras_hub
            `SentencePieceTokenizer` from `train_tokenizer`).
        target_tokenizer: tokenizer of the target, likewise.
        max_length: int, at least 2. Most target tokens decoded, the
            start token included. Defaults to `64`.
        max_source_length: int, at least 2. Longer sources are cut to
            this many tokens, the end token included. Defaults to `256`.

    Example:

    >>> tokenizer = keras_mha.seq2seq.train_tokenizer(["Deux chats."] * 20, 300)
    >>> tokenizers = keras_mha.seq2seq.tokenizers.TokenizerPair(
    ...     tokenizer, tokenizer, max_length=4
    ... )
    >>> sources, targets = tokenizers.token_ids([("Deux chats.", "Un chat.")])
    >>> int(sources[0][-1]), int(targets[0][0]), int(targets[0][-1])
    (3, 2, 3)
    >>> len(targets[0])  # start, 3 pieces at most, end
    5
    """

    def __init__(
        self,
        source_tokenizer,
        target_tokenizer,
        max_length=64,
        max_source_length=256,
    ):
        self.max_length = max_length
        self.max_source_length = max_source_length
        self._source_tokenizer = source_tokenizer
        self._target_tokenizer = target_tokenizer

    @property
    def source_tokenizer(self):
        return self._source_tokenizer

    @property
    def target_tokenizer(self):
        return self._target_tokenizer

    @property
    def max_length(self):
        return self._max_length

    @max_length.setter
    def max_length(self, value):
        self._max_length = check_int_at_least("max_length", value, 2)

    @property
    def max_source_length(self):
        return self._max_source_length

    @max_source_length.setter
    def max_source_length(self, value):
        self._max_source_length = check_int_at_least(
            "max_source_length", value, 2
        )

    def source_ids(self, sentences):
        """The ids the model reads: pieces cut to `max_source_length - 1`,
        then the end token, padded with zeros. Traceable.

        Args:
            sentences: `(b,)` `tf.string` tensor.

        Returns:
            A `(b, s)` int32 `tf.Tensor`.

        Example:

        >>> import tensorflow as tf
        >>> tokenizer = keras_mha.seq2seq.train_tokenizer(["Un chat."] * 9, 300)
        >>> tokenizers = keras_mha.seq2seq.tokenizers.TokenizerPair(
        ...     tokenizer, tokenizer, max_source_length=3
        ... )
        >>> ids = tf.function(tokenizers.source_ids)(tf.constant(["Un chat."]))
        >>> ids.shape, int(ids[0, -1])
        (TensorShape([1, 3]), 3)
        """
        import tensorflow as tf

        pieces = self.source_tokenizer(sentences)
        pieces = pieces[:, : self.max_source_length - 1]
        ends = tf.fill([tf.shape(sentences)[0], 1], END_ID)
        return tf.concat([pieces, ends], axis=1).to_tensor()

    def target_texts(self, ids, sentences):
        """The texts of decoded ids: the tokens after the start token and
        before the first end token; blank sentences give empty strings.

        Args:
            ids: `(b, t)` int ids whose first column is the start token.
            sentences: `(b,)` `tf.string` tensor, the sentences decoded.

        Returns:
            A `(b,)` `tf.string` tensor.

        Example:

        >>> import tensorflow as tf
        >>> tokenizer = keras_mha.seq2seq.train_tokenizer(["Un chat."] * 9, 300)
        >>> tokenizers = keras_mha.seq2seq.tokenizers.TokenizerPair(
        ...     tokenizer, tokenizer
        ... )
        >>> pieces = [int(i) for i in tokenizer("Un chat.")]
        >>> ids = np.array([[2, *pieces, 3, 7]] * 2)  # 7: after the end
        >>> texts = tokenizers.target_texts(ids, tf.constant(["Un chat.", " "]))
        >>> [text.decode() for text in texts.numpy()]
        ['Un chat.', '']
        """
        import tensorflow as tf

        ids = tf.convert_to_tensor(ids)[:, 1:]
        # Keep the tokens before the first end token.
        before_end = tf.cumsum(tf.cast(ids == END_ID, "int32"), 1) == 0
        ids = tf.where(before_end, ids, 0)
        texts = self.target_tokenizer.detokenize(ids)
        blank = tf.strings.length(tf.strings.strip(sentences)) == 0
        return tf.where(blank, "", texts)

    def token_ids(self, pairs):
        """The training ids of sentence pairs: source ids as `source_ids`
        gives them (unpadded), and `start, pieces, end` target ids with at
        most `max_length - 1` pieces.

        Args:
            pairs: non-empty list of `(source, target)` strings.

        Returns:
            A tuple `(source_ids, target_ids)` of two lists of 1-D int32
            NumPy arrays, one per pair.

        Example:

        >>> tokenizer = keras_mha.seq2seq.train_tokenizer(["Un chat."] * 9, 300)
        >>> tokenizers = keras_mha.seq2seq.tokenizers.TokenizerPair(
        ...     tokenizer, tokenizer
        ... )
        >>> sources, targets = tokenizers.token_ids([("Un chat.", "Un chat.")])
        >>> list(sources[0]) == list(targets[0][1:])  # same text both sides
        True
        """
        import tensorflow as tf

        sources, targets = zip(*check_pairs("pairs", pairs))
        tokenizers = [self.source_tokenizer, self.target_tokenizer]
        # In a graph, keras_hub's tokenizers return tf.RaggedTensors.
        source_ids = with_live_tokenizers(
            lambda: tf.function(self.source_ids)(tf.constant(sources)),
            tokenizers,
        ).numpy()
        pieces = with_live_tokenizers(
            lambda: tf.function(self.target_tokenizer)(tf.constant(targets)),
            tokenizers,
        ).to_list()
        source_ids = [row[row != 0] for row in source_ids]
        target_ids = [
            np.array([START_ID, *row[: self.max_length - 1], END_ID], "int32")
            for row in pieces
        ]
        return source_ids, target_ids


def with_live_tokenizers(call, tokenizers, on_reload=None):
    """Returns `call()`, run again on fresh tokenizer resources if
    TensorFlow dropped them.

    TF Text keeps a SentencePiece model in a resource that TensorFlow
    deletes when its kernel cache is cleared, as `tf.random.set_seed` (and
    so `keras.utils.set_random_seed`) does; a graph that uses the tokenizer
    then fails with a `NotFoundError`. On that error, and on no other,
    each tokenizer is rebuilt from its own model (once, however often it
    is listed), `on_reload()` runs (to drop what was traced on the old
    resources) and `call()` runs again.

    Args:
        call: function of no arguments that runs the tokenizers.
        tokenizers: list of the keras_hub `SentencePieceTokenizer`s that
            `call` runs.
        on_reload: function of no arguments, or `None`. Runs after the
            tokenizers are rebuilt, before `call` runs again. Defaults to
            `None`.

    Returns:
        What `call()` returns.

    Example:

    >>> import tensorflow as tf
    >>> tokenizer = keras_mha.seq2seq.train_tokenizer(["Deux chats."] * 20, 300)
    >>> tokenize = lambda: tf.function(tokenizer)(tf.constant(["Deux chats."]))
    >>> keras.utils.set_random_seed(0)  # drops the tokenizer's resource
    >>> ids = keras_mha.seq2seq.tokenizers.with_live_tokenizers(
    ...     tokenize, [tokenizer]
    ... )
    >>> tokenizer.detokenize(ids.to_list()[0])
    'Deux chats.'
    """
    import tensorflow as tf

    try:
        return call()
    except tf.errors.NotFoundError as error:
        if "SentencepieceOp" not in str(error):
            raise
    for tokenizer in {id(t): t for t in tokenizers}.values():
        tokenizer.set_proto(tokenizer.proto)
    if on_reload is not None:
        on_reload()
    return call()
