"""Generation with a keras_hub sampler, compiled once per model and shape.

`generate` continues prompts with a `TransformerCausalLM` (or any causal
model that declares its cache with `build_cache` and `call_with_cache`);
`keras_mha.seq2seq.decode` translates with the same machinery. Both step
through a `keras_hub` sampler (greedy by default), with the key/value
caches that the model declares, or, with `use_cache=False`, recomputing
the whole prefix at every step. The loop is compiled by default, as
keras_hub's `CausalLM.generate` does: a `tf.function` on TensorFlow,
`jax.jit` on JAX, `torch.no_grad` on PyTorch.
"""

import numbers

import keras
import numpy as np
from keras import ops

from keras_mha._optional import require
from keras_mha._validation import check_bool

# Logit given to tokens a step may not emit; finite so softmax stays exact.
_FORBIDDEN_LOGIT = -1e9


def generate(
    model,
    prompt_ids,
    max_length,
    sampler=None,
    end_id=None,
    use_cache=True,
    compile=True,
    padding_mask=None,
):
    """Continues prompts with a decoder-only language model.

    The prompts are written into a `(batch, max_length)` buffer and the
    sampler fills the rest, one token a step, keeping each row's own prompt
    tokens: rows may have prompts of different lengths. With the cache, one
    pass over the buffer seeds the blocks' caches (`build_cache`) and each
    step runs only the newest token (`call_with_cache`); the tokens are the
    same as recomputing the whole buffer at every step. Padding (id 0) is
    never emitted, unless the prompts come with a `padding_mask`: then the
    mask, not id 0, says where each prompt ends, and every id of the
    vocabulary may be emitted (as keras_hub's `CausalLM.generate`, for
    vocabularies in which id 0 is a real token).

    Args:
        model: a `TransformerCausalLM`, or any causal model `(b, t) ids ->
            (b, t, v) logits` with its `build_cache` and `call_with_cache`.
        prompt_ids: `(batch, prompt_length)` int ids, each row a prompt of
            at least one token, padded with 0 on the right (with a
            `padding_mask`, with any id). Ids must lie in
            `[0, model.vocabulary_size)` (checked when the model has that
            attribute, as `TransformerCausalLM` does); float ids are a
            `TypeError`, never truncated.
        max_length: int. Length of the output, prompt included.
        sampler: a `keras_hub.samplers.Sampler`. Defaults to greedy.
        end_id: int or `None`, an id below the vocabulary size. A row that
            emits it emits only padding afterwards, and generation stops
            once every row has.
        use_cache: bool, as in `decode`. Defaults to `True`.
        compile: bool, as in `decode`. Defaults to `True`.
        padding_mask: optional `(batch, prompt_length)` bool or int mask,
            True at each prompt's tokens, which come first in their row.
            Defaults to `None`: each prompt ends at its first 0.

    Returns:
        `(batch, max_length)` int32 ids: each prompt and its continuation.

    Example:

    >>> model = keras_mha.TransformerCausalLM(
    ...     20, hidden_dim=8, num_heads=2, intermediate_dim=8, num_layers=1
    ... )
    >>> ids = keras_mha.generate(model, [[5, 9, 2], [7, 0, 0]], max_length=12)
    >>> tuple(ids.shape)
    (2, 12)
    """
    vocabulary_size = vocabulary_size_of(model, "vocabulary_size")
    forbid_padding = padding_mask is None
    prompt_ids = check_token_ids(
        prompt_ids, "prompt_ids", vocabulary_size, padding_rows=forbid_padding
    )
    if padding_mask is not None:
        padding_mask = check_prompt_mask(padding_mask, prompt_ids.shape)
    prompt_length = prompt_ids.shape[1]
    max_length = check_max_length(
        max_length, prompt_length + 1, f"the prompt length {prompt_length}"
    )
    if end_id is not None:
        end_id = check_token_id(end_id, "end_id", vocabulary_size)
    check_bool("use_cache", use_cache)
    check_bool("compile", compile)
    sampler = sampler or greedy_sampler()

    def generate_ids(prompt_ids, padding_mask=None):
        padding = ((0, 0), (0, max_length - prompt_length))
        buffer = ops.pad(prompt_ids, padding)
        if padding_mask is None:
            is_prompt = ops.not_equal(buffer, 0)
        else:
            is_prompt = ops.pad(padding_mask, padding, constant_values=False)
        # The first step predicts the token after the shortest prompt.
        index = ops.min(ops.sum(ops.cast(is_prompt, "int32"), axis=1))
        if use_cache:
            cache = model.build_cache(buffer, max_length)
            step = cached_step(model, None, end_id, forbid_padding)
        else:
            cache = None

            def step(buffer, cache, index):
                logits = model(buffer, training=False)[:, index - 1]
                return (
                    allowed_logits(
                        logits, buffer, index, None, end_id, forbid_padding
                    ),
                    None,
                    cache,
                )

        return sampler(
            step,
            buffer,
            cache=cache,
            index=index,
            mask=is_prompt,
            stop_token_ids=None if end_id is None else (end_id,),
        )

    tensors = (prompt_ids,) if forbid_padding else (prompt_ids, padding_mask)
    if not compile:
        return generate_ids(*tensors)
    key = (
        "generate",
        max_length,
        prompt_length,
        end_id,
        use_cache,
        forbid_padding,
    )
    return compiled(model, sampler, key, generate_ids)(*tensors)


def compiled(model, sampler, key, function):
    """`function(*tensors)`, compiled for this backend and kept on `model`.

    The compiled function is made once per `key` (the arguments closed over
    by `function`) and model, as keras_hub's `make_generate_function`: a
    `tf.function` on TensorFlow, `jax.jit` over the model's and sampler's
    variables on JAX, and `torch.no_grad` on PyTorch (which has no graph
    compiler that handles the sampler's loop).
    """
    # Samplers of one type and config decode alike: they share a function.
    key = (
        *key,
        type(sampler).__name__,
        repr(sorted(sampler.get_config().items())),
    )
    functions = model.__dict__.setdefault("_keras_mha_decoders", {})
    if key in functions:
        return functions[key]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        run = tf.function(function, reduce_retracing=True)
    elif backend == "jax":
        run = _jax_compiled(model, sampler, function)
    elif backend == "torch":
        import torch

        def run(*tensors):
            with torch.no_grad():
                return function(*tensors)

    else:
        run = function
    functions[key] = run
    return run


def _jax_compiled(model, sampler, function):
    """`function` under `jax.jit`, its variables passed in as state."""
    import jax

    variables = list(sampler.variables) + list(model.variables)

    @jax.jit
    def stateless(state, *tensors):
        with keras.StatelessScope(state_mapping=zip(variables, state)):
            return function(*tensors)

    def run(*tensors):
        return stateless([v.value for v in variables], *tensors)

    return run


def check_token_ids(
    token_ids, argument, vocabulary_size=None, padding_rows=True
):
    """`token_ids` as an int32 `(batch, length)` tensor of real rows.

    Runs on the concrete values, before any backend op sees them (a
    backend would fail inside its gather, or on JAX clamp the ids and
    embed the wrong tokens). Raises a `ValueError` naming `argument` for
    another rank, no rows, no columns, a row of padding only, or, when
    `vocabulary_size` is given, an id outside `[0, vocabulary_size)`; a
    `TypeError` for ids that are not integers (floats are not truncated).
    With `padding_rows=False` a row of zeros is real tokens (a padding
    mask says where the rows end).
    """
    array = ops.convert_to_numpy(token_ids)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"`{argument}` expected shape (batch, length) with at least one "
            f"row and one token. Received: {argument}.shape={array.shape}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"`{argument}` expected integer token ids. Received: "
            f"{argument}.dtype={array.dtype} ({argument}[0]={array[0]})"
        )
    empty = [i for i, row in enumerate(array) if not row.any()]
    if empty and padding_rows:
        raise ValueError(
            f"`{argument}` expected at least one non-padding (non-zero) "
            f"token in every row. Received: rows {empty[:10]} of padding "
            "only"
        )
    # Without a vocabulary size, ids must at least survive the int32 cast.
    bound = np.iinfo("int32").max if vocabulary_size is None else None
    bound = bound or vocabulary_size
    outside = (array < 0) | (array >= bound)
    if outside.any():
        where = tuple(int(i) for i in np.argwhere(outside)[0])
        raise ValueError(
            f"`{argument}` expected token ids in [0, {bound}) (the model's "
            "vocabulary size). "
            f"Received: {argument}[{where[0]}, {where[1]}]={array[where]} "
            f"({int(outside.sum())} ids outside)"
        )
    return ops.convert_to_tensor(array.astype("int32"))


def check_prompt_mask(padding_mask, shape):
    """`padding_mask` as a bool tensor of `shape`: each row a prompt of at
    least one token, then padding; a `ValueError` otherwise."""
    mask = ops.convert_to_numpy(padding_mask)
    if mask.shape != tuple(shape):
        raise ValueError(
            f"`padding_mask` expected the shape of `prompt_ids`, "
            f"{tuple(shape)}. Received: padding_mask.shape={mask.shape}"
        )
    mask = mask.astype(bool)
    lengths = mask.sum(axis=1)
    bad = [
        i
        for i, (row, length) in enumerate(zip(mask, lengths))
        if length == 0 or not row[:length].all()
    ]
    if bad:
        raise ValueError(
            "`padding_mask` expected each row's prompt (at least one token) "
            f"first, then padding. Received: rows {bad[:10]} that are not"
        )
    return ops.convert_to_tensor(mask)


def check_token_id(value, argument, vocabulary_size=None):
    """A single id (`start_id`, `end_id`) as a Python int in range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, numbers.Integral
    ):
        raise TypeError(
            f"`{argument}` expected an integer token id. "
            f"Received: {argument}={value!r}"
        )
    if value < 0 or (vocabulary_size is not None and value >= vocabulary_size):
        raise ValueError(
            f"`{argument}` expected a token id in [0, {vocabulary_size}) (the "
            f"model's vocabulary size). Received: {argument}={value!r}"
        )
    return int(value)


def vocabulary_size_of(model, attribute):
    """`model.<attribute>` (`vocabulary_size`, `source_vocabulary_size`,
    ...), the bound of the ids the model embeds, or `None` for a model
    that does not declare it."""
    size = getattr(model, attribute, None)
    return None if size is None else int(size)


def check_max_length(max_length, minimum, what):
    """`max_length` as a Python int, at least `minimum`."""
    if (
        not isinstance(max_length, numbers.Integral)
        or isinstance(max_length, bool)
        or max_length < minimum
    ):
        raise ValueError(
            f"`max_length` expected an integer >= {minimum} (above {what}). "
            f"Received: max_length={max_length!r}"
        )
    return int(max_length)


def cached_step(model, start_id, end_id, forbid_padding=True):
    """The sampler step of `decode` and `generate` with the cache: only the
    newest token goes through `model.call_with_cache`."""

    def step(ids, cache, index):
        token = ops.slice(ids, (0, index - 1), (ops.shape(ids)[0], 1))
        logits, cache = model.call_with_cache(token, cache, index - 1)
        logits = allowed_logits(
            logits[:, 0], ids, index, start_id, end_id, forbid_padding
        )
        return logits, None, cache

    return step


def allowed_logits(
    logits, prompt, index, start_id, end_id, forbid_padding=True
):
    """float32 `(b, v)` logits with the tokens a step may not emit forbidden.

    Padding (if `forbid_padding`) and the start token (unless `None`) are
    never emitted; a row that has emitted `end_id` (unless `None`) before
    `index` emits only padding.
    """
    logits = ops.cast(logits, "float32")
    vocabulary = ops.arange(ops.shape(logits)[-1])
    # With a padding mask, id 0 may be a real token: nothing is forbidden.
    forbidden = vocabulary == 0 if forbid_padding else vocabulary < 0
    if start_id is not None:
        forbidden = ops.logical_or(forbidden, vocabulary == start_id)
    logits = ops.where(forbidden[None], _FORBIDDEN_LOGIT, logits)
    if end_id is None:
        return logits
    emitted = ops.arange(ops.shape(prompt)[1])[None] < index  # (1, length)
    done = ops.any(ops.logical_and(prompt == end_id, emitted), axis=1)
    padding_only = ops.where(vocabulary == 0, 0.0, _FORBIDDEN_LOGIT)
    return ops.where(done[:, None], padding_only[None], logits)


def greedy_sampler():
    """keras_hub's `GreedySampler` (imported on first use)."""
    keras_hub = require("keras_hub", "hub", "the default greedy sampler")

    return keras_hub.samplers.GreedySampler()
