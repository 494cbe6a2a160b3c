"""The Transformer decoder block: causal self-attention, cross-attention
to the encoder output, and feed-forward."""

import keras
from keras.src.backend import get_keras_mask

from keras_mha._transformer_block import TransformerBlock
from keras_mha._transformer_block import attention_sublayer
from keras_mha._utils import pack_outputs
from keras_mha._validation import check_attention_mask
from keras_mha._validation import check_float_dtype
from keras_mha._validation import check_mask_shape
from keras_mha._validation import check_matching_dim
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
        num_heads: int. Number of attention heads; must divide the width
            unless `key_dim` is given.
        intermediate_dim: int. Hidden width of the feed-forward network.
        **kwargs: the other arguments of `TransformerEncoderBlock`, with
            the same meanings and defaults (see docs/attention-options.md),
            and those of `keras.layers.Layer`, such as `name` and `dtype`.
            The cross-attention takes the attention options that are not
            about positions (`key_dim`, `num_key_value_heads`, `use_bias`,
            `use_output_bias`, `use_gate`, `use_query_key_norm`,
            `attention_logit_soft_cap`, `attention_scale`,
            `attention_chunk_size`, `flash_attention`); `rotary_embedding`,
            `rotary_fraction`, `use_alibi`, `alibi_slope_scale` and
            `sliding_window` apply to the self-attention only. With
            `parallel_residual`, the cross-attention is one more parallel
            branch.

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
            mask; as in `keras.layers.MultiHeadAttention`, also
            `(target_length, target_length)` or `(batch, num_heads,
            target_length, target_length)`, any axis of which may be 1.
        self_attention_cache: optional `(batch, 2, num_key_value_heads,
            max_length, key_dim)` key/value cache of the self-attention, from
            `get_initial_cache`, for step-by-step decoding. The keys and
            values of `decoder_sequence` are written into it at
            `self_attention_cache_update_index`, and the queries attend to
            the cached positions up to their own. `decoder_padding_mask`
            then only masks the new positions as queries;
            `decoder_attention_mask` has shape
            `(batch, target_length, max_length)`.
        self_attention_cache_update_index: int or integer scalar tensor,
            the position of the first element of `decoder_sequence`;
            required with a `self_attention_cache`. The new positions must
            fit: `0 <= index` and `index + target_length <= max_length`,
            checked (as the caches' batch size and dtype) for ints and
            eager tensors; see `MultiHeadSelfAttention` for traced ones.
        cross_attention_cache: optional `(batch, 2, num_key_value_heads,
            source_length, key_dim)` keys and values of the encoder
            output, from `compute_cross_attention_cache`. With it,
            `encoder_sequence` may be `None`.
        training: bool. Whether dropout is active.
        return_attention_scores: bool. Whether to also return the attention
            probabilities. Defaults to `False`.

    Returns:
        `(batch, target_length, width)` tensor carrying the decoder mask.
        With `return_attention_scores=True`, a tuple that also holds the
        self-attention probabilities `(batch, num_heads, target_length,
        target_length)` (`max_length` keys with a cache) and, with
        cross-attention, the cross-attention probabilities `(batch,
        num_heads, target_length, source_length)`. With a
        `self_attention_cache`, the updated self-attention cache and, with
        cross-attention, the cross-attention cache (the given one, or the
        one computed from `encoder_sequence`) come last:
        `(outputs, [self_scores, [cross_scores]], self_attention_cache,
        [cross_attention_cache])`.

    Example:

    >>> source = keras.Input((None, 64))
    >>> target = keras.Input((None, 64))
    >>> x = keras_mha.TransformerDecoderBlock(8, intermediate_dim=256)(
    ...     target, source
    ... )
    >>> tuple(x.shape)
    (None, None, 64)

    Cached decoding, one token at a time:

    >>> block = keras_mha.TransformerDecoderBlock(4, intermediate_dim=32)
    >>> target = keras.random.normal((2, 6, 16))
    >>> source = keras.random.normal((2, 7, 16))
    >>> full = block(target, source)
    >>> cache = block.get_initial_cache(batch_size=2, max_length=6)
    >>> cross_cache = block.compute_cross_attention_cache(source)
    >>> for i in range(6):
    ...     y, cache, cross_cache = block(
    ...         target[:, i:i + 1], self_attention_cache=cache,
    ...         self_attention_cache_update_index=i,
    ...         cross_attention_cache=cross_cache,
    ...     )

    References:
        - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762)
    """

    _causal = True

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        self._build_self_attention_and_ffn(decoder_sequence_shape)
        self._has_cross_attention = encoder_sequence_shape is not None
        if not self._has_cross_attention:
            return
        self._encoder_width = check_sequence_shape(
            "encoder_sequence", encoder_sequence_shape
        )
        self.cross_attention = MultiHeadAttention(
            name="cross_attention", **self._cross_attention_kwargs()
        )
        self.cross_attention.build(
            decoder_sequence_shape, encoder_sequence_shape
        )
        self._build_norms(
            "cross_attention",
            decoder_sequence_shape,
            self.use_post_attention_norm,
        )

    def call(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_padding_mask=None,
        encoder_padding_mask=None,
        decoder_attention_mask=None,
        self_attention_cache=None,
        self_attention_cache_update_index=None,
        cross_attention_cache=None,
        training=None,
        return_attention_scores=False,
    ):
        decoder_padding_mask, encoder_padding_mask = self._check_inputs(
            decoder_sequence,
            encoder_sequence,
            decoder_padding_mask,
            encoder_padding_mask,
            decoder_attention_mask,
            self_attention_cache,
            self_attention_cache_update_index,
            cross_attention_cache,
        )
        cached = self_attention_cache is not None
        sublayers = [
            (
                "self_attention",
                lambda y: self._self_attend(
                    y,
                    decoder_padding_mask,
                    decoder_attention_mask,
                    training,
                    return_attention_scores,
                    (self_attention_cache, self_attention_cache_update_index),
                ),
            )
        ]
        if self._has_cross_attention:
            if cross_attention_cache is None and cached:
                # Returned with the self-attention cache, for the next step.
                cross_attention_cache = self.compute_cross_attention_cache(
                    encoder_sequence
                )
            sublayers.append(
                (
                    "cross_attention",
                    lambda y: self._cross_attend(
                        y,
                        encoder_sequence,
                        decoder_padding_mask,
                        encoder_padding_mask,
                        cross_attention_cache,
                        training,
                        return_attention_scores,
                    ),
                )
            )
        sublayers.append(("ffn", self._ffn_sublayer))
        x, extras = self._residuals(decoder_sequence, sublayers, training)
        scores, caches = zip(*extras[:-1])  # Of each attention sub-layer.
        return pack_outputs(
            x,
            scores if return_attention_scores else None,
            caches if cached else None,
        )

    def _check_inputs(
        self,
        decoder_sequence,
        encoder_sequence,
        decoder_padding_mask,
        encoder_padding_mask,
        decoder_attention_mask,
        self_cache,
        self_cache_index,
        cross_cache,
    ):
        """Checks the inputs; returns the decoder and encoder padding masks.

        The caches are checked by the attention layers' own check, under
        this block's argument names.
        """
        check_float_dtype("decoder_sequence", decoder_sequence)
        check_sequence_shape(
            "decoder_sequence", decoder_sequence.shape, self._width
        )
        has_source = encoder_sequence is not None or cross_cache is not None
        if has_source != self._has_cross_attention:
            raise ValueError(
                "`encoder_sequence` (or a `cross_attention_cache`) must be "
                "given on every call if and only if `encoder_sequence` was "
                "given when the block was first called (built). Built with "
                f"cross-attention: {self._has_cross_attention}. "
                f"Received: encoder_sequence={_shape(encoder_sequence)}, "
                f"cross_attention_cache={_shape(cross_cache)}"
            )
        batch, length = decoder_sequence.shape[:2]
        if encoder_sequence is not None:
            self._check_encoder_sequence(encoder_sequence, batch)
        self.self_attention._check_cache_arguments(
            self_cache,
            self_cache_index,
            batch,
            length,
            cache_name="self_attention_cache",
            index_name="self_attention_cache_update_index",
        )
        if cross_cache is not None:
            self.cross_attention._check_cache_arguments(
                cross_cache,
                None,
                batch,
                None,
                cache_name="cross_attention_cache",
            )
        if decoder_padding_mask is None:
            decoder_padding_mask = get_keras_mask(decoder_sequence)
        check_mask_shape(
            "decoder_padding_mask", decoder_padding_mask, (batch, length)
        )
        # With a cache, the queries attend over all its positions.
        keys = length if self_cache is None else self_cache.shape[3]
        check_attention_mask(
            "decoder_attention_mask",
            decoder_attention_mask,
            batch,
            self.num_heads,
            length,
            keys,
        )
        if self._has_cross_attention:
            if encoder_padding_mask is None and encoder_sequence is not None:
                encoder_padding_mask = get_keras_mask(encoder_sequence)
            source_length = (
                encoder_sequence.shape[1]
                if cross_cache is None
                else cross_cache.shape[3]
            )
            check_mask_shape(
                "encoder_padding_mask",
                encoder_padding_mask,
                (batch, source_length),
            )
        return decoder_padding_mask, encoder_padding_mask

    def _check_encoder_sequence(self, encoder_sequence, batch=None):
        check_float_dtype("encoder_sequence", encoder_sequence)
        check_sequence_shape(
            "encoder_sequence", encoder_sequence.shape, self._encoder_width
        )
        check_matching_dim(
            "batch size",
            0,
            decoder_sequence=(batch,),
            encoder_sequence=encoder_sequence.shape,
        )

    def _cross_attend(
        self,
        x,
        encoder_sequence,
        decoder_padding_mask,
        encoder_padding_mask,
        cache,
        training,
        return_scores,
    ):
        """Cross-attention; returns `(outputs, (scores, cache))`.

        With a `cache`, the encoder's keys and values come from it and
        `encoder_sequence` may be `None`.
        """
        return attention_sublayer(
            self.cross_attention,
            return_scores,
            x,
            None if cache is not None else encoder_sequence,
            query_mask=decoder_padding_mask,
            value_mask=encoder_padding_mask,
            training=training,
            cache=cache,
        )

    def get_initial_cache(self, batch_size, max_length):
        """An empty self-attention cache for decoding up to `max_length`.

        Args:
            batch_size: int. Number of sequences decoded together.
            max_length: int. Number of positions the cache holds.

        Returns:
            A `(batch_size, 2, num_key_value_heads, max_length, key_dim)`
            tensor of zeros: keys (`[:, 0]`) and values (`[:, 1]`), heads
            first (`num_key_value_heads` defaults to `num_heads`).
        """
        self._check_built("get_initial_cache")
        return self.self_attention.get_initial_cache(batch_size, max_length)

    def compute_cross_attention_cache(self, encoder_sequence):
        """The cross-attention keys and values of an encoder output.

        The encoder output is the same at every decoding step, so its keys
        and values are projected once and passed as `cross_attention_cache`.

        Args:
            encoder_sequence: `(batch, source_length, encoder_width)` tensor.

        Returns:
            A `(batch, 2, num_key_value_heads, source_length, key_dim)`
            tensor.
        """
        self._check_built("compute_cross_attention_cache")
        if not self._has_cross_attention:
            raise ValueError(
                "`compute_cross_attention_cache` needs a block with "
                "cross-attention: call it with an `encoder_sequence` first. "
                f"Received: block {self.name} built without cross-attention"
            )
        self._check_encoder_sequence(encoder_sequence)
        return self.cross_attention.compute_cache(encoder_sequence)


def _shape(x):
    return None if x is None else tuple(x.shape)
