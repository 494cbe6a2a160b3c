"""A translator: a `TransformerSeq2Seq` between its subword tokenizers.

`Translator` composes the units of `keras_mha.seq2seq`: the tokenizers and
their lengths (`tokenizers.TokenizerPair`), the cached decoding loop
(`decoding.decode_function`), the teacher-forcing data (`pipeline`) and
the files (`persistence`). `translate` maps strings to strings with the
very function that `keras_mha.seq2seq.export_translator` writes into a
SavedModel (`strings_to_strings`), so Python and served translations are
the same bytes.
"""

import keras
from keras import ops

from keras_mha._validation import check_bool
from keras_mha._validation import check_positive_int
from keras_mha._validation import check_strings
from keras_mha.generation import compiled
from keras_mha.generation import greedy_sampler
from keras_mha.seq2seq import persistence
from keras_mha.seq2seq import pipeline
from keras_mha.seq2seq.decoding import decode_function
from keras_mha.seq2seq.tokenizers import END_ID
from keras_mha.seq2seq.tokenizers import START_ID
from keras_mha.seq2seq.tokenizers import TokenizerPair
from keras_mha.seq2seq.tokenizers import with_live_tokenizers


class Translator:
    """A `TransformerSeq2Seq` with its source and target tokenizers.

    Args:
        model: a `keras_mha.seq2seq.TransformerSeq2Seq`.
        source_tokenizer: tokenizer of the source (a keras_hub
            `SentencePieceTokenizer` from `train_tokenizer`).
        target_tokenizer: tokenizer of the target, likewise.
        max_length: int, at least 2. Most target tokens decoded, the
            start token included. Defaults to `64`.
        max_source_length: int, at least 2. Longer sources are cut to this
            many tokens. Defaults to `256`.

    Example:

    >>> pairs = keras_mha.seq2seq.data.number_pairs(40, seed=0)
    >>> tokenizer = keras_mha.seq2seq.train_tokenizer(
    ...     [text for pair in pairs for text in pair], 400
    ... )
    >>> model = keras_mha.seq2seq.TransformerSeq2Seq(
    ...     tokenizer.vocabulary_size(), tokenizer.vocabulary_size(),
    ...     hidden_dim=8, num_heads=2, intermediate_dim=8, num_layers=1,
    ... )
    >>> translator = keras_mha.seq2seq.Translator(model, tokenizer, tokenizer)
    >>> len(translator.translate(["Marie has three cats.", ""]))  # untrained
    2
    """

    def __init__(
        self,
        model,
        source_tokenizer,
        target_tokenizer,
        max_length=64,
        max_source_length=256,
    ):
        self.tokenizers = TokenizerPair(
            source_tokenizer, target_tokenizer, max_length, max_source_length
        )
        self.model = model
        self._functions = _TranslateFunctions()

    @property
    def source_tokenizer(self):
        return self.tokenizers.source_tokenizer

    @property
    def target_tokenizer(self):
        return self.tokenizers.target_tokenizer

    @property
    def max_length(self):
        return self.tokenizers.max_length

    @max_length.setter
    def max_length(self, value):
        self.tokenizers.max_length = value

    @property
    def max_source_length(self):
        return self.tokenizers.max_source_length

    @max_source_length.setter
    def max_source_length(self, value):
        self.tokenizers.max_source_length = value

    def strings_to_strings(self, sentences, sampler=None):
        """Translates a tensor of strings, traceable: the function that a
        SavedModel serves (TensorFlow backend) and `translate` compiles.

        Args:
            sentences: `(b,)` `tf.string` tensor.
            sampler: the sampler of the decoding loop. Defaults to `None`,
                greedy decoding.

        Returns:
            A `(b,)` `tf.string` tensor of translations.

        Example:

        >>> import tensorflow as tf
        >>> pairs = keras_mha.seq2seq.data.number_pairs(40, seed=0)
        >>> translator = keras_mha.seq2seq.build_translator(
        ...     pairs, vocabulary_size=400, hidden_dim=8, num_heads=2,
        ...     intermediate_dim=8, num_layers=1,
        ... )
        >>> translate = tf.function(translator.strings_to_strings)
        >>> translate(tf.constant(["", "Marie has two cats."])).shape
        TensorShape([2])
        """
        sampler = sampler or greedy_sampler()
        return _strings_function(self.model, self.tokenizers, sampler)(
            sentences
        )

    def translate(self, sentences, batch_size=256, sampler=None, compile=True):
        """Translates a list of strings; returns a list of strings.

        On TensorFlow it runs `strings_to_strings` as one `tf.function`, the
        graph that `export_translator` serves; on JAX and PyTorch the
        tokenizers run in TensorFlow and the decoding loop is compiled for
        the backend. `compile=False` runs the decoding loop eagerly, op by
        op (for debugging; much slower).

        Args:
            sentences: list, tuple or 1-D NumPy array of `str`. A bare
                string is a `TypeError` (pass `[text]` for one), and so is
                an item that is not a `str` (`None`, a number, `bytes`).
            batch_size: positive int. Sentences decoded together.
                Defaults to `256`.
            sampler: the sampler of the decoding loop. Defaults to `None`,
                greedy decoding.
            compile: bool. Whether the decoding loop is compiled. Defaults
                to `True`.

        Returns:
            A list of `str`, one translation per sentence.

        Example:

        >>> pairs = keras_mha.seq2seq.data.number_pairs(40, seed=0)
        >>> translator = keras_mha.seq2seq.build_translator(
        ...     pairs, vocabulary_size=400, hidden_dim=8, num_heads=2,
        ...     intermediate_dim=8, num_layers=1,
        ... )
        >>> translator.translate(["", "   "])
        ['', '']
        """
        import tensorflow as tf

        sentences = check_strings("sentences", sentences)
        check_positive_int("batch_size", batch_size)
        check_bool("compile", compile)
        sampler = sampler or greedy_sampler()

        def translate_batch(batch):
            run = self._functions.get(
                self.model, self.tokenizers, sampler, compile
            )
            return run(batch)

        translations = []
        for i in range(0, len(sentences), batch_size):
            batch = tf.constant(sentences[i : i + batch_size], tf.string)
            texts = with_live_tokenizers(
                lambda batch=batch: translate_batch(batch),
                [self.source_tokenizer, self.target_tokenizer],
                # What was traced holds the dropped resources.
                on_reload=self._functions.clear,
            )
            translations += [text.decode("utf-8") for text in texts.numpy()]
        return translations

    def dataset(
        self,
        pairs,
        batch_size=64,
        bucketed=True,
        shuffle=True,
        seed=0,
        pad_to_boundaries=None,
    ):
        """A `tf.data.Dataset` of `((source_ids, decoder_input), labels)`
        for `model.fit`, bucketed by length: what
        `keras_mha.seq2seq.pipeline.teacher_forcing_dataset` makes of
        `pairs` with this translator's tokenizers (it describes the
        batches and the arguments).

        Args:
            pairs: list of `(source, target)` strings.
            batch_size: int. Defaults to `64`.
            bucketed: bool. Defaults to `True`.
            shuffle: bool. Defaults to `True`.
            seed: int. Defaults to `0`.
            pad_to_boundaries: bool or `None` (JAX only). Defaults to
                `None`.

        Returns:
            A `tf.data.Dataset` for `model.fit`.

        Example:

        >>> pairs = keras_mha.seq2seq.data.number_pairs(40, seed=0)
        >>> translator = keras_mha.seq2seq.build_translator(
        ...     pairs, vocabulary_size=400, hidden_dim=8, num_heads=2,
        ...     intermediate_dim=8, num_layers=1,
        ... )
        >>> data = translator.dataset(pairs, batch_size=8)
        >>> sum(int(labels.shape[0]) for _, labels in data)  # every pair
        40
        """
        return pipeline.teacher_forcing_dataset(
            self.tokenizers,
            pairs,
            batch_size,
            bucketed=bucketed,
            shuffle=shuffle,
            seed=seed,
            pad_to_boundaries=pad_to_boundaries,
        )

    def save(self, directory):
        """Writes the model, the tokenizers and their lengths into
        `directory`, as `keras_mha.seq2seq.persistence.save` does.

        Args:
            directory: str or `os.PathLike`. Created if it does not exist.

        Returns:
            `None`.

        Example:

        >>> pairs = keras_mha.seq2seq.data.number_pairs(40, seed=0)
        >>> translator = keras_mha.seq2seq.build_translator(
        ...     pairs, vocabulary_size=400, hidden_dim=8, num_heads=2,
        ...     intermediate_dim=8, num_layers=1,
        ... )
        >>> translator.save("translator")
        >>> loaded = keras_mha.seq2seq.Translator.load("translator")
        >>> loaded.max_length == translator.max_length
        True
        """
        persistence.save(self.model, self.tokenizers, directory)

    @classmethod
    def load(cls, directory):
        """Loads what `save` (or a checkpoint beside
        `persistence.save_tokenizers`) wrote to `directory`, checking
        every file first, as `keras_mha.seq2seq.persistence.load` does.

        Args:
            directory: str or `os.PathLike`, a directory that `save` wrote.

        Returns:
            A `Translator`.

        Raises:
            FileNotFoundError: if `directory` or one of its files is
                missing, naming it.
            ValueError: if one of the files is damaged (truncated, corrupt
                or not what `save` writes), naming it.

        Example:

        >>> keras_mha.seq2seq.Translator.load("nowhere")
        Traceback (most recent call last):
        ...
        FileNotFoundError: ...directory='nowhere'
        """
        model, tokenizers = persistence.load(directory)
        return cls(
            model,
            tokenizers.source_tokenizer,
            tokenizers.target_tokenizer,
            tokenizers.max_length,
            tokenizers.max_source_length,
        )


class _TranslateFunctions:
    """The `(b,) tf strings -> (b,) tf strings` functions `translate` runs,
    each made once for what it closes over: the model, the tokenizers and
    their lengths, the sampler's type and config, and `compile`."""

    def __init__(self):
        self._functions = {}

    def get(self, model, tokenizers, sampler, compile):
        key = (
            id(model),
            id(tokenizers),
            tokenizers.max_length,
            tokenizers.max_source_length,
            type(sampler).__name__,
            repr(sorted(sampler.get_config().items())),
            compile,
        )
        if key not in self._functions:
            self._functions[key] = _translate_function(
                model, tokenizers, sampler, compile
            )
        return self._functions[key]

    def clear(self):
        self._functions.clear()


def _strings_function(model, tokenizers, sampler):
    """The traceable `strings -> strings` function of `strings_to_strings`."""
    decode_ids = decode_function(
        model, tokenizers.max_length, START_ID, END_ID, sampler, True
    )

    def strings_to_strings(sentences):
        ids = decode_ids(tokenizers.source_ids(sentences))
        return tokenizers.target_texts(ids, sentences)

    return strings_to_strings


def _translate_function(model, tokenizers, sampler, compile):
    """One `tf.function` of `_strings_function` on TensorFlow; elsewhere,
    tokenizers in TensorFlow around the backend's decoding loop."""
    import tensorflow as tf

    if keras.backend.backend() == "tensorflow" and compile:
        return tf.function(
            _strings_function(model, tokenizers, sampler),
            input_signature=[tf.TensorSpec((None,), tf.string)],
        )
    decode_ids = decode_function(
        model, tokenizers.max_length, START_ID, END_ID, sampler, True
    )
    if compile:
        key = ("translate", tokenizers.max_length)
        decode_ids = compiled(model, sampler, key, decode_ids)
    source_ids = tf.function(tokenizers.source_ids)

    def run(sentences):
        ids = decode_ids(source_ids(sentences).numpy())
        return tokenizers.target_texts(ops.convert_to_numpy(ids), sentences)

    return run
