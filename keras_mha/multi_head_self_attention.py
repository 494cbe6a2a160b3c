"""Multi-head self-attention with one fused query/key/value projection."""

import keras
import numpy as np
from keras.src.backend import get_keras_mask

from keras_mha._base_attention import BaseAttention
from keras_mha._heads import project_fused_qkv
from keras_mha._utils import pack_outputs
from keras_mha._validation import check_float_dtype
from keras_mha._validation import check_mask_shape
from keras_mha._validation import check_sequence_shape


@keras.saving.register_keras_serializable(package="keras_mha")
class MultiHeadSelfAttention(BaseAttention):
    """Multi-head self-attention of a sequence over itself.

    The `MultiHeadAttention` of a sequence with itself, with the per-head
    query, key and value projections fused into one matrix multiplication:
    the kernel has shape `(width, num_heads, 2 * key_dim + value_dim)`, and
    head `i` owns the slice `[:, i, :]`, so each head still has its own
    subspace. With `num_key_value_heads` (grouped-query attention) the
    kernel is `(width, num_key_value_heads, g * key_dim + key_dim +
    value_dim)`, `g = num_heads // num_key_value_heads`: key/value head `i`
    owns the queries of its `g` heads, its key and its value. It takes the
    same constructor arguments as `MultiHeadAttention` (`num_heads`,
    `key_dim`, `value_dim`, `output_dim`, `dropout`, `use_bias`,
    `use_causal_mask`, `flash_attention`, the initializers, regularizers
    and constraints, `seed`, `attention_chunk_size`,
    `num_key_value_heads`, `sliding_window`, `use_gate`,
    `rotary_embedding`, `use_output_bias`, `use_query_key_norm`,
    `query_key_norm_epsilon`, `attention_logit_soft_cap`,
    `attention_scale`, `rotary_fraction` and `use_alibi`); the two
    layers are siblings with their own call signatures. Self-attention
    has no `compute_cache` (a cache of a fixed source is
    cross-attention's): fill a cache from
    `get_initial_cache` by calling the layer on a prompt with
    `cache_update_index=0`.

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
            attended to nor attend: their attention output is zero, so
            the layer returns the output bias there (`output_dense.bias`,
            zeros with `use_bias=False`), and the mask goes with the
            outputs.
        attention_mask: optional boolean mask, True where a query may
            attend to a key, of shape `(seq_length, seq_length)`,
            `(batch, seq_length, seq_length)` or `(batch, num_heads,
            seq_length, seq_length)`, where any axis may be 1 to broadcast
            (as in `keras.layers.MultiHeadAttention`).
        training: bool. Whether attention dropout is active.
        return_attention_scores: bool. Whether to also return the attention
            probabilities. Defaults to `False`.
        cache: optional `(batch, 2, num_key_value_heads, max_length,
            key_dim)` key and value cache for step-by-step decoding, from
            `get_initial_cache`.
            The keys and values of `inputs` are written into it at
            `cache_update_index` and the queries attend over the cache: with
            the causal mask, to positions up to their own; without it, to
            every position written so far. `mask` then masks the new
            positions as queries; mask cached positions with an
            `attention_mask` of shape `(batch, seq_length, max_length)`.
        cache_update_index: int or integer scalar tensor, the position of
            the first element of `inputs`; required with a `cache`. It must
            satisfy `0 <= cache_update_index` and `cache_update_index +
            seq_length <= max_length`, and the cache's batch size must be
            that of `inputs`; a `ValueError` says otherwise for an int or
            an eager tensor. An index traced in a compiled loop cannot be
            checked: there TensorFlow and JAX clamp an out-of-range write
            onto the cache's last positions and the outputs are wrong, so
            keep the loop within the cache.

    Returns:
        `(batch, seq_length, output_dim)` tensor carrying the input's mask,
        and with `return_attention_scores=True` also the per-head
        probabilities of shape `(batch, num_heads, seq_length, seq_length)`
        (`max_length` keys with a cache). With a `cache`, the updated cache
        is appended: `(outputs, [scores], cache)`.

    Example:

    >>> tokens = keras.Input((None,), dtype="int32")
    >>> x = keras.layers.Embedding(1000, 64, mask_zero=True)(tokens)
    >>> x = keras_mha.MultiHeadSelfAttention(num_heads=8)(x)
    >>> tuple(x.shape)
    (None, None, 64)

    References:
        - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762)
    """

    _cache_needs_index = True

    def build(self, input_shape):
        self._resolve_dims(check_sequence_shape("inputs", input_shape))
        # One matmul for q, k and v of every head: (b, t, n_kv, g * hk +
        # hk + hv), key/value head i owning its g = n / n_kv query heads.
        group = self.num_heads // self._kv_heads
        self.qkv_dense = self._projection(
            "qkv",
            input_shape,
            (group + 1) * self._key_dim + self._value_dim,
            self._kv_heads,
        )
        self._build_shared(input_shape)

    def call(
        self,
        inputs,
        mask=None,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
        cache=None,
        cache_update_index=None,
    ):
        check_float_dtype("inputs", inputs)
        check_sequence_shape("inputs", inputs.shape, self._width)
        if mask is None:
            mask = get_keras_mask(inputs)
        check_mask_shape("mask", mask, tuple(inputs.shape[:2]))
        # (b, n, t, hk), (b, n, t, hk), (b, n, t, hv)
        q, k, v = project_fused_qkv(
            self.qkv_dense,
            inputs,
            self._key_dim,
            self._value_dim,
            self.num_heads // self._kv_heads,
        )
        # Cached keys come from earlier calls: the padding mask of this
        # call's inputs only masks them as queries.
        key_mask = mask if cache is None else None
        outputs, scores, cache = self._attend(
            q,
            k,
            v,
            mask,
            key_mask,
            attention_mask,
            training,
            return_attention_scores,
            cache=cache,
            cache_update_index=cache_update_index,
            gate=self._gate(inputs),
        )
        return pack_outputs(outputs, scores, cache)

    def _lora_projections(self, targets):
        """The fused kernel with a mask of its targeted columns, and the
        output projection if targeted."""
        group = self.num_heads // self._kv_heads
        hk = self._key_dim
        # Columns of each key/value head's slice: [g queries | key | value].
        slices = {
            "query": slice(0, group * hk),
            "key": slice(group * hk, (group + 1) * hk),
            "value": slice((group + 1) * hk, None),
        }
        projections = {}
        fused = [slices[t] for t in targets if t in slices]
        if fused:
            columns = np.zeros(self.qkv_dense.kernel.shape[-1], bool)
            for columns_slice in fused:
                columns[columns_slice] = True
            projections[self.qkv_dense] = columns
        if "output" in targets:
            projections[self.output_dense] = None
        return projections

    def compute_output_shape(self, input_shape):
        # The shapes the call would accept, or its error.
        width = self._width if self.built else None
        check_sequence_shape("inputs", input_shape, width)
        output_dim = self.output_dim or input_shape[-1]
        return (*input_shape[:-1], output_dim)
