"""The Transformer decoder block: causal self-attention, cross-attention
to the encoder output, and feed-forward."""

import keras
from keras.src.backend import get_keras_mask

from keras_mha._transformer_block import TransformerBlock
from keras_mha._transformer_block import call_attention
from keras_mha._validation import check_float_dtype
from keras_mha._validation import check_mask_shape
from keras_mha._validation import check_sequence_shape
from keras_mha.multi_head_attention import MultiHeadAttention


@keras.saving.register_keras_serializable(package="keras_mha")
class TransformerDecoderBlock(TransformerBlock):
    """One decoder block of "Attention Is All You Need".

    Masked (causal) multi-head self-attention, then multi-head
    cross-attention to the encoder output (when one is given), then a
    position-wise feed-forward network; each sub-layer is wrapped in a
    residual connection with dropout and layer normalization (post-LN by
    default, pre-LN with `norm_first=True`). Called without an
    `encoder_sequence`, it is the block of a decoder-only language model.

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
        decoder_sequence: `(batch, target_length, width)` float tensor.
        encoder_sequence: optional `(batch, source_length, encoder_width)`
            encoder output. If the block is built with one, every call needs
            one.
        decoder_padding_mask: optional `(batch, target_length)` boolean
            mask; defaults to the Keras mask of `decoder_sequence`.
        encoder_padding_mask: optional `(batch, source_length)` boolean
            mask; defaults to the Keras mask of `encoder_sequence`.
        decoder_attention_mask: optional boolean mask of shape
            `(batch, target_length, target_length)`, combined with the causal
            mask.
        training: bool. Whether dropout is active.
        return_attention_scores: bool. Whether to also return the attention
            probabilities. Defaults to `False`.

    Returns:
        `(batch, target_length, width)` tensor carrying the decoder mask.
        With `return_attention_scores=True`, a tuple that also holds the
        self-attention probabilities `(batch, num_heads, target_length,
        target_length)` and, with an encoder sequence, the cross-attention
        probabilities `(batch, num_heads, target_length, source_length)`.

    Example:

    >>> source = keras.Input((None, 64))
    >>> target = keras.Input((None, 64))
    >>> x = keras_mha.TransformerDecoderBlock(8, intermediate_dim=256)(
    ...     target, source
    ... )
    >>> tuple(x.shape)
    (None, None, 64)

    References:
        - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762)
    """

    _causal = True

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        width = self._build_self_attention_and_ffn(decoder_sequence_shape)
        self._has_cross_attention = encoder_sequence_shape is not None
        if not self._has_cross_attention:
            return
        self._encoder_width = check_sequence_shape(
            "encoder_sequence", encoder_sequence_shape
        )
        self.cross_attention = MultiHeadAttention(
            name="cross_attention", **self._attention_kwargs(width)
        )
        self.cross_attention.build(
            decoder_sequence_shape, encoder_sequence_shape
        )
        self.cross_attention_norm, self.cross_attention_dropout = (
            self._norm_and_dropout("cross_attention", decoder_sequence_shape)
        )

    def call(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_padding_mask=None,
        encoder_padding_mask=None,
        decoder_attention_mask=None,
        training=None,
        return_attention_scores=False,
    ):
        check_float_dtype("decoder_sequence", decoder_sequence)
        check_sequence_shape(
            "decoder_sequence", decoder_sequence.shape, self._width
        )
        if (encoder_sequence is not None) != self._has_cross_attention:
            raise ValueError(
                "`encoder_sequence` must be given on every call if and only "
                "if it was given when the block was first called (built). "
                f"Built with cross-attention: {self._has_cross_attention}. "
                "Received: encoder_sequence="
                f"{None if encoder_sequence is None else encoder_sequence.shape}"
            )
        if decoder_padding_mask is None:
            decoder_padding_mask = get_keras_mask(decoder_sequence)
        batch, length = decoder_sequence.shape[:2]
        check_mask_shape(
            "decoder_padding_mask", decoder_padding_mask, (batch, length)
        )
        check_mask_shape(
            "decoder_attention_mask",
            decoder_attention_mask,
            (batch, length, length),
            (batch, 1, length, length),
            (batch, self.num_heads, length, length),
        )
        x, self_scores = self._self_attention_sublayer(
            decoder_sequence, decoder_padding_mask, decoder_attention_mask,
            training, return_attention_scores,
        )
        scores = (self_scores,)
        if self._has_cross_attention:
            check_float_dtype("encoder_sequence", encoder_sequence)
            check_sequence_shape(
                "encoder_sequence", encoder_sequence.shape, self._encoder_width
            )
            if encoder_padding_mask is None:
                encoder_padding_mask = get_keras_mask(encoder_sequence)
            check_mask_shape(
                "encoder_padding_mask",
                encoder_padding_mask,
                tuple(encoder_sequence.shape[:2]),
            )
            x, cross_scores = self._residual(
                x,
                self.cross_attention_norm,
                self.cross_attention_dropout,
                lambda y: call_attention(
                    self.cross_attention,
                    return_attention_scores,
                    y,
                    encoder_sequence,
                    query_mask=decoder_padding_mask,
                    value_mask=encoder_padding_mask,
                    training=training,
                ),
                training,
            )
            scores += (cross_scores,)
        x, _ = self._ffn_sublayer(x, training)
        return (x, *scores) if return_attention_scores else x

    def compute_output_spec(
        self,
        decoder_sequence,
        encoder_sequence=None,
        return_attention_scores=False,
        **kwargs,
    ):
        output = keras.KerasTensor(
            decoder_sequence.shape, dtype=self.compute_dtype
        )
        if not return_attention_scores:
            return output
        batch, length = decoder_sequence.shape[:2]
        outputs = [output]
        sources = [decoder_sequence]
        if encoder_sequence is not None:
            sources.append(encoder_sequence)
        for source in sources:
            shape = (batch, self.num_heads, length, source.shape[1])
            outputs.append(keras.KerasTensor(shape, dtype=self.compute_dtype))
        return tuple(outputs)
