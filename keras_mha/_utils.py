"""Small helpers the layers share: initializer copies, output structure."""

from keras import tree
from keras.src.backend import compute_output_spec


def clone_initializer(initializer):
    """A fresh copy, so sub-layers don't share one initializer's state."""
    return initializer.__class__.from_config(initializer.get_config())


def pack_outputs(outputs, scores=(), caches=()):
    """`outputs` alone, or the tuple `(outputs, *scores, *caches)`.

    The one place that writes the `(outputs, [scores], [cache])` return
    structure of the attention layers and blocks: pass the scores only
    when they were asked for and the caches only when caches were given.
    """
    results = (outputs, *scores, *caches)
    return results[0] if len(results) == 1 else results


def output_spec_of_call(layer, *args, **kwargs):
    """The output specs of `layer.call`, traced on symbolic inputs.

    For layers whose `compute_output_shape` describes the main output only
    while `call` may also return scores and caches: the structure comes
    from `call` itself, and `call`'s argument checks run on symbolic
    inputs too, with their own messages.
    """

    # Float inputs cast to the compute dtype, as `Layer.__call__` does
    # before `call` (else a mixed-precision spec says float32, or adds a
    # float32 input to a float16 sub-layer output).
    def autocast(x):
        return layer.dtype_policy.convert_input(
            x, layer.autocast, layer.input_dtype
        )

    args, kwargs = tree.map_structure(autocast, (args, kwargs))
    return compute_output_spec(layer.call, *args, **kwargs)
