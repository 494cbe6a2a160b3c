"""The Transformer encoder block: self-attention and feed-forward."""

import keras
from keras.src.backend import get_keras_mask

from keras_mha._transformer_block import TransformerBlock
from keras_mha._utils import pack_outputs
from keras_mha._validation import check_float_dtype
from keras_mha._validation import check_mask_shape
from keras_mha._validation import check_sequence_shape


@keras.saving.register_keras_serializable(package="keras_mha")
class TransformerEncoderBlock(TransformerBlock):
    """One encoder block of "Attention Is All You Need".

    Multi-head self-attention, then a position-wise feed-forward network
    (`Dense(intermediate_dim, activation)` then `Dense(width)`), each wrapped
    in a residual connection with dropout and layer normalization: "Add &
    Norm" after the sub-layer (post-LN, as in the paper) by default, or the
    norm before the sub-layer (pre-LN) with `norm_first=True`.

    Args:
        num_heads: int. Number of attention heads; must divide the width.
        intermediate_dim: int. Hidden width of the feed-forward network.
        dropout: float in [0, 1). Dropout rate on the attention
            probabilities and on each sub-layer's output. Defaults to `0.0`.
        activation: activation of the feed-forward network. Defaults to
            `"relu"`.
        norm_first: bool. Pre-LN if `True`, post-LN if `False`. Defaults to
            `False`.
        layer_norm_epsilon: float. Epsilon of the layer norms. Defaults to
            `1e-5`.
        kernel_initializer: initializer of all kernels. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of all biases. Defaults to `"zeros"`.
        flash_attention: `None`, `True` or `False`, as in
            `MultiHeadAttention`. Defaults to `None`.
        **kwargs: other arguments of `keras.layers.Layer`, such as `name`
            and `dtype`.

    Call arguments:
        inputs: `(batch, seq_length, width)` float tensor.
        padding_mask: optional `(batch, seq_length)` boolean mask, True at
            real tokens; defaults to the Keras mask of `inputs`.
        attention_mask: optional boolean mask of shape
            `(batch, seq_length, seq_length)`; True may attend. Also
            `(seq_length, seq_length)` or `(batch, num_heads, seq_length,
            seq_length)`, any axis of which may be 1, as in
            `keras.layers.MultiHeadAttention`.
        training: bool. Whether dropout is active.
        return_attention_scores: bool. Whether to also return the
            self-attention probabilities. Defaults to `False`.

    Returns:
        `(batch, seq_length, width)` tensor carrying the input's mask, and
        with `return_attention_scores=True` also the self-attention
        probabilities of shape `(batch, num_heads, seq_length, seq_length)`.

    Example:

    >>> tokens = keras.Input((None,), dtype="int32")
    >>> x = keras.layers.Embedding(1000, 64, mask_zero=True)(tokens)
    >>> x = keras_mha.SinusoidalPositionEncoding()(x)
    >>> x = keras_mha.TransformerEncoderBlock(8, intermediate_dim=256)(x)
    >>> tuple(x.shape)
    (None, None, 64)

    References:
        - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762)
    """

    def build(self, inputs_shape):
        self._build_self_attention_and_ffn(inputs_shape)

    def call(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
    ):
        check_float_dtype("inputs", inputs)
        check_sequence_shape("inputs", inputs.shape, self._width)
        if padding_mask is None:
            padding_mask = get_keras_mask(inputs)
        check_mask_shape("padding_mask", padding_mask, tuple(inputs.shape[:2]))
        x, ((scores, _), _) = self._residuals(
            inputs,
            [
                (
                    "self_attention",
                    lambda y: self._self_attend(
                        y,
                        padding_mask,
                        attention_mask,
                        training,
                        return_attention_scores,
                        (None, None),
                    ),
                ),
                ("ffn", self._ffn_sublayer),
            ],
            training,
        )
        return pack_outputs(x, scores)
