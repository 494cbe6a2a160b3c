"""A translator: subword tokenizers around a `TransformerSeq2Seq`.

`Translator` holds the model and the source and target tokenizers of
`keras_mha.seq2seq.tokenizers`. `translate` maps strings to strings with
the very function that `keras_mha.seq2seq.export_translator` writes into
a SavedModel (`strings_to_strings`), so Python and served translations are
the same bytes. `dataset` turns pairs into teacher-forcing batches for
`model.fit`, bucketed by length so a batch pads only to its own longest
sentence. `save` and `load` keep the model and the tokenizers together.
"""

import json
import os

import keras
import numpy as np
from keras import ops

from keras_mha import saving
from keras_mha._validation import check_bool
from keras_mha._validation import check_positive_int
from keras_mha._validation import check_strings
from keras_mha.generation import compiled
from keras_mha.generation import greedy_sampler
from keras_mha.seq2seq.decoding import decode_function
from keras_mha.seq2seq.tokenizers import END_ID
from keras_mha.seq2seq.tokenizers import START_ID

# Bucket upper bounds (in tokens) of `Translator.dataset`.
BUCKET_BOUNDARIES = (8, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 192, 256)


def _pad_to_boundary(batch, longest):
    """Pads `(b, n)` ids with zeros to the smallest bucket boundary (or
    `longest`) that is at least `n`."""
    import tensorflow as tf

    lengths = [b for b in BUCKET_BOUNDARIES if b < longest] + [longest]
    lengths = tf.constant(lengths, tf.int32)
    length = tf.shape(batch)[1]
    padded = tf.reduce_min(tf.boolean_mask(lengths, lengths >= length))
    return tf.pad(batch, [[0, 0], [0, padded - length]])


class Translator:
    """A `TransformerSeq2Seq` with its source and target tokenizers.

    Args:
        model: a `keras_mha.seq2seq.TransformerSeq2Seq`.
        source_tokenizer: tokenizer of the source (a keras_hub
            `SentencePieceTokenizer` from `train_tokenizer`).
        target_tokenizer: tokenizer of the target, likewise.
        max_length: int. Most target tokens decoded, the start token
            included. Defaults to `64`.
        max_source_length: int. Longer sources are cut to this many tokens.
            Defaults to `256`.

    Example:

    >>> translator = Translator(model, source_tokenizer, target_tokenizer)
    >>> translator.translate(["Marie has three cats.", ""])
    ['Marie a trois chats.', '']
    """

    def __init__(
        self,
        model,
        source_tokenizer,
        target_tokenizer,
        max_length=64,
        max_source_length=256,
    ):
        for name, value in (
            ("max_length", max_length),
            ("max_source_length", max_source_length),
        ):
            if not isinstance(value, int) or value < 2:
                raise ValueError(
                    f"`{name}` expected an integer >= 2. "
                    f"Received: {name}={value!r}"
                )
        self.model = model
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.max_length = max_length
        self.max_source_length = max_source_length
        self._functions = {}

    # Tokenization (TensorFlow ops: keras_hub's tokenizers run TF Text).

    def source_ids(self, sentences):
        """`(b,)` tf strings -> `(b, s)` int32 tf ids: pieces, then end."""
        import tensorflow as tf

        pieces = self.source_tokenizer(sentences)
        pieces = pieces[:, : self.max_source_length - 1]
        ends = tf.fill([tf.shape(sentences)[0], 1], END_ID)
        return tf.concat([pieces, ends], axis=1).to_tensor()

    def target_texts(self, ids, sentences):
        """Decoded `(b, t)` ids -> `(b,)` tf strings; blank sentences give
        empty strings."""
        import tensorflow as tf

        ids = tf.convert_to_tensor(ids)[:, 1:]
        # Keep the tokens before the first end token.
        before_end = tf.cumsum(tf.cast(ids == END_ID, "int32"), 1) == 0
        ids = tf.where(before_end, ids, 0)
        texts = self.target_tokenizer.detokenize(ids)
        blank = tf.strings.length(tf.strings.strip(sentences)) == 0
        return tf.where(blank, "", texts)

    def strings_to_strings(self, sentences, sampler=None):
        """`(b,)` tf strings -> `(b,)` translated tf strings, traceable: the
        function a SavedModel serves (TensorFlow backend)."""
        decode_ids = decode_function(
            self.model,
            self.max_length,
            START_ID,
            END_ID,
            sampler or greedy_sampler(),
            use_cache=True,
        )
        ids = decode_ids(self.source_ids(sentences))
        return self.target_texts(ids, sentences)

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
        """
        import tensorflow as tf

        sentences = check_strings("sentences", sentences)
        check_positive_int("batch_size", batch_size)
        check_bool("compile", compile)
        translations = []
        for i in range(0, len(sentences), batch_size):
            batch = tf.constant(sentences[i : i + batch_size], tf.string)
            texts = self.with_live_tokenizers(
                lambda batch=batch: self._translate_batch(
                    batch, sampler, compile
                )
            )
            translations += [text.decode("utf-8") for text in texts.numpy()]
        return translations

    def _translate_batch(self, sentences, sampler, compile=True):
        import tensorflow as tf

        sampler = sampler or greedy_sampler()
        config = sorted(sampler.get_config().items())
        key = repr((type(sampler).__name__, config, compile))
        if key not in self._functions:
            if keras.backend.backend() == "tensorflow" and compile:
                self._functions[key] = tf.function(
                    lambda s: self.strings_to_strings(s, sampler),
                    input_signature=[tf.TensorSpec((None,), tf.string)],
                )
            else:
                decode_ids = decode_function(
                    self.model,
                    self.max_length,
                    START_ID,
                    END_ID,
                    sampler,
                    use_cache=True,
                )
                if compile:
                    decode_ids = compiled(
                        self.model,
                        sampler,
                        ("translate", self.max_length),
                        decode_ids,
                    )
                source_ids = tf.function(self.source_ids)

                def run(sentences):
                    ids = decode_ids(source_ids(sentences).numpy())
                    ids = ops.convert_to_numpy(ids)
                    return self.target_texts(ids, sentences)

                self._functions[key] = run
        return self._functions[key](sentences)

    def with_live_tokenizers(self, call):
        """`call()`, run again on fresh tokenizer resources if TensorFlow
        dropped them.

        TF Text keeps a SentencePiece model in a resource that TensorFlow
        deletes when its kernel cache is cleared, as `tf.random.set_seed`
        (and so `keras.utils.set_random_seed`) does.
        """
        import tensorflow as tf

        try:
            return call()
        except tf.errors.NotFoundError as error:
            if "SentencepieceOp" not in str(error):
                raise
        for tokenizer in {
            id(t): t for t in (self.source_tokenizer, self.target_tokenizer)
        }.values():
            tokenizer.set_proto(tokenizer.proto)
        self._functions.clear()
        return call()

    # Training data.

    def token_ids(self, pairs):
        """Source ids and `start, pieces, end` target ids of `pairs`, as
        two lists of int32 arrays (targets cut to `max_length`)."""
        import tensorflow as tf

        sources, targets = zip(*pairs)
        # In a graph, keras_hub's tokenizers return tf.RaggedTensors.
        source_ids = self.with_live_tokenizers(
            lambda: tf.function(self.source_ids)(tf.constant(sources))
        ).numpy()
        pieces = self.with_live_tokenizers(
            lambda: tf.function(self.target_tokenizer)(tf.constant(targets))
        ).to_list()
        source_ids = [row[row != 0] for row in source_ids]
        target_ids = [
            np.array([START_ID, *row[: self.max_length - 1], END_ID], "int32")
            for row in pieces
        ]
        return source_ids, target_ids

    def dataset(
        self,
        pairs,
        batch_size=64,
        bucketed=True,
        shuffle=True,
        seed=0,
        pad_to_boundaries=None,
    ):
        """A `tf.data.Dataset` of `((source_ids, decoder_input), labels)`.

        The decoder sees `start w1 .. wn` and learns `w1 .. wn end`. With
        `bucketed=True`, sentences are grouped by length
        (`bucket_by_sequence_length`) and each batch is padded to its own
        longest sentence. With `pad_to_boundaries=True`, a batch's sources
        and targets are each padded further, up to the next bucket
        boundary: a few batch shapes, so JAX, which compiles the train step
        once per shape, compiles a few times instead of once per batch
        length (the default on JAX only). With `bucketed=False`,
        every batch is padded to the longest sentence of `pairs`, the
        padding-heavy baseline. Shuffled anew each epoch with
        `shuffle=True`.
        """
        import tensorflow as tf

        source_ids, target_ids = self.token_ids(pairs)
        source_max = max(len(row) for row in source_ids)
        target_max = max(len(row) for row in target_ids) - 1
        data = tf.data.Dataset.from_tensor_slices(
            (
                tf.ragged.constant(source_ids, tf.int32),
                tf.ragged.constant(target_ids, tf.int32),
            )
        )
        if shuffle:
            data = data.shuffle(len(pairs), seed=seed)

        def teacher_forcing(source, target):
            # RaggedTensor rows become plain 1-D tensors.
            return source, target[:-1], target[1:]

        data = data.map(teacher_forcing)
        if bucketed:
            boundaries = [b for b in BUCKET_BOUNDARIES if b < target_max] or [
                target_max
            ]
            data = data.bucket_by_sequence_length(
                lambda source, inputs, labels: tf.maximum(
                    tf.shape(source)[0], tf.shape(inputs)[0]
                ),
                bucket_boundaries=boundaries,
                bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            )
            if pad_to_boundaries is None:
                pad_to_boundaries = keras.backend.backend() == "jax"
            if pad_to_boundaries:
                data = data.map(
                    lambda s, i, labels: (
                        _pad_to_boundary(s, source_max),
                        _pad_to_boundary(i, target_max),
                        _pad_to_boundary(labels, target_max),
                    )
                )
        else:
            data = data.padded_batch(
                batch_size,
                padded_shapes=([source_max], [target_max], [target_max]),
            )
        data = data.map(lambda s, i, labels: ((s, i), labels))
        return data.prefetch(tf.data.AUTOTUNE)

    # Saving.

    def save(self, directory):
        """Writes `translator.keras` (unless the model is not built),
        the tokenizers' `source.spm` and `target.spm`, and
        `translator.json` into `directory`."""
        os.makedirs(directory, exist_ok=True)
        self.save_tokenizers(directory)
        self.model.save(os.path.join(directory, "translator.keras"))

    def save_tokenizers(self, directory):
        """The tokenizers and lengths: what a checkpoint needs beside it."""
        os.makedirs(directory, exist_ok=True)
        for name in ("source", "target"):
            tokenizer = getattr(self, f"{name}_tokenizer")
            with open(os.path.join(directory, f"{name}.spm"), "wb") as file:
                file.write(tokenizer.proto)
        with open(os.path.join(directory, "translator.json"), "w") as file:
            json.dump(
                {
                    "max_length": self.max_length,
                    "max_source_length": self.max_source_length,
                },
                file,
            )

    @classmethod
    def load(cls, directory):
        """Loads what `save` (or a checkpoint beside `save_tokenizers`)
        wrote to `directory`.

        Each file is checked before it is used and nothing is written: the
        lengths (`translator.json`), the tokenizers (`source.spm`,
        `target.spm`), then the model (`translator.keras`, through
        `keras_mha.saving.load_model`, in safe mode).

        Raises:
            FileNotFoundError: if `directory` or one of its files is
                missing, naming it.
            ValueError: if one of the files is damaged (truncated, corrupt
                or not what `save` writes), naming it.
        """
        import keras_hub

        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise FileNotFoundError(
                "`directory` expected an existing directory written by "
                f"Translator.save. Received: directory={directory!r}"
            )
        lengths = _read_lengths(os.path.join(directory, "translator.json"))
        protos = [
            _read_proto(os.path.join(directory, f"{name}.spm"))
            for name in ("source", "target")
        ]
        model = saving.load_model(os.path.join(directory, "translator.keras"))
        tokenizers = [
            keras_hub.tokenizers.SentencePieceTokenizer(proto=proto)
            for proto in dict.fromkeys(protos)
        ]
        if len(tokenizers) == 1:  # One joint tokenizer serves both sides.
            tokenizers *= 2
        return cls(model, *tokenizers, **lengths)


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
    """The `max_length` and `max_source_length` in `translator.json`."""
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
