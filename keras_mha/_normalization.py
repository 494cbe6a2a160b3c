"""The norms of the blocks: layer norm or RMS norm, by name.

`keras.layers.RMSNormalization` computes `x * rsqrt(mean(x^2) + eps) *
scale` in float32 under mixed precision (and casts back), with a scale
initialized to ones: the convention of Llama, Mistral and Qwen. Gemma
stores `scale - 1` (its norms multiply by `1 + scale`); a conversion adds
1 to its weights.
"""

import keras

from keras_mha._validation import check_choice

NORMALIZATIONS = ("layer_norm", "rms_norm")


def check_normalization(value):
    return check_choice("normalization", value, NORMALIZATIONS)


def make_norm(normalization, epsilon, dtype, name, input_shape=None):
    """A `LayerNormalization` or `RMSNormalization` over the width, built
    on `input_shape` if given."""
    if normalization == "rms_norm":
        norm = keras.layers.RMSNormalization(
            epsilon=epsilon, dtype=dtype, name=name
        )
    else:
        norm = keras.layers.LayerNormalization(
            epsilon=epsilon, dtype=dtype, name=name
        )
    # Both norms act on each position alone, so the padding mask of their
    # input holds for their output; Keras marks only `LayerNormalization`
    # so, and would otherwise warn that an RMS norm drops the mask.
    norm.supports_masking = True
    if input_shape is not None:
        norm.build(input_shape)
    return norm
