"""Teacher-forcing batches of sentence pairs for `model.fit`.

`teacher_forcing_dataset` turns `(source, target)` pairs into a `tf.data`
pipeline of `((source_ids, decoder_input), labels)` batches, bucketed by
length so that a batch pads only to its own longest sentence, and on JAX
padded further up to the next of `BUCKET_BOUNDARIES`, so that the train
step compiles for a few batch shapes instead of one per batch length.
"""

import keras

from keras_mha._validation import check_bool
from keras_mha._validation import check_positive_int

# Bucket upper bounds (in tokens) of `teacher_forcing_dataset`.
BUCKET_BOUNDARIES = (8, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 192, 256)


def teacher_forcing_dataset(
    tokenizers,
    pairs,
    batch_size=64,
    bucketed=True,
    shuffle=True,
    seed=0,
    pad_to_boundaries=None,
):
    """A `tf.data.Dataset` of `((source_ids, decoder_input), labels)`.

    The decoder sees `start w1 .. wn` and learns `w1 .. wn end`. With
    `bucketed=True`, pairs are grouped by length
    (`bucket_by_sequence_length`) and each batch is padded to its own
    longest sentence. With `pad_to_boundaries=True`, a batch's sources and
    targets are each padded further, up to the next bucket boundary: a few
    batch shapes, so JAX, which compiles the train step once per shape,
    compiles a few times instead of once per batch length (the default on
    JAX only). With `bucketed=False`, every batch is padded to the longest
    sentence of `pairs`, the padding-heavy baseline. Shuffled anew each
    epoch with `shuffle=True`.

    Args:
        tokenizers: a `keras_mha.seq2seq.tokenizers.TokenizerPair`, whose
            `token_ids` give the ids.
        pairs: non-empty list of `(source, target)` strings.
        batch_size: positive int. Pairs a batch. Defaults to `64`.
        bucketed: bool. Group pairs by length. Defaults to `True`.
        shuffle: bool. Shuffle anew each epoch. Defaults to `True`.
        seed: int. Seed of the shuffle. Defaults to `0`.
        pad_to_boundaries: bool or `None`. Pad batches up to the next
            bucket boundary; `None` does so on JAX only. Defaults to
            `None`.

    Returns:
        A `tf.data.Dataset` for `model.fit`.

    Example:

    >>> pairs = keras_mha.seq2seq.data.number_pairs(40, seed=0)
    >>> tokenizer = keras_mha.seq2seq.train_tokenizer(
    ...     [text for pair in pairs for text in pair], 400
    ... )
    >>> tokenizers = keras_mha.seq2seq.tokenizers.TokenizerPair(
    ...     tokenizer, tokenizer
    ... )
    >>> data = keras_mha.seq2seq.pipeline.teacher_forcing_dataset(
    ...     tokenizers, pairs, batch_size=4, shuffle=False
    ... )
    >>> (source, decoder_input), labels = next(iter(data))
    >>> source.shape[0], decoder_input.shape == labels.shape
    (4, True)
    """
    import tensorflow as tf

    batch_size = check_positive_int("batch_size", batch_size)
    bucketed = check_bool("bucketed", bucketed)
    shuffle = check_bool("shuffle", shuffle)
    pad_to_boundaries = check_bool(
        "pad_to_boundaries", pad_to_boundaries, allow_none=True
    )
    source_ids, target_ids = tokenizers.token_ids(pairs)
    source_max = max(len(row) for row in source_ids)
    target_max = max(len(row) for row in target_ids) - 1
    data = tf.data.Dataset.from_tensor_slices(
        (
            tf.ragged.constant(source_ids, tf.int32),
            tf.ragged.constant(target_ids, tf.int32),
        )
    )
    if shuffle:
        data = data.shuffle(len(source_ids), seed=seed)

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


def _pad_to_boundary(batch, longest):
    """Pads `(b, n)` ids with zeros to the smallest bucket boundary (or
    `longest`) that is at least `n`."""
    import tensorflow as tf

    lengths = [b for b in BUCKET_BOUNDARIES if b < longest] + [longest]
    lengths = tf.constant(lengths, tf.int32)
    length = tf.shape(batch)[1]
    padded = tf.reduce_min(tf.boolean_mask(lengths, lengths >= length))
    return tf.pad(batch, [[0, 0], [0, padded - length]])
