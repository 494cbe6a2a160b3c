"""Multi-head attention of a query sequence over a key/value sequence."""

import keras
from keras import ops

from keras_mha._attention import attend
from keras_mha._heads import check_cache
from keras_mha._heads import check_cacheable
from keras_mha._heads import merge_heads
from keras_mha._heads import project_heads
from keras_mha._heads import update_cache
from keras_mha._heads import written_positions
from keras_mha._validation import check_float_dtype
from keras_mha._validation import check_mask_shape
from keras_mha._validation import check_matching_dim
from keras_mha._validation import check_positive_int
from keras_mha._validation import check_rate
from keras_mha._validation import check_sequence_shape


def clone_initializer(initializer):
    """A fresh copy, so sub-layers don't share one initializer's state."""
    return initializer.__class__.from_config(initializer.get_config())


@keras.saving.register_keras_serializable(package="keras_mha")
class MultiHeadAttention(keras.layers.Layer):
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

    Padding masks are taken from the inputs' Keras masks (for example from
    `keras.layers.Embedding(mask_zero=True)`) or from `query_mask` and
    `value_mask`; a query that may attend to no key outputs zeros.

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
        attention_mask: optional boolean mask of shape
            `(batch, query_length, key_length)` or
            `(batch, num_heads, query_length, key_length)`; True may attend.
        training: bool. Whether attention dropout is active.
        return_attention_scores: bool. Whether to also return the attention
            probabilities. Defaults to `False`.
        cache: optional `(batch, 2, num_heads, cache_length, key_dim)`
            tensor of cached keys (`[:, 0]`) and values (`[:, 1]`), heads
            first. Needs `key_dim == value_dim`. The masks then refer to
            the `cache_length` cached positions.
        cache_update_index: optional int or integer scalar tensor: where
            this call's keys and values go in `cache`. `None` uses the
            cache as it is and ignores `value` and `key`.

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

    def __init__(
        self,
        num_heads,
        key_dim=None,
        value_dim=None,
        output_dim=None,
        dropout=0.0,
        use_bias=True,
        use_causal_mask=False,
        flash_attention=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        seed=None,
        attention_chunk_size=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.attention_chunk_size = check_positive_int(
            "attention_chunk_size", attention_chunk_size, allow_none=True
        )
        self.key_dim = check_positive_int("key_dim", key_dim, allow_none=True)
        self.value_dim = check_positive_int(
            "value_dim", value_dim, allow_none=True
        )
        self.output_dim = check_positive_int(
            "output_dim", output_dim, allow_none=True
        )
        self.dropout = check_rate("dropout", dropout)
        if flash_attention not in (None, True, False):
            raise ValueError(
                "`flash_attention` expected None, True or False. "
                f"Received: flash_attention={flash_attention!r}"
            )
        self.use_bias = bool(use_bias)
        self.use_causal_mask = bool(use_causal_mask)
        self.flash_attention = flash_attention
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.seed = seed
        # Only a layer with dropout owns random state (and a seed variable).
        self.seed_generator = (
            keras.random.SeedGenerator(seed) if self.dropout > 0 else None
        )
        self.supports_masking = True

    def _resolve_dims(self, width):
        """Sets the head and output widths for an input of width `width`."""
        if self.key_dim is None and width % self.num_heads:
            raise ValueError(
                f"num_heads={self.num_heads} must divide the input width "
                f"{width} when key_dim is not set. Pass key_dim explicitly or "
                "choose a num_heads that divides the width."
            )
        self._width = width
        self._key_dim = self.key_dim or width // self.num_heads
        self._value_dim = self.value_dim or self._key_dim
        self._output_dim = self.output_dim or width

    def _projection(self, name, input_shape, head_width):
        """An EinsumDense from `(b, t, d)` to `(b, t, heads, head_width)`."""
        layer = keras.layers.EinsumDense(
            "btd,dnh->btnh",
            output_shape=(None, self.num_heads, head_width),
            bias_axes="nh" if self.use_bias else None,
            name=name,
            **self._sublayer_kwargs(),
        )
        # This layer applies the input's padding mask itself; letting the
        # projection pass the mask through avoids Keras's "destroys the mask"
        # warning without removing the mask from a tensor others may share.
        layer.supports_masking = True
        layer.build(input_shape)
        return layer

    def _build_output_projection(self, input_shape):
        self.output_dense = keras.layers.EinsumDense(
            "btnh,nhd->btd",
            output_shape=(None, self._output_dim),
            bias_axes="d" if self.use_bias else None,
            name="attention_output",
            **self._sublayer_kwargs(),
        )
        heads_shape = (*input_shape[:2], self.num_heads, self._value_dim)
        self.output_dense.build(heads_shape)

    def _sublayer_kwargs(self):
        return {
            "kernel_initializer": clone_initializer(self.kernel_initializer),
            "bias_initializer": clone_initializer(self.bias_initializer),
            "kernel_regularizer": self.kernel_regularizer,
            "bias_regularizer": self.bias_regularizer,
            "kernel_constraint": self.kernel_constraint,
            "bias_constraint": self.bias_constraint,
            "dtype": self.dtype_policy,
        }

    def build(self, query_shape, value_shape, key_shape=None):
        self._resolve_dims(check_sequence_shape("query", query_shape))
        self._value_width = check_sequence_shape("value", value_shape)
        key_shape = value_shape if key_shape is None else key_shape
        self._key_width = check_sequence_shape("key", key_shape)
        self.query_dense = self._projection("query", query_shape, self._key_dim)
        self.key_dense = self._projection("key", key_shape, self._key_dim)
        self.value_dense = self._projection(
            "value", value_shape, self._value_dim
        )
        self._build_output_projection(query_shape)

    def _check_call_inputs(self, query, value, key, value_mask):
        """Dtypes, widths and matching sizes, before any backend op runs."""
        inputs = {"query": query}
        if value is not None:
            inputs["value"] = value
        if key is not None:
            inputs["key"] = key
        widths = {
            "query": self._width,
            "value": self._value_width,
            "key": self._key_width,
        }
        for name, tensor in inputs.items():
            check_float_dtype(name, tensor)
            check_sequence_shape(name, tensor.shape, widths[name])
        shapes = {name: tensor.shape for name, tensor in inputs.items()}
        check_matching_dim("batch size", 0, **shapes)
        shapes.pop("query")
        check_matching_dim("sequence length", 1, **shapes)
        if value is not None:
            check_mask_shape(
                "value_mask", value_mask, (value.shape[0], value.shape[1])
            )

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
        self._check_call_inputs(query, value, key, value_mask)
        key = value if key is None else key
        key_mask = value_mask if key_mask is None else key_mask
        q = project_heads(self.query_dense, query)  # (b, n, t, hk)
        if cache is not None and cache_update_index is None:
            k = v = None  # Read from the cache.
        else:
            k = project_heads(self.key_dense, key)  # (b, n, s, hk)
            v = project_heads(self.value_dense, value)  # (b, n, s, hv)
        return self._attend(
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
        )

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
            `(batch, 2, num_heads, key_length, key_dim)` tensor.
        """
        if not self.built:
            raise ValueError(
                "`compute_cache` needs a built layer: call the layer once "
                f"first. Received: layer {self.name} with built=False"
            )
        check_cacheable(self._key_dim, self._value_dim)
        value = ops.cast(value, self.compute_dtype)
        key = value if key is None else ops.cast(key, self.compute_dtype)
        k = project_heads(self.key_dense, key)  # (b, n, s, h)
        v = project_heads(self.value_dense, value)
        return ops.stack([k, v], axis=1)

    def _attend(
        self,
        q,
        k,
        v,
        query_mask,
        key_mask,
        attention_mask,
        training,
        return_attention_scores,
        cache=None,
        cache_update_index=None,
    ):
        """Attention over heads-first projections, then the output one.

        With a `cache`, `k` and `v` (or `None`) are first written into it
        at `cache_update_index`, and the attention runs over the cache: the
        queries then sit at `cache_update_index` among the keys, and keys
        not written yet are masked.
        """
        if cache is None and cache_update_index is not None:
            raise ValueError(
                "`cache_update_index` needs a `cache`. Received: cache=None, "
                f"cache_update_index={cache_update_index}"
            )
        causal_offset, written = 0, None
        if cache is not None:
            check_cache(
                "cache", cache, self.num_heads, self._key_dim, self._value_dim
            )
            if cache_update_index is not None:
                causal_offset = cache_update_index
                written = cache_update_index + ops.shape(k)[2]
            k, v, cache = update_cache(cache, cache_update_index, k, v)
        batch, query_length, key_length = q.shape[0], q.shape[2], k.shape[2]
        check_mask_shape("query_mask", query_mask, (batch, query_length))
        check_mask_shape("key_mask", key_mask, (batch, key_length))
        check_mask_shape(
            "attention_mask",
            attention_mask,
            (batch, query_length, key_length),
            (batch, 1, query_length, key_length),
            (batch, self.num_heads, query_length, key_length),
        )
        if written is not None and not self.use_causal_mask:
            # The causal mask already hides the positions not written yet.
            key_mask = written_positions(key_mask, ops.shape(k)[2], written)
        outputs, scores = attend(
            q,
            k,
            v,
            query_mask=query_mask,
            key_mask=key_mask,
            attention_mask=attention_mask,
            use_causal_mask=self.use_causal_mask,
            causal_offset=causal_offset,
            dropout=self.dropout,
            training=training,
            seed_generator=self.seed_generator,
            return_scores=return_attention_scores,
            flash_attention=self.flash_attention,
            chunk_size=self.attention_chunk_size,
        )
        outputs = merge_heads(self.output_dense, outputs)  # (b, t, output_dim)
        results = (outputs,)
        if return_attention_scores:
            results += (scores,)
        if cache is not None:
            results += (cache,)
        return results[0] if len(results) == 1 else results

    def compute_output_shape(
        self, query_shape, value_shape=None, key_shape=None
    ):
        output_dim = self.output_dim or query_shape[-1]
        return (*query_shape[:-1], output_dim)

    def compute_output_spec(
        self,
        query,
        value=None,
        key=None,
        return_attention_scores=False,
        cache=None,
        **kwargs,
    ):
        value = query if value is None else value
        output = keras.KerasTensor(
            self.compute_output_shape(query.shape), dtype=self.compute_dtype
        )
        results = (output,)
        if return_attention_scores:
            # Scores are (b, n, t, s): the key length is the value's (or
            # the cache's), not the query's, in cross-attention.
            key_length = value.shape[1] if cache is None else cache.shape[3]
            scores_shape = (
                query.shape[0],
                self.num_heads,
                query.shape[1],
                key_length,
            )
            results += (
                keras.KerasTensor(scores_shape, dtype=self.compute_dtype),
            )
        if cache is not None:
            results += (keras.KerasTensor(cache.shape, dtype=cache.dtype),)
        return results[0] if len(results) == 1 else results

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "output_dim": self.output_dim,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "use_causal_mask": self.use_causal_mask,
            "flash_attention": self.flash_attention,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
            "bias_initializer": keras.initializers.serialize(
                self.bias_initializer
            ),
            "kernel_regularizer": keras.regularizers.serialize(
                self.kernel_regularizer
            ),
            "bias_regularizer": keras.regularizers.serialize(
                self.bias_regularizer
            ),
            "kernel_constraint": keras.constraints.serialize(
                self.kernel_constraint
            ),
            "bias_constraint": keras.constraints.serialize(
                self.bias_constraint
            ),
            "seed": self.seed,
            "attention_chunk_size": self.attention_chunk_size,
        }
