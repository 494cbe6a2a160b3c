"""Multi-head attention of a query sequence over a key/value sequence."""

import keras
from keras import ops

from keras_mha._base_attention import BaseAttention
from keras_mha._heads import check_cacheable
from keras_mha._heads import project_heads
from keras_mha._utils import pack_outputs
from keras_mha._validation import check_float_dtype
from keras_mha._validation import check_mask_shape
from keras_mha._validation import check_matching_dim
from keras_mha._validation import check_rotary_cache
from keras_mha._validation import check_sequence_shape


@keras.saving.register_keras_serializable(package="keras_mha")
class MultiHeadAttention(BaseAttention):
    """Multi-head attention of `query` over `value` (cross-attention).

    Each of the `num_heads` heads projects the inputs into its own query, key
    and value subspace, runs scaled dot-product attention
    `softmax(q k^T / sqrt(key_dim)) v`, and the heads' outputs are
    concatenated and projected by one output layer. On JAX and PyTorch the
    attention runs on the backend's fused kernel
    (`keras.ops.dot_product_attention`, flash attention where available);
    TensorFlow, which has no fused kernel, runs heads-first matmuls around
    a float32 softmax. Calls that ask for the attention scores or apply
    attention dropout in training take that explicit path on every backend.
    Long sequences run in chunks with a running softmax and
    rematerialization, so memory grows linearly with the sequence length
    (see `attention_chunk_size`).

    For step-by-step decoding the layer takes a key/value `cache`: with
    `cache_update_index=None` the cached keys and values are used as they
    are (cross-attention to a fixed source, see `compute_cache`); with an
    index, the keys and values of this call's `value` are written into the
    cache at that position first.

    The attention computation itself is one method,
    `_compute_attention`, which a subclass overrides to change the scores
    (see docs/attention-options.md).

    Padding masks are taken from the inputs' Keras masks (for example from
    `keras.layers.Embedding(mask_zero=True)`) or from `query_mask` and
    `value_mask`. A query that may attend to no key (a padded query, or
    one whose keys are all masked) gets a zero attention output, never
    NaN; after the output projection that is the output bias
    (`output_dense.bias`, zeros with `use_bias=False`). The query's Keras
    mask goes with the outputs, so masked layers downstream skip them.

    Args:
        num_heads: int. Number of attention heads.
        key_dim: int. Width of each head's queries and keys. Defaults to
            `None`, which uses `query_width // num_heads` (and requires that
            `num_heads` divides the query width).
        value_dim: int. Width of each head's values. Defaults to `None`,
            which uses `key_dim`.
        output_dim: int. Width of the output. Defaults to `None`, which uses
            the query width.
        dropout: float in [0, 1). Dropout rate on the attention
            probabilities. Defaults to `0.0`.
        use_bias: bool. Whether the projections have biases. Defaults to
            `True`.
        use_causal_mask: bool. Whether query `i` may only attend to keys
            `j <= i` (decoder self-attention). Defaults to `False`.
        flash_attention: `None`, `True` or `False`. `None` lets the backend
            pick its fastest kernel, `False` always uses the explicit softmax
            path, `True` asks for a flash kernel (JAX and PyTorch on a GPU).
            Defaults to `None`.
        kernel_initializer: initializer of the projection kernels. Defaults
            to `"glorot_uniform"`.
        bias_initializer: initializer of the projection biases. Defaults to
            `"zeros"`.
        kernel_regularizer: regularizer of the kernels. Defaults to `None`.
        bias_regularizer: regularizer of the biases. Defaults to `None`.
        kernel_constraint: constraint of the kernels. Defaults to `None`.
        bias_constraint: constraint of the biases. Defaults to `None`.
        seed: int. Seed of the attention dropout. Defaults to `None`.
        attention_chunk_size: int. Queries and keys per block of the chunked
            (memory-efficient) attention, used whenever a sequence is longer
            than this. `None` chunks automatically, in blocks of 1024, on
            backends without a fused kernel (TensorFlow) once a head has
            more than 2048 x 2048 logits. Chunking needs the sequence
            lengths known when the function is traced, and is not used for
            calls that return the scores or apply attention dropout in
            training. Defaults to `None`.
        num_key_value_heads: int. Number of key and value heads; must
            divide `num_heads`. Query head `i` attends with key/value head
            `i // (num_heads // num_key_value_heads)`: grouped-query
            attention, multi-query attention at 1. The key/value cache
            holds `num_key_value_heads` heads. Defaults to `None`, which
            uses `num_heads`.
        sliding_window: int. Query `i` only attends to keys `j` with
            `|i - j| < sliding_window` (positions counted from the start of
            a cache); with `use_causal_mask`, the last `sliding_window`
            positions, as in Mistral. Defaults to `None` (no window).
        use_gate: bool. Whether the heads' outputs are multiplied by a
            sigmoid gate of the query, `sigmoid(query W_g + b_g)` with a
            `(width, num_heads, value_dim)` kernel named `gate`, before the
            output projection (as Keras's `use_gate`). Defaults to `False`.
        rotary_embedding: a layer applied to the projected queries and
            keys before attention, as `layer(x, start_index=position)` on
            `(batch, length, heads, key_dim)` tensors, positions counted
            from `cache_update_index` in cached decoding (from 0 in
            `compute_cache`): rotary position embeddings with
            `keras_hub.layers.RotaryEmbedding()`. The layer uses a copy,
            in its own dtype policy; the copy's config is saved in the
            layer's. Defaults to `None`.
        use_output_bias: bool. Whether the output projection has a bias.
            Defaults to `None`, which follows `use_bias`.
        use_query_key_norm: bool. Whether the projected queries and keys
            are RMS-normalized over the head width before the rotary
            embedding, each with one learned `(key_dim,)` scale shared by
            the heads (`query_norm`, `key_norm`; Qwen 3, Gemma 3).
            Defaults to `False`.
        query_key_norm_epsilon: float. Epsilon of those norms. Defaults
            to `1e-6`.
        attention_logit_soft_cap: float. Caps the logits softly,
            `cap * tanh(logits / cap)` (Gemma 2), after the scale and
            before any bias. The fused kernels do not apply it, so these
            calls run the explicit or chunked path. Defaults to `None`.
        attention_scale: float. The factor on `q . k`. Defaults to
            `None`, which uses `key_dim ** -0.5`.
        rotary_fraction: float in (0, 1]. The share of each head's
            query/key dimensions that `rotary_embedding` rotates: the
            first `int(key_dim * rotary_fraction)`, which must be even;
            the others pass through (GPT-NeoX). Defaults to `1.0`.
        use_alibi: bool. Whether ALiBi biases, `slope * (j - i)` with the
            standard slopes for `num_heads`, are added to the logits (the
            probabilities of BLOOM and keras_hub's `AlibiBias`); query
            positions count from `cache_update_index`. Defaults to
            `False`.
        alibi_slope_scale: float. Multiplies every ALiBi slope; needs
            `use_alibi=True`. Falcon adds ALiBi to `q . k` before its
            `key_dim ** -0.5` scale, which is this with
            `alibi_slope_scale=key_dim ** -0.5`. Defaults to `1.0`.
        **kwargs: other arguments of `keras.layers.Layer`, such as `name`
            and `dtype`.

    Call arguments:
        query: `(batch, query_length, query_width)` tensor.
        value: `(batch, key_length, value_width)` tensor. May be `None`
            when the keys and values come from a `cache` with
            `cache_update_index=None`.
        key: optional `(batch, key_length, key_width)` tensor; defaults to
            `value`.
        query_mask: optional `(batch, query_length)` boolean padding mask;
            defaults to `query`'s Keras mask.
        value_mask: optional `(batch, key_length)` boolean padding mask;
            defaults to `value`'s Keras mask.
        key_mask: optional `(batch, key_length)` padding mask; defaults to
            `value_mask`.
        attention_mask: optional boolean mask, True where a query may
            attend to a key, as in `keras.layers.MultiHeadAttention`: of
            shape `(query_length, key_length)`, `(batch, query_length,
            key_length)` or `(batch, num_heads, query_length,
            key_length)`, where any axis may be 1 to broadcast.
        training: bool. Whether attention dropout is active.
        return_attention_scores: bool. Whether to also return the attention
            probabilities. Defaults to `False`.
        cache: optional `(batch, 2, num_key_value_heads, cache_length,
            key_dim)` tensor of cached keys (`[:, 0]`) and values
            (`[:, 1]`), heads first. Needs `key_dim == value_dim`. The
            masks then refer to the `cache_length` cached positions.
        cache_update_index: optional int or integer scalar tensor: where
            this call's keys and values go in `cache`. `None` uses the
            cache as it is and ignores `value` and `key`. The new positions
            must fit: `0 <= cache_update_index` and `cache_update_index +
            key_length <= cache_length`, and the cache's batch size must
            be the query's; a `ValueError` says otherwise for an int or an
            eager tensor. An index traced in a compiled loop cannot be
            checked: there TensorFlow and JAX clamp an out-of-range write
            onto the cache's last positions and the outputs are wrong, so
            keep the loop within the cache.

    Returns:
        `(batch, query_length, output_dim)` tensor, and with
        `return_attention_scores=True` also the per-head probabilities of
        shape `(batch, num_heads, query_length, key_length)`: rows sum to 1
        and masked keys get exactly 0. With a `cache`, the updated cache is
        appended: `(outputs, [scores], cache)`.

    Example:

    >>> decoder = keras.random.normal((2, 5, 16))
    >>> encoder = keras.random.normal((2, 7, 16))
    >>> layer = keras_mha.MultiHeadAttention(num_heads=4)
    >>> outputs, scores = layer(decoder, encoder, return_attention_scores=True)
    >>> tuple(outputs.shape), tuple(scores.shape)
    ((2, 5, 16), (2, 4, 5, 7))

    References:
        - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762)
    """

    def build(self, query_shape, value_shape, key_shape=None):
        self._resolve_dims(check_sequence_shape("query", query_shape))
        self._value_width = check_sequence_shape("value", value_shape)
        key_shape = value_shape if key_shape is None else key_shape
        self._key_width = check_sequence_shape("key", key_shape)
        self.query_dense = self._projection("query", query_shape, self._key_dim)
        # Keys and values: (d, n_kv, h), n_kv = num_key_value_heads.
        self.key_dense = self._projection(
            "key", key_shape, self._key_dim, self._kv_heads
        )
        self.value_dense = self._projection(
            "value", value_shape, self._value_dim, self._kv_heads
        )
        self._build_shared(query_shape)

    def _check_call_inputs(self, query, value, key, value_mask):
        """Dtypes, widths and matching sizes, before any backend op runs.

        `query` is `None` for `compute_cache`, which has no queries.
        """
        inputs = {"query": query, "value": value, "key": key}
        inputs = {k: v for k, v in inputs.items() if v is not None}
        for name, tensor in inputs.items():
            check_float_dtype(name, tensor)
        self._check_shapes(
            **{name: tensor.shape for name, tensor in inputs.items()}
        )
        if value is not None:
            check_mask_shape(
                "value_mask", value_mask, (value.shape[0], value.shape[1])
            )

    def _check_shapes(self, query=None, value=None, key=None):
        """Ranks, widths (once built) and matching sizes of the inputs."""
        shapes = {"query": query, "value": value, "key": key}
        shapes = {k: tuple(v) for k, v in shapes.items() if v is not None}
        widths = {}
        if self.built:
            widths = {
                "query": self._width,
                "value": self._value_width,
                "key": self._key_width,
            }
        for name, shape in shapes.items():
            check_sequence_shape(name, shape, widths.get(name))
        check_matching_dim("batch size", 0, **shapes)
        shapes.pop("query", None)
        check_matching_dim("sequence length", 1, **shapes)

    def call(
        self,
        query,
        value=None,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
        cache=None,
        cache_update_index=None,
    ):
        if value is None and (cache is None or cache_update_index is not None):
            raise ValueError(
                "`value` may only be omitted when the keys and values come "
                "from a `cache` (with cache_update_index=None). Received: "
                f"value=None, cache={cache if cache is None else cache.shape}, "
                f"cache_update_index={cache_update_index}"
            )
        if cache is not None and cache_update_index is None:
            check_rotary_cache(
                self.rotary_embedding,
                "A `cache` with cache_update_index=None",
            )
        self._check_call_inputs(query, value, key, value_mask)
        key = value if key is None else key
        key_mask = value_mask if key_mask is None else key_mask
        q = project_heads(self.query_dense, query)  # (b, n, t, hk)
        if cache is not None and cache_update_index is None:
            k = v = None  # Read from the cache.
        else:
            k = project_heads(self.key_dense, key)  # (b, n_kv, s, hk)
            v = project_heads(self.value_dense, value)  # (b, n_kv, s, hv)
        outputs, scores, cache = self._attend(
            q,
            k,
            v,
            query_mask,
            key_mask,
            attention_mask,
            training,
            return_attention_scores,
            cache=cache,
            cache_update_index=cache_update_index,
            gate=self._gate(query),
        )
        return pack_outputs(outputs, scores, cache)

    def compute_cache(self, value, key=None):
        """The key/value cache of a fixed `value` sequence.

        For cross-attention while decoding step by step: the source is the
        same at every step, so its keys and values are projected once and
        passed back as `cache` with `cache_update_index=None`.

        Args:
            value: `(batch, key_length, value_width)` tensor.
            key: optional `(batch, key_length, key_width)` tensor; defaults
                to `value`.

        Returns:
            `(batch, 2, num_key_value_heads, key_length, key_dim)` tensor.
        """
        self._check_built("compute_cache")
        check_rotary_cache(self.rotary_embedding, "`compute_cache`")
        check_cacheable(self._key_dim, self._value_dim)
        self._check_call_inputs(None, value, key, None)
        value = ops.cast(value, self.compute_dtype)
        key = value if key is None else ops.cast(key, self.compute_dtype)
        k = project_heads(self.key_dense, key)  # (b, n_kv, s, h)
        k = self._position(k, 0, "key")  # The key norm (rotary is refused).
        v = project_heads(self.value_dense, value)
        return ops.stack([k, v], axis=1)

    def _lora_projections(self, targets):
        """`{projection: None}` of the targeted projections."""
        projections = {
            "query": self.query_dense,
            "key": self.key_dense,
            "value": self.value_dense,
            "output": self.output_dense,
        }
        return {projections[target]: None for target in targets}

    def compute_output_shape(
        self, query_shape, value_shape=None, key_shape=None
    ):
        # The shapes the call would accept, or its error.
        self._check_shapes(query_shape, value_shape, key_shape)
        output_dim = self.output_dim or query_shape[-1]
        return (*query_shape[:-1], output_dim)
