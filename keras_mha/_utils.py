"""Small helpers the layers share: initializer copies, output structure."""

from keras.src.backend import compute_output_spec


def clone_initializer(initializer):
    """A fresh copy, so sub-layers don't share one initializer's state."""
    return initializer.__class__.from_config(initializer.get_config())


def pack_outputs(outputs, scores=None, caches=None):
    """`outputs` alone, or the tuple `(outputs, *scores, *caches)`.

    The one place that writes the `(outputs, [scores], [caches])` return
    structure of the attention layers and blocks, the fixed order of what
    was asked for. `scores` and `caches` are each `None` (not asked for:
    no scores requested, no cache given), one tensor, or a tuple of them
    (a block's self- and cross-attention).
    """
    results = (outputs, *_as_tuple(scores), *_as_tuple(caches))
    return results[0] if len(results) == 1 else results


def _as_tuple(x):
    if x is None:
        return ()
    return x if isinstance(x, tuple) else (x,)


def output_spec_of_call(layer, *args, **kwargs):
    """The output specs of `layer.call`, traced on symbolic inputs.

    For layers whose `compute_output_shape` describes the main output only
    while `call` may also return scores and caches: the structure comes
    from `call` itself, and `call`'s argument checks run on symbolic
    inputs too, with their own messages.
    """
    return compute_output_spec(layer.call, *args, **kwargs)


def unpack_outputs(results, scores, cache):
    """`(outputs, scores or None, cache or None)` of an attention call.

    The inverse of `pack_outputs` for one attention layer's results:
    `scores` says whether they were asked for, `cache` whether a cache
    was given.
    """
    if not (scores or cache):
        return results, None, None
    return (
        results[0],
        results[1] if scores else None,
        results[-1] if cache else None,
    )
