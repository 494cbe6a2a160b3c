"""The fixed sinusoidal position encoding of "Attention Is All You Need"."""

import keras
import numpy as np
from keras import ops

from keras_mha._validation import check_bool
from keras_mha._validation import check_float_dtype
from keras_mha._validation import check_index
from keras_mha._validation import check_positive_float
from keras_mha._validation import check_sequence_shape


@keras.saving.register_keras_serializable(package="keras_mha")
class SinusoidalPositionEncoding(keras.layers.Layer):
    """Adds (or returns) the sinusoidal position encoding of a sequence.

    For position `pos` and feature `k` of a width-`d` input:
    `PE(pos, 2i) = sin(pos / max_wavelength^(2i / d))` and
    `PE(pos, 2i + 1) = cos(pos / max_wavelength^(2i / d))`, with sines at even
    and cosines at odd features (interleaved), for even and odd `d`. Positions
    and angles are computed in float32 whatever the dtype policy, so positions
    above 2048 stay exact under `mixed_float16`; the result is cast to the
    compute dtype. The layer has no weights and keeps the input's Keras mask.

    Args:
        max_wavelength: float. The longest wavelength of the sinusoids.
            Defaults to `10000`.
        add_to_input: bool. If `True`, returns `inputs + PE`; if `False`,
            returns the encoding alone, broadcast to the input's shape.
            Defaults to `True`.
        **kwargs: other arguments of `keras.layers.Layer`, such as `name`
            and `dtype`.

    Call arguments:
        inputs: `(batch, seq_length, width)` tensor; the sequence length may
            be unknown until call time.
        start_index: int or integer scalar tensor. Position of the first
            element, for step-by-step decoding. Defaults to `0`.

    Returns:
        A tensor of the input's shape and the layer's compute dtype.

    Example:

    >>> tokens = keras.Input((None,), dtype="int32")
    >>> x = keras.layers.Embedding(1000, 64, mask_zero=True)(tokens)
    >>> x = keras_mha.SinusoidalPositionEncoding()(x)
    >>> tuple(x.shape)
    (None, None, 64)

    References:
        - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762)
    """

    def __init__(self, max_wavelength=10000, add_to_input=True, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = check_positive_float(
            "max_wavelength", max_wavelength
        )
        self.add_to_input = check_bool("add_to_input", add_to_input)
        self.supports_masking = True

    def build(self, input_shape):
        width = check_sequence_shape("inputs", input_shape)
        self._width = width
        # Feature k uses frequency max_wavelength^(-2i/d) with i = k // 2.
        exponents = 2 * (np.arange(width) // 2) / width
        self._inverse_frequencies = (
            self.max_wavelength ** (-exponents)
        ).astype("float32")
        self._is_sine = np.arange(width) % 2 == 0

    def call(self, inputs, start_index=0):
        check_float_dtype("inputs", inputs)
        check_sequence_shape("inputs", inputs.shape, self._width)
        # Python ints and eager tensors are checked for >= 0 here; a traced
        # index is only checked for its integer dtype.
        check_index("start_index", start_index)
        seq_length = ops.shape(inputs)[1]
        positions = ops.arange(seq_length, dtype="float32")
        positions = positions + ops.cast(start_index, "float32")
        angles = positions[:, None] * self._inverse_frequencies  # (t, d)
        encoding = ops.where(self._is_sine, ops.sin(angles), ops.cos(angles))
        encoding = ops.cast(encoding, self.compute_dtype)[None]  # (1, t, d)
        if self.add_to_input:
            return ops.cast(inputs, self.compute_dtype) + encoding
        return ops.broadcast_to(encoding, ops.shape(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def quantize(self, mode=None, type_check=True, config=None):
        """Nothing to quantize: the layer has no weights.

        Defined so that `Model.quantize` passes over the layer quietly
        instead of warning that it has no `quantize` method.
        """

    def get_config(self):
        return {
            **super().get_config(),
            "max_wavelength": self.max_wavelength,
            "add_to_input": self.add_to_input,
        }
