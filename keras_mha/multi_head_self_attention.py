"""Multi-head self-attention with one fused query/key/value projection."""

import keras
from keras import ops
from keras.src.backend import get_keras_mask

from keras_mha._validation import check_float_dtype
from keras_mha._validation import check_sequence_shape
from keras_mha.multi_head_attention import MultiHeadAttention


@keras.saving.register_keras_serializable(package="keras_mha")
class MultiHeadSelfAttention(MultiHeadAttention):
    """Multi-head self-attention of a sequence over itself.

    The `MultiHeadAttention` of a sequence with itself, with the per-head
    query, key and value projections fused into one matrix multiplication:
    the kernel has shape `(width, num_heads, 2 * key_dim + value_dim)`, and
    head `i` owns the slice `[:, i, :]`, so each head still has its own
    subspace. It takes the same constructor arguments as
    `MultiHeadAttention` (`num_heads`, `key_dim`, `value_dim`, `output_dim`,
    `dropout`, `use_bias`, `use_causal_mask`, `flash_attention`, the
    initializers, regularizers and constraints, and `seed`).

    Args:
        num_heads: int. Number of attention heads.
        key_dim: int. Width of each head's queries and keys. Defaults to
            `None`, which uses `width // num_heads` (and requires that
            `num_heads` divides the width).
        **kwargs: the other arguments of `MultiHeadAttention`, and those of
            `keras.layers.Layer`.

    Call arguments:
        inputs: `(batch, seq_length, width)` float tensor.
        mask: optional `(batch, seq_length)` boolean padding mask; defaults
            to the Keras mask of `inputs`. Padded positions are neither
            attended to nor attend (their outputs are zeros).
        attention_mask: optional boolean mask of shape
            `(batch, seq_length, seq_length)` or
            `(batch, num_heads, seq_length, seq_length)`; True may attend.
        training: bool. Whether attention dropout is active.
        return_attention_scores: bool. Whether to also return the attention
            probabilities. Defaults to `False`.

    Returns:
        `(batch, seq_length, output_dim)` tensor carrying the input's mask,
        and with `return_attention_scores=True` also the per-head
        probabilities of shape `(batch, num_heads, seq_length, seq_length)`.

    Example:

    >>> tokens = keras.Input((None,), dtype="int32")
    >>> x = keras.layers.Embedding(1000, 64, mask_zero=True)(tokens)
    >>> x = keras_mha.MultiHeadSelfAttention(num_heads=8)(x)
    >>> tuple(x.shape)
    (None, None, 64)

    References:
        - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762)
    """

    def build(self, input_shape):
        self._resolve_dims(check_sequence_shape("inputs", input_shape))
        # One matmul for q, k and v of every head: (b, t, n, 2 * hk + hv).
        self.qkv_dense = self._projection(
            "qkv", input_shape, 2 * self._key_dim + self._value_dim
        )
        self._build_output_projection(input_shape)

    def call(
        self,
        inputs,
        mask=None,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
    ):
        check_float_dtype("inputs", inputs)
        check_sequence_shape("inputs", inputs.shape, self._width)
        if mask is None:
            mask = get_keras_mask(inputs)
        qkv = self.qkv_dense(inputs)
        # (b, t, n, hk), (b, t, n, hk), (b, t, n, hv)
        q, k, v = ops.split(qkv, [self._key_dim, 2 * self._key_dim], axis=-1)
        return self._attend(
            q, k, v, mask, mask, attention_mask, training,
            return_attention_scores,
        )

    def compute_output_shape(self, input_shape):
        return super().compute_output_shape(input_shape)

    def compute_output_spec(self, inputs, return_attention_scores=False, **kwargs):
        return super().compute_output_spec(
            inputs, inputs, return_attention_scores=return_attention_scores
        )
