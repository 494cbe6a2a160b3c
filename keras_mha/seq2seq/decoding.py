"""Translation of token ids with a `TransformerSeq2Seq`.

`decode` steps through a `keras_hub` sampler with the model's key/value
caches, on the compiled loop of `keras_mha.generation`.
"""

from keras import ops

from keras_mha.generation import allowed_logits
from keras_mha.generation import cached_step
from keras_mha.generation import check_flag
from keras_mha.generation import check_max_length
from keras_mha.generation import check_token_id
from keras_mha.generation import check_token_ids
from keras_mha.generation import compiled
from keras_mha.generation import greedy_sampler
from keras_mha.generation import vocabulary_size_of


def decode(
    model,
    source_ids,
    max_length,
    start_id,
    end_id,
    sampler=None,
    use_cache=True,
    compile=True,
):
    """Translates `(b, s)` source ids (0 is padding) to target ids.

    Padding (id 0) and `start_id` are never emitted. Once a row has emitted
    `end_id` it emits only padding, at probability 1, so finished beams
    keep their score under `keras_hub.samplers.BeamSampler`.

    Args:
        model: a `TransformerSeq2Seq`, or any model with its `encode`,
            `call_decoder`, `build_cache` and `call_with_cache`.
        source_ids: `(batch, source_length)` int ids, each row at least one
            token, padded with 0 on the right. Ids must lie in
            `[0, model.source_vocabulary_size)` (checked when the model has
            that attribute, as `TransformerSeq2Seq` does); float ids are a
            `TypeError`, never truncated.
        max_length: int. Length of the output, start token included.
        start_id: int. Id of the start token, below
            `model.target_vocabulary_size`.
        end_id: int. Id of the end token, likewise.
        sampler: a `keras_hub.samplers.Sampler`. Defaults to `None`, which
            uses `keras_hub.samplers.GreedySampler()`.
        use_cache: bool. Decode with the key/value caches (`True`) or
            recompute the prefix at every step. Defaults to `True`.
        compile: bool. Compile the loop (see the module docstring).
            Defaults to `True`.

    Returns:
        `(batch, max_length)` int32 ids: `start_id`, the translation, then
        `end_id` and padding (or the translation cut at `max_length`).
    """
    max_length = check_max_length(max_length, 2, "the start token")
    source_ids = check_token_ids(
        source_ids,
        "source_ids",
        vocabulary_size_of(model, "source_vocabulary_size"),
    )
    target_size = vocabulary_size_of(model, "target_vocabulary_size")
    start_id = check_token_id(start_id, "start_id", target_size)
    end_id = check_token_id(end_id, "end_id", target_size)
    check_flag(use_cache, "use_cache")
    check_flag(compile, "compile")
    sampler = sampler or greedy_sampler()
    function = decode_function(
        model, max_length, start_id, end_id, sampler, use_cache
    )
    if compile:
        key = ("decode", max_length, start_id, end_id, use_cache)
        function = compiled(model, sampler, key, function)
    return function(source_ids)


def decode_function(model, max_length, start_id, end_id, sampler, use_cache):
    """The uncompiled `source_ids -> ids` loop of `decode` (checked
    arguments), for callers that trace it into their own graph.

    The ids it is traced on have no values yet, so it cannot check that
    they lie in the vocabulary as `decode` does: the caller feeds ids of
    the model's own tokenizer (as `Translator.strings_to_strings` does).
    """

    def decode_ids(source_ids):
        batch_size = ops.shape(source_ids)[0]
        prompt = ops.zeros((batch_size, max_length), "int32")
        prompt = ops.slice_update(
            prompt, (0, 0), ops.full((batch_size, 1), start_id, "int32")
        )
        if use_cache:
            cache = model.build_cache(source_ids, max_length)
            step = cached_step(model, start_id, end_id)
        else:
            cache = (model.encode(source_ids), ops.not_equal(source_ids, 0))

            def step(prompt, cache, index):
                logits = model.call_decoder(prompt, *cache)[:, index - 1]
                logits = allowed_logits(logits, prompt, index, start_id, end_id)
                return logits, None, cache

        return sampler(
            step, prompt, cache=cache, index=1, stop_token_ids=(end_id,)
        )

    return decode_ids
