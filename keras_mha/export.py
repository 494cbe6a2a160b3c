"""Decoding and SavedModel export for an encoder-decoder translator.

A translator here is two Keras models that follow one contract:

- `encoder(source_ids)` maps `(b, s)` int token ids (0 is padding) to the
  `(b, s, d)` encoded source;
- `decoder([target_ids, encoded, source_mask])` maps `(b, t)` target ids,
  the encoded source and its `(b, s)` boolean padding mask to `(b, t, v)`
  next-token logits.

`decode` runs the decoder step by step inside one `keras.ops.while_loop`
(through a `keras_hub` sampler, greedy by default). When the decoder is a
plain stack of embedding, position encoding, `TransformerDecoderBlock`s and
a final `Dense` (as `examples/translate.py` builds it), each step runs only
the newest token, with the blocks' key/value caches carried in the
sampler's `cache`; any other decoder recomputes the whole prefix at every
step. `export_translator` puts tokenization, the encoder, the
decode loop and detokenization into one TensorFlow SavedModel that serves
strings to strings with core TensorFlow ops only.

`generate` does for a decoder-only language model, `token_ids -> logits`,
what `decode` does for a translator: it continues prompts through a
`keras_hub` sampler, with the key/value caches when the model is such a
plain stack.
"""

import os
import shutil
import tempfile

import keras
import keras_hub
from keras import ops

from keras_mha.sinusoidal_position_encoding import SinusoidalPositionEncoding
from keras_mha.transformer_decoder_block import TransformerDecoderBlock

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
    use_cache=None,
):
    """Translates token ids with a `keras_hub` sampler (greedy by default).

    Padding (id 0) and `start_id` are never emitted. Once a sequence has
    emitted `end_id` it only emits padding, at probability 1, so finished
    beams keep their score under `keras_hub.samplers.BeamSampler`.

    With a key/value cache, each step runs only the newest token through
    the decoder's layers: each block keeps the keys and values of the
    earlier tokens in a self-attention cache, and the keys and values of
    the encoded source are projected once, before the loop. That needs a
    decoder that is a plain stack (see `cacheable_decoder_layers`); the
    result is the same as recomputing the whole prefix at every step.

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
        use_cache: bool or `None`. `True` decodes with a key/value cache
            (and raises if the decoder is not a stack that allows it),
            `False` recomputes the whole prefix at every step. Defaults to
            `None`: the cache whenever the decoder allows it.

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
    layers = _cached_layers(decoder, use_cache, "decoder")
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
        logits = logits[:, index - 1, :]  # (b, v)
        return _allowed(logits, prompt, index, start_id, end_id), None, cache

    def next_logits_cached(prompt, cache, index):
        self_caches, cross_caches, source_mask = cache
        embedding, position, blocks, logits_layer = layers
        # Only the newest token goes through the layers: (b, 1).
        token = ops.slice(prompt, (0, index - 1), (ops.shape(prompt)[0], 1))
        x = position(embedding(token), start_index=index - 1)
        new_caches = []
        for block, self_cache, cross_cache in zip(
            blocks, self_caches, cross_caches
        ):
            x, self_cache, _ = block(
                x,
                encoder_padding_mask=source_mask,
                self_attention_cache=self_cache,
                self_attention_cache_update_index=index - 1,
                cross_attention_cache=cross_cache,
                training=False,
            )
            new_caches.append(self_cache)
        logits = logits_layer(x)[:, 0, :]  # (b, v)
        cache = (tuple(new_caches), cross_caches, source_mask)
        return _allowed(logits, prompt, index, start_id, end_id), None, cache

    if layers is None:
        step, cache = next_logits, (encoded, source_mask)
    else:
        blocks = layers[2]
        # Per block: a (b, 2, n, max_length, h) self-attention cache filled
        # step by step, and the (b, 2, n, s, h) keys and values of the
        # source. All batch first, so a beam search can reorder them.
        cache = (
            tuple(b.get_initial_cache(batch_size, max_length) for b in blocks),
            tuple(b.compute_cross_attention_cache(encoded) for b in blocks),
            source_mask,
        )
        step = next_logits_cached
    return sampler(step, prompt, cache=cache, index=1, stop_token_ids=(end_id,))


def generate(
    model, prompt_ids, max_length, sampler=None, end_id=None, use_cache=None
):
    """Continues prompts with a decoder-only language model.

    The prompts are written into a `(batch, max_length)` buffer and a
    `keras_hub` sampler (greedy by default) fills the rest, one token a
    step, keeping each row's own prompt tokens: rows may have prompts of
    different lengths. With a key/value cache (when `model` is a plain
    stack, see `cacheable_decoder_layers`), one pass over the buffer seeds
    the blocks' caches, as keras_hub's causal language models do, and each
    step then runs only the newest token; the tokens are the same as
    recomputing the whole buffer at every step. Padding (id 0) is never
    emitted.

    Args:
        model: Keras model, `(b, t)` token ids -> `(b, t, vocab)` logits,
            causal (made of `TransformerDecoderBlock`s, say).
        prompt_ids: `(batch, prompt_length)` int token ids, each row a
            prompt of at least one token, padded with 0 on the right.
        max_length: int. Length of the output, prompt included.
        sampler: a `keras_hub.samplers.Sampler`. Defaults to `None`, which
            uses `keras_hub.samplers.GreedySampler()`.
        end_id: int or `None`. A row that emits it emits only padding
            afterwards, and generation stops once every row has.
        use_cache: bool or `None`, as in `decode`.

    Returns:
        `(batch, max_length)` int32 ids: each prompt and its continuation.

    Example:

    >>> ids = generate(model, [[5, 9, 2], [7, 0, 0]], max_length=12)
    >>> ids.shape
    TensorShape([2, 12])
    """
    prompt_ids = ops.convert_to_tensor(prompt_ids, "int32")
    shape = tuple(prompt_ids.shape)
    if len(shape) != 2 or shape[1] == 0:
        raise ValueError(
            "`prompt_ids` expected shape (batch, prompt_length) with at "
            f"least one token. Received: prompt_ids.shape={shape}"
        )
    prompt_length = prompt_ids.shape[1]
    if not isinstance(max_length, int) or max_length <= prompt_length:
        raise ValueError(
            "`max_length` expected an integer above the prompt length "
            f"{prompt_length}. Received: max_length={max_length!r}"
        )
    layers = _cached_layers(model, use_cache, "model")
    sampler = sampler or keras_hub.samplers.GreedySampler()
    buffer = ops.pad(prompt_ids, ((0, 0), (0, max_length - prompt_length)))
    is_prompt = ops.not_equal(buffer, 0)
    # The first step predicts the token after the shortest prompt.
    index = ops.min(ops.sum(ops.cast(is_prompt, "int32"), axis=1))

    def next_logits(buffer, cache, index):
        logits = model(buffer, training=False)[:, index - 1, :]
        return _allowed(logits, buffer, index, None, end_id), None, cache

    def run_layers(token_ids, caches, index):
        embedding, position, blocks, logits_layer = layers
        x = position(embedding(token_ids), start_index=index)
        new_caches = []
        for block, cache in zip(blocks, caches):
            x, cache = block(
                x,
                self_attention_cache=cache,
                self_attention_cache_update_index=index,
                training=False,
            )
            new_caches.append(cache)
        return logits_layer(x), tuple(new_caches)

    def next_logits_cached(buffer, caches, index):
        token = ops.slice(buffer, (0, index - 1), (ops.shape(buffer)[0], 1))
        logits, caches = run_layers(token, caches, index - 1)
        logits = _allowed(logits[:, 0, :], buffer, index, None, end_id)
        return logits, None, caches

    if layers is None:
        step, cache = next_logits, None
    else:
        batch_size = ops.shape(buffer)[0]
        empty = tuple(
            block.get_initial_cache(batch_size, max_length)
            for block in layers[2]
        )
        # Positions past a prompt are overwritten by the step that writes
        # them before any later query can see them (the mask is causal).
        _, cache = run_layers(buffer, empty, 0)
        step = next_logits_cached
    return sampler(
        step,
        buffer,
        cache=cache,
        index=index,
        mask=is_prompt,
        stop_token_ids=None if end_id is None else (end_id,),
    )


def _cached_layers(decoder, use_cache, argument):
    """The layers to decode `decoder` with a cache, or `None` to recompute.

    Args:
        decoder: the model `decode` or `generate` got.
        use_cache: their `use_cache` argument.
        argument: the name of `decoder` in their signature, for errors.
    """
    if use_cache not in (None, True, False):
        raise ValueError(
            "`use_cache` expected None, True or False. "
            f"Received: use_cache={use_cache!r}"
        )
    layers = None if use_cache is False else cacheable_decoder_layers(decoder)
    if use_cache and layers is None:
        raise ValueError(
            f"`use_cache=True` expected a {argument} that is a stack of "
            "Embedding, SinusoidalPositionEncoding, TransformerDecoderBlock "
            "layers and a Dense layer (see `cacheable_decoder_layers`). "
            f"Received: {argument}={decoder.name!r} with layers "
            f"{[type(layer).__name__ for layer in decoder.layers]}"
        )
    return layers


def _allowed(logits, prompt, index, start_id, end_id):
    """float32 `(b, v)` logits with the tokens a step may not emit forbidden.

    Padding and the start token (unless `None`) are never emitted; a
    sequence that has emitted `end_id` (unless `None`) before `index` emits
    only padding.
    """
    logits = ops.cast(logits, "float32")
    vocabulary = ops.arange(ops.shape(logits)[-1])
    forbidden = vocabulary == 0
    if start_id is not None:
        forbidden = ops.logical_or(forbidden, vocabulary == start_id)
    logits = ops.where(forbidden[None], _FORBIDDEN_LOGIT, logits)
    if end_id is None:
        return logits
    emitted = ops.arange(ops.shape(prompt)[1])[None] < index  # (1, length)
    done = ops.any(ops.logical_and(prompt == end_id, emitted), axis=1)
    padding_only = ops.where(vocabulary == 0, 0.0, _FORBIDDEN_LOGIT)
    return ops.where(done[:, None], padding_only[None], logits)


def cacheable_decoder_layers(decoder):
    """The layers of `decoder` that `decode` runs with a key/value cache.

    A decoder qualifies when it is the plain stack that
    `examples/translate.py` builds: `target_ids -> Embedding ->
    SinusoidalPositionEncoding -> TransformerDecoderBlock(x, encoded,
    encoder_padding_mask=source_mask) -> ... -> Dense -> logits`, with
    nothing else in between, or the decoder-only stack of
    `examples/language_model.py`, whose blocks take `x` alone. Any other
    decoder is decoded by recomputing the whole prefix at every step.

    Args:
        decoder: Keras model, `[target_ids, encoded, source_mask] -> logits`
            or `token_ids -> logits`.

    Returns:
        `(embedding, position_encoding, blocks, logits_layer)`, `blocks` a
        list of `TransformerDecoderBlock`, or `None` when `decoder` is not
        such a stack.
    """
    inputs = getattr(decoder, "inputs", None)
    if not isinstance(inputs, (list, tuple)) or len(inputs) not in (1, 3):
        return None
    # A decoder-only stack has no source: its blocks get neither.
    target, encoded, source_mask = (*inputs, None, None)[:3]
    layers = [
        layer
        for layer in decoder.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    if len(layers) < 4:
        return None
    embedding, position, *blocks, logits_layer = layers
    expected = [
        (embedding, keras.layers.Embedding),
        (position, SinusoidalPositionEncoding),
        (logits_layer, keras.layers.Dense),
        *((block, TransformerDecoderBlock) for block in blocks),
    ]
    if any(not isinstance(layer, cls) for layer, cls in expected):
        return None
    # Follow the graph: each layer called once, on the previous output.
    x = target
    for layer in layers:
        if len(layer._inbound_nodes) != 1:
            return None
        node = layer._inbound_nodes[0]
        args, kwargs = node.arguments.args, dict(node.arguments.kwargs)
        if not args or args[0] is not x:
            return None
        if isinstance(layer, TransformerDecoderBlock):
            source = (
                args[1]
                if len(args) > 1
                else kwargs.pop("encoder_sequence", None)
            )
            if (
                len(args) > 2
                or source is not encoded
                or kwargs.pop("encoder_padding_mask", None) is not source_mask
            ):
                return None
        if len(args) > 1 and not isinstance(layer, TransformerDecoderBlock):
            return None
        if kwargs:
            return None
        x = node.outputs[0]
    if x is not decoder.outputs[0] or len(decoder.outputs) != 1:
        return None
    return embedding, position, blocks, logits_layer


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

    if keras.backend.backend() != "tensorflow":
        # The SavedModel is a TensorFlow graph of the models' own ops.
        raise ValueError(
            "`export_translator` needs the TensorFlow backend "
            "(KERAS_BACKEND=tensorflow). "
            f"Received: backend={keras.backend.backend()!r}"
        )
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
