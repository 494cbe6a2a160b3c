"""Decoding and SavedModel export for an encoder-decoder translator.

A translator here is two Keras models that follow one contract:

- `encoder(source_ids)` maps `(b, s)` int token ids (0 is padding) to the
  `(b, s, d)` encoded source;
- `decoder([target_ids, encoded, source_mask])` maps `(b, t)` target ids,
  the encoded source and its `(b, s)` boolean padding mask to `(b, t, v)`
  next-token logits.

`decode` runs the decoder step by step inside one `keras.ops.while_loop`
(through a `keras_hub` sampler, greedy by default), recomputing the whole
prefix at every step. The encoded source travels as the sampler's `cache`, so
a decoder with a key/value cache can replace the step function without
changing the loop. `export_translator` puts tokenization, the encoder, the
decode loop and detokenization into one TensorFlow SavedModel that serves
strings to strings with core TensorFlow ops only.
"""

import os
import shutil
import tempfile

import keras
import keras_hub
from keras import ops

# Logit given to tokens a step may not emit; finite so softmax stays exact.
_FORBIDDEN_LOGIT = -1e9


def decode(
    encoder,
    decoder,
    source_ids,
    max_length,
    start_id,
    end_id,
    sampler=None,
):
    """Translates token ids with a `keras_hub` sampler (greedy by default).

    Padding (id 0) and `start_id` are never emitted. Once a sequence has
    emitted `end_id` it only emits padding, at probability 1, so finished
    beams keep their score under `keras_hub.samplers.BeamSampler`.

    Args:
        encoder: Keras model, `source_ids -> encoded` (see the module
            docstring).
        decoder: Keras model, `[target_ids, encoded, source_mask] -> logits`.
        source_ids: `(batch, source_length)` int tensor, 0 for padding.
        max_length: int. Length of the output, start token included.
        start_id: int. Id of the start token.
        end_id: int. Id of the end token.
        sampler: a `keras_hub.samplers.Sampler`. Defaults to `None`, which
            uses `keras_hub.samplers.GreedySampler()`.

    Returns:
        `(batch, max_length)` int32 ids: `start_id`, the translation, then
        `end_id` and padding (or the translation cut at `max_length`).

    Example:

    >>> ids = decode(encoder, decoder, [[5, 9, 2, 0]], 12, 2, 3)
    >>> ids.shape
    TensorShape([1, 12])
    """
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(
            "`max_length` expected an integer >= 2 (the start token and at "
            f"least one more). Received: max_length={max_length!r}"
        )
    sampler = sampler or keras_hub.samplers.GreedySampler()
    source_ids = ops.convert_to_tensor(source_ids, "int32")
    source_mask = ops.not_equal(source_ids, 0)
    encoded = encoder(source_ids, training=False)
    batch_size = ops.shape(source_ids)[0]
    prompt = ops.zeros((batch_size, max_length), "int32")
    prompt = ops.slice_update(
        prompt, (0, 0), ops.full((batch_size, 1), start_id, "int32")
    )

    def next_logits(prompt, cache, index):
        encoded, source_mask = cache
        # Every step reruns the decoder on the whole fixed-length buffer; the
        # causal mask keeps position index - 1 from seeing later positions.
        logits = decoder([prompt, encoded, source_mask], training=False)
        logits = ops.cast(logits[:, index - 1, :], "float32")  # (b, v)
        vocabulary = ops.arange(ops.shape(logits)[-1])
        forbidden = ops.logical_or(vocabulary == 0, vocabulary == start_id)
        logits = ops.where(forbidden[None], _FORBIDDEN_LOGIT, logits)
        emitted = ops.arange(max_length)[None] < index  # (1, max_length)
        done = ops.any(ops.logical_and(prompt == end_id, emitted), axis=1)
        padding_only = ops.where(vocabulary == 0, 0.0, _FORBIDDEN_LOGIT)
        logits = ops.where(done[:, None], padding_only[None], logits)
        return logits, None, cache

    return sampler(
        next_logits,
        prompt,
        cache=(encoded, source_mask),
        index=1,
        stop_token_ids=(end_id,),
    )


def ids_to_text(ids, vocabulary, end_id):
    """Joins decoded ids into strings, dropping the start token and all from
    the first `end_id` on.

    Args:
        ids: `(batch, length)` int ids from `decode`.
        vocabulary: list of the target tokens, indexed by id.
        end_id: int. Id of the end token.

    Returns:
        A `(batch,)` `tf.string` tensor of space-separated tokens.
    """
    import tensorflow as tf

    ids = tf.convert_to_tensor(ids)[:, 1:]
    # Keep the tokens before the first end token (and never padding).
    before_end = tf.equal(tf.cumsum(tf.cast(ids == end_id, "int32"), 1), 0)
    keep = tf.logical_and(before_end, ids != 0)
    tokens = tf.ragged.boolean_mask(tf.gather(vocabulary, ids), keep)
    return tf.strings.reduce_join(tokens, axis=1, separator=" ")


def export_translator(
    path,
    encoder,
    decoder,
    source_vectorizer,
    target_vocabulary,
    start_token="[start]",
    end_token="[end]",
    max_length=32,
    overwrite=False,
):
    """Writes a TensorFlow SavedModel that translates strings to strings.

    Its `serving_default` signature takes `sentences`, a `tf.string` tensor
    of shape `(None,)`, and returns `{"translations": tf.string (None,)}`.
    Tokenization (`source_vectorizer`), the encoder, a greedy decode loop of
    at most `max_length` tokens and detokenization all run inside the graph,
    with core TensorFlow ops only, so TensorFlow Serving and `tf.saved_model.
    load` need neither this package nor Keras. The SavedModel is written to a
    temporary directory beside `path` and renamed into place, so a failed
    export leaves nothing half-written and never touches an existing export.

    Args:
        path: directory to create.
        encoder: Keras model, `source_ids -> encoded`.
        decoder: Keras model, `[target_ids, encoded, source_mask] -> logits`.
        source_vectorizer: `keras.layers.TextVectorization` (or any layer of
            core TF ops) mapping a batch of strings to `(b, s)` int ids.
        target_vocabulary: list of the target tokens, indexed by id.
        start_token: str. The token that starts every target. Defaults to
            `"[start]"`.
        end_token: str. The token that ends every target. Defaults to
            `"[end]"`.
        max_length: int. Most tokens decoded, start token included. Defaults
            to `32`.
        overwrite: bool. Whether to replace an existing `path`. Defaults to
            `False`.

    Returns:
        `path`.

    Example:

    >>> export_translator("runs/translate/savedmodel", encoder, decoder,
    ...                   source_vectorizer, target_vocabulary)
    >>> served = tf.saved_model.load("runs/translate/savedmodel")
    >>> served.signatures["serving_default"](tf.constant(["I run."]))
    {'translations': <tf.Tensor: ... numpy=array([b'yo corro'], ...)>}
    """
    import tensorflow as tf

    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"`path` already exists; pass overwrite=True to replace it. "
            f"Received: path={path!r}"
        )
    target_vocabulary = list(target_vocabulary)
    for name, token in (("start_token", start_token), ("end_token", end_token)):
        if token not in target_vocabulary:
            raise ValueError(
                f"`{name}` expected a token of `target_vocabulary`. "
                f"Received: {name}={token!r}"
            )
    start_id = target_vocabulary.index(start_token)
    end_id = target_vocabulary.index(end_token)
    vocabulary = tf.constant(target_vocabulary)

    def serve(sentences):
        source_ids = ops.cast(source_vectorizer(sentences), "int32")
        ids = decode(encoder, decoder, source_ids, max_length, start_id, end_id)
        return {"translations": ids_to_text(ids, vocabulary, end_id)}

    archive = keras.export.ExportArchive()
    for resource in (encoder, decoder, source_vectorizer):
        archive.track(resource)
    archive.add_endpoint(
        "serving_default",
        serve,
        input_signature=[tf.TensorSpec((None,), tf.string, name="sentences")],
    )
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        archive.write_out(staging, verbose=False)
        if not os.path.exists(path):
            os.rename(staging, path)
        else:
            # Move the old export aside first, and back if the swap fails.
            retired = staging + ".old"
            os.rename(path, retired)
            try:
                os.rename(staging, path)
            except BaseException:
                os.rename(retired, path)
                raise
            shutil.rmtree(retired)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
