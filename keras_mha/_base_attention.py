"""What the two attention layers share: config, projections, attention.

`MultiHeadAttention` (cross-attention, separate query/key/value
projections) and `MultiHeadSelfAttention` (one fused projection) are
siblings over `BaseAttention`, as Keras's `MultiHeadAttention` and
`GroupedQueryAttention` are: each keeps its own `build` and `call`
signature, and this base holds what does not depend on them. Notation:
b batch, t query length, s key length, d width, n heads, h head width.
"""

import keras
from keras import ops

from keras_mha import _capture
from keras_mha._attention import Masks
from keras_mha._attention import alibi_slopes
from keras_mha._attention import attend
from keras_mha._heads import check_cache
from keras_mha._heads import check_cache_update_index
from keras_mha._heads import check_cacheable
from keras_mha._heads import merge_heads
from keras_mha._heads import project_heads
from keras_mha._heads import update_cache
from keras_mha._heads import written_positions
from keras_mha._layer import PackageLayer
from keras_mha._lora import check_targets
from keras_mha._lora import enable_lora
from keras_mha._quantization import skip_quantize_when_weightless
from keras_mha._validation import check_attention_mask
from keras_mha._validation import check_bool
from keras_mha._validation import check_flash_attention
from keras_mha._validation import check_flash_attention_call
from keras_mha._validation import check_fraction
from keras_mha._validation import check_mask_shape
from keras_mha._validation import check_positive_float
from keras_mha._validation import check_positive_int
from keras_mha._validation import check_rate
from keras_mha._validation import check_rotary_key_dim
from keras_mha._validation import check_size
from keras_mha.distribution import check_split

# The options of the attention computation a block hands down to its
# attention layers, under the same names (so errors name the block's
# argument too). Cross-attention takes those not about positions.
ATTENTION_OPTIONS = (
    "key_dim",
    "num_key_value_heads",
    "use_bias",
    "use_output_bias",
    "use_gate",
    "attention_chunk_size",
    "flash_attention",
    "use_query_key_norm",
    "attention_logit_soft_cap",
    "attention_scale",
    "sliding_window",
    "rotary_embedding",
    "rotary_fraction",
    "use_alibi",
    "alibi_slope_scale",
)
POSITIONAL_OPTIONS = (
    "sliding_window",
    "rotary_embedding",
    "rotary_fraction",
    "use_alibi",
    "alibi_slope_scale",
)


class BaseAttention(PackageLayer):
    """Base of `MultiHeadAttention` and `MultiHeadSelfAttention`.

    Takes and validates the constructor arguments both layers share (see
    `MultiHeadAttention`), resolves the head widths from the input width,
    builds the projections and runs the attention over heads-first
    projections (`_attend`), in small steps around one override point,
    `_compute_attention`. Subclasses define `build`, `call` and
    `compute_output_shape`.
    """

    _keyword_only = ("key_dim", "value_dim", "...")
    # Whether a `cache` needs a `cache_update_index` (self-attention
    # writes every call's keys; cross-attention may read a fixed cache).
    _cache_needs_index = False

    def __init__(
        self,
        num_heads,
        *,
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
        num_key_value_heads=None,
        sliding_window=None,
        use_gate=False,
        rotary_embedding=None,
        use_output_bias=None,
        use_query_key_norm=False,
        query_key_norm_epsilon=1e-6,
        attention_logit_soft_cap=None,
        attention_scale=None,
        rotary_fraction=1.0,
        use_alibi=False,
        alibi_slope_scale=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.num_key_value_heads = check_positive_int(
            "num_key_value_heads", num_key_value_heads, allow_none=True
        )
        if self.num_key_value_heads and num_heads % num_key_value_heads:
            raise ValueError(
                f"num_key_value_heads={num_key_value_heads} must divide "
                f"num_heads={num_heads}: each key/value head serves "
                "num_heads // num_key_value_heads query heads."
            )
        self._kv_heads = self.num_key_value_heads or self.num_heads
        self.sliding_window = check_positive_int(
            "sliding_window", sliding_window, allow_none=True
        )
        self.use_gate = check_bool("use_gate", use_gate)
        self.rotary_embedding = self._rotary_copy(rotary_embedding)
        self.rotary_fraction = check_fraction(
            "rotary_fraction", rotary_fraction
        )
        if self.rotary_fraction != 1.0 and rotary_embedding is None:
            raise ValueError(
                "`rotary_fraction` sets the share of each head that "
                "`rotary_embedding` rotates, and needs one. Received: "
                f"rotary_fraction={rotary_fraction}, rotary_embedding=None"
            )
        self.attention_chunk_size = check_positive_int(
            "attention_chunk_size", attention_chunk_size, allow_none=True
        )
        self.key_dim = check_positive_int("key_dim", key_dim, allow_none=True)
        if self.key_dim is not None:
            self._check_rotary_dim(self.key_dim)
        self.value_dim = check_positive_int(
            "value_dim", value_dim, allow_none=True
        )
        self.output_dim = check_positive_int(
            "output_dim", output_dim, allow_none=True
        )
        self.dropout = check_rate("dropout", dropout)
        self.use_bias = check_bool("use_bias", use_bias)
        self.use_output_bias = check_bool(
            "use_output_bias", use_output_bias, allow_none=True
        )
        self.use_query_key_norm = check_bool(
            "use_query_key_norm", use_query_key_norm
        )
        self.query_key_norm_epsilon = check_positive_float(
            "query_key_norm_epsilon", query_key_norm_epsilon
        )
        self.attention_logit_soft_cap = check_positive_float(
            "attention_logit_soft_cap", attention_logit_soft_cap, True
        )
        self.attention_scale = check_positive_float(
            "attention_scale", attention_scale, allow_none=True
        )
        self.use_alibi = check_bool("use_alibi", use_alibi)
        self.alibi_slope_scale = check_positive_float(
            "alibi_slope_scale", alibi_slope_scale
        )
        if self.alibi_slope_scale != 1.0 and not self.use_alibi:
            raise ValueError(
                "`alibi_slope_scale` multiplies the ALiBi slopes, and needs "
                f"use_alibi=True. Received: alibi_slope_scale="
                f"{alibi_slope_scale}, use_alibi=False"
            )
        self._alibi_slopes = None
        if self.use_alibi:
            self._alibi_slopes = [
                slope * self.alibi_slope_scale
                for slope in alibi_slopes(num_heads)
            ]
        self.use_causal_mask = check_bool("use_causal_mask", use_causal_mask)
        self.flash_attention = check_flash_attention(
            flash_attention, self.dropout
        )
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

    def _rotary_copy(self, rotary_embedding):
        """A copy of `rotary_embedding` in this layer's dtype policy."""
        if isinstance(rotary_embedding, dict):
            rotary_embedding = keras.layers.deserialize(rotary_embedding)
        if rotary_embedding is None:
            return None
        if not isinstance(rotary_embedding, keras.layers.Layer):
            raise TypeError(
                "`rotary_embedding` expected a keras.layers.Layer such as "
                "keras_hub.layers.RotaryEmbedding(), or None. Received: "
                f"rotary_embedding={rotary_embedding!r}"
            )
        rotary_embedding = keras.layers.deserialize(
            keras.layers.serialize(rotary_embedding)
        )
        rotary_embedding.dtype_policy = self.dtype_policy
        skip_quantize_when_weightless(rotary_embedding)
        return rotary_embedding

    def _check_rotary_dim(self, key_dim, width=None):
        """With `rotary_embedding`, the rotated width must be even.

        `width` is the input width when `key_dim` was derived from it.
        """
        if self.rotary_embedding is None:
            return
        if self.rotary_fraction == 1.0:
            explicit = self.key_dim is not None
            check_rotary_key_dim(key_dim, explicit, self.num_heads, width)
            return
        rotary_dim = int(key_dim * self.rotary_fraction)
        if rotary_dim == 0 or rotary_dim % 2:
            raise ValueError(
                "`rotary_fraction` expected int(key_dim * rotary_fraction) "
                "to be a positive even number: rotary embeddings rotate "
                f"pairs of dimensions. Received: rotary_fraction="
                f"{self.rotary_fraction} with key_dim={key_dim}, which "
                f"rotates {rotary_dim}"
            )

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
        self._check_rotary_dim(self._key_dim, width)
        self._rotary_dim = int(self._key_dim * self.rotary_fraction)
        self._value_dim = self.value_dim or self._key_dim
        self._output_dim = self.output_dim or width

    def _projection(self, name, input_shape, head_width, num_heads=None):
        """An EinsumDense from `(b, t, d)` to `(b, t, heads, head_width)`.

        `num_heads` defaults to the layer's number of query heads.
        """
        layer = keras.layers.EinsumDense(
            "btd,dnh->btnh",
            output_shape=(None, num_heads or self.num_heads, head_width),
            bias_axes="nh" if self.use_bias else None,
            name=name,
            **self._sublayer_kwargs(),
        )
        # This layer applies the input's padding mask itself; letting the
        # projection pass the mask through avoids Keras's "destroys the mask"
        # warning without removing the mask from a tensor others may share.
        layer.supports_masking = True
        heads = "num_heads"
        if num_heads is not None and self.num_key_value_heads is not None:
            heads = "num_key_value_heads"
        check_split(
            self,
            name,
            [(input_shape[-1], "width")],
            [(num_heads or self.num_heads, heads), (head_width, "head width")],
        )
        layer.build(input_shape)
        return layer

    def _build_shared(self, query_shape):
        """The sub-layers after the input projections, for `query_shape`.

        The gate projection of the queries `(d, n, hv)` with `use_gate`,
        the query and key norms `(hk,)` with `use_query_key_norm`, and the
        output projection `(n, hv, output_dim)`.
        """
        if self.use_gate:
            self.gate_dense = self._projection(
                "gate", query_shape, self._value_dim
            )
        if self.use_query_key_norm:
            heads_shape = (None, None, None, self._key_dim)
            self.query_norm, self.key_norm = (
                keras.layers.RMSNormalization(
                    epsilon=self.query_key_norm_epsilon,
                    dtype=self.dtype_policy,
                    name=name,
                )
                for name in ("query_norm", "key_norm")
            )
            self.query_norm.build(heads_shape)
            self.key_norm.build(heads_shape)
        use_output_bias = self.use_output_bias
        if use_output_bias is None:
            use_output_bias = self.use_bias
        self.output_dense = keras.layers.EinsumDense(
            "btnh,nhd->btd",
            output_shape=(None, self._output_dim),
            bias_axes="d" if use_output_bias else None,
            name="attention_output",
            **self._sublayer_kwargs(),
        )
        heads_shape = (*query_shape[:2], self.num_heads, self._value_dim)
        check_split(
            self,
            "attention_output",
            [(self.num_heads, "num_heads"), (self._value_dim, "value_dim")],
            [(self._output_dim, "output_dim")],
        )
        self.output_dense.build(heads_shape)

    def _gate(self, query):
        """`sigmoid(query W_g + b_g)` as `(b, t, n, hv)`, or `None`."""
        if not self.use_gate:
            return None
        gate = project_heads(self.gate_dense, query)  # (b, n, t, hv)
        return ops.sigmoid(ops.transpose(gate, (0, 2, 1, 3)))

    def _sublayer_kwargs(self):
        return {
            **self._initializers(),
            "kernel_regularizer": self.kernel_regularizer,
            "bias_regularizer": self.bias_regularizer,
            "kernel_constraint": self.kernel_constraint,
            "bias_constraint": self.bias_constraint,
            "dtype": self.dtype_policy,
        }

    def get_initial_cache(self, batch_size, max_length):
        """An empty key/value cache for decoding up to `max_length` steps.

        Args:
            batch_size: int. Number of sequences decoded together.
            max_length: int. Number of positions the cache holds.

        Returns:
            A `(batch_size, 2, num_key_value_heads, max_length, key_dim)`
            tensor of zeros in the layer's compute dtype
            (`num_key_value_heads` defaults to `num_heads`).
        """
        self._check_built("get_initial_cache")
        check_size("batch_size", batch_size)
        check_size("max_length", max_length)
        check_cacheable(self._key_dim, self._value_dim)
        shape = (batch_size, 2, self._kv_heads, max_length, self._key_dim)
        return ops.zeros(shape, dtype=self.compute_dtype)

    def enable_lora(self, rank, targets=("query", "value"), lora_alpha=None):
        """Freezes the layer and adds LoRA updates to chosen projections.

        As keras_hub's `Backbone.enable_lora`: afterwards only the low-rank
        kernels train, `W + (lora_alpha / rank) A B` with `B` starting at
        zero (so the outputs are unchanged until training). On the fused
        query/key/value kernel of `MultiHeadSelfAttention` only the slices
        of the targeted projections change. A saved model stores the
        updates merged into the kernels. Calling it again adds updates to
        projections that have none (the earlier ones keep training); a
        projection that already has one, a kernel constraint or a bad
        argument is refused with nothing changed.

        Args:
            rank: int. Rank of the updates.
            targets: names among `"query"`, `"key"`, `"value"` and
                `"output"`. Defaults to `("query", "value")`, keras_hub's.
            lora_alpha: float. Scale of the updates. Defaults to `None`,
                which uses `rank` (a scale of 1).
        """
        self._check_built("enable_lora")
        targets = check_targets(targets)
        enable_lora(self, self._lora_projections(targets), rank, lora_alpha)

    def _check_cache_arguments(
        self,
        cache,
        cache_update_index,
        batch_size,
        new_length,
        cache_name="cache",
        index_name="cache_update_index",
    ):
        """Checks a cache and its index against the layer.

        The one copy of these checks: the layer runs it on every call, and
        a block runs it first under its own argument names.

        Args:
            cache: the `cache` argument, or `None`.
            cache_update_index: the `cache_update_index` argument.
            batch_size: the static batch size of the queries, or `None`.
            new_length: the static number of new keys, or `None`.
            cache_name: the caller's name of `cache`, for messages.
            index_name: the caller's name of `cache_update_index`.
        """
        if cache is None:
            if cache_update_index is not None:
                raise ValueError(
                    f"`{index_name}` needs a `{cache_name}`. Received: "
                    f"{cache_name}=None, {index_name}={cache_update_index}"
                )
            return
        if cache_update_index is None and self._cache_needs_index:
            raise ValueError(
                f"A `{cache_name}` needs the position of the new keys and "
                f"values in it, `{index_name}`. Received: {index_name}=None"
            )
        check_cache(
            cache_name,
            cache,
            self._kv_heads,
            self._key_dim,
            self._value_dim,
            batch_size=batch_size,
        )
        if cache_update_index is not None:
            check_cache_update_index(
                index_name,
                cache_update_index,
                new_length,
                cache.shape[3],
                cache_name=cache_name,
            )

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
        gate=None,
    ):
        """Attention over heads-first projections, then the output one.

        `q` has `num_heads` heads, `k` and `v` `num_key_value_heads` (or
        are `None` to read a `cache` as it is). The steps: positions
        (query/key norm, rotary), the cache update, the key/value head
        expansion, the mask checks, `_compute_attention`, the output
        projection. Returns `(outputs, scores or None, cache or None)`.
        """
        new_length = None if k is None else k.shape[2]
        self._check_cache_arguments(
            cache, cache_update_index, q.shape[0], new_length
        )
        check_flash_attention_call(
            self.flash_attention,
            return_attention_scores,
            (self._key_dim, self._value_dim),
        )
        # Positions of this call's queries and keys: from the cache index.
        start = 0 if cache_update_index is None else cache_update_index
        q, k = self._position(q, start), self._position(k, start, "key")
        k, v, cache, written = self._update_cache(
            k, v, cache, cache_update_index
        )
        k, v = self._expand_key_value_heads(k, v)
        masks = self._masks(
            q, k, query_mask, key_mask, attention_mask, start, written
        )
        # keras_mha.visualize.attention_maps: while a recorder is open, the
        # probabilities are computed (explicit path) and handed to it.
        recorder = _capture.active_recorder()
        outputs, scores = self._compute_attention(
            q,
            k,
            v,
            masks,
            training,
            return_attention_scores or recorder is not None,
        )
        if recorder is not None:
            recorder.record(self, scores)
            scores = scores if return_attention_scores else None
        if gate is not None:
            outputs = ops.multiply(outputs, ops.cast(gate, outputs.dtype))
        outputs = merge_heads(self.output_dense, outputs)  # (b, t, output_dim)
        return outputs, scores, cache

    def _position(self, x, start_index, kind="query"):
        """Query/key norm, then rotary positions, of `(b, n, t, h)` heads.

        `kind` is `"query"` or `"key"`; `x` may be `None` (a cache read).
        """
        if x is None:
            return x
        if self.use_query_key_norm:
            norm = self.query_norm if kind == "query" else self.key_norm
            x = norm(x)
        if self.rotary_embedding is None:
            return x
        # The rotary layer sees `(b, t, n, h)`, the layout keras_hub's
        # models call `RotaryEmbedding` on, and positions from `start`.
        x = ops.transpose(x, (0, 2, 1, 3))
        if self._rotary_dim < self._key_dim:
            # Partial rotary (GPT-NeoX): the first dims rotate, the rest
            # pass through.
            rotated = self.rotary_embedding(
                x[..., : self._rotary_dim], start_index=start_index
            )
            x = ops.concatenate(
                [ops.cast(rotated, x.dtype), x[..., self._rotary_dim :]], -1
            )
        else:
            x = self.rotary_embedding(x, start_index=start_index)
        return ops.transpose(ops.cast(x, self.compute_dtype), (0, 2, 1, 3))

    def _update_cache(self, k, v, cache, cache_update_index):
        """Writes `k`, `v` into `cache` at the index; attends over it.

        Returns the keys, values, cache and the end of the written
        positions (`None` when none were written or there is no cache).
        """
        if cache is None:
            return k, v, None, None
        written = None
        if cache_update_index is not None:
            written = cache_update_index + ops.shape(k)[2]
        k, v, cache = update_cache(cache, cache_update_index, k, v)
        return k, v, cache, written

    def _expand_key_value_heads(self, k, v):
        """`(b, n_kv, s, h)` -> `(b, n, s, h)`: query head `i` uses
        key/value head `i // group`, as in Keras's GroupedQueryAttention."""
        if self._kv_heads == self.num_heads:
            return k, v
        group = self.num_heads // self._kv_heads
        return ops.repeat(k, group, axis=1), ops.repeat(v, group, axis=1)

    def _masks(
        self, q, k, query_mask, key_mask, attention_mask, start, written
    ):
        """Checks the masks; returns them as `Masks` for the attention."""
        batch, query_length, key_length = q.shape[0], q.shape[2], k.shape[2]
        check_mask_shape("query_mask", query_mask, (batch, query_length))
        check_mask_shape("key_mask", key_mask, (batch, key_length))
        check_attention_mask(
            "attention_mask",
            attention_mask,
            batch,
            self.num_heads,
            query_length,
            key_length,
        )
        if written is not None and not self.use_causal_mask:
            # The causal mask already hides the positions not written yet.
            key_mask = written_positions(key_mask, ops.shape(k)[2], written)
        return Masks(
            query_mask,
            key_mask,
            attention_mask,
            self.use_causal_mask,
            start,
            self.sliding_window,
        )

    def _compute_attention(
        self,
        query,
        key,
        value,
        masks,
        training=None,
        return_attention_scores=False,
        bias=None,
    ):
        """The attention computation: the one method to override.

        As Keras's `MultiHeadAttention._compute_attention`: everything
        that changes the scores (scale, soft cap, ALiBi, masks) happens
        here, in `keras_mha._attention.attend`, on the fused, explicit and
        chunked paths alike. A subclass that changes the scores overrides
        this method, for instance to add a bias:

        ```python
        class RelativeBias(keras_mha.MultiHeadSelfAttention):
            def _compute_attention(self, query, key, value, masks,
                                   training=None,
                                   return_attention_scores=False,
                                   bias=None):
                bias = my_bias(query.shape[2], key.shape[2])
                return super()._compute_attention(
                    query, key, value, masks, training,
                    return_attention_scores, bias=bias)
        ```

        Args:
            query: `(b, n, t, hk)` queries, normalized and rotated.
            key: `(b, n, s, hk)` keys, expanded to `num_heads` heads (the
                whole cache in cached decoding).
            value: `(b, n, s, hv)` values.
            masks: `keras_mha._attention.Masks`, checked.
            training: whether attention dropout is active.
            return_attention_scores: whether to return the probabilities.
            bias: optional float tensor broadcastable to `(b, n, t, s)`,
                added to the logits after the soft cap.

        Returns:
            `(b, t, n, hv)` outputs and the `(b, n, t, s)` probabilities,
            or `None` for them unless `return_attention_scores`.
        """
        return attend(
            query,
            key,
            value,
            **masks._asdict(),
            dropout=self.dropout,
            training=training,
            seed_generator=self.seed_generator,
            return_scores=return_attention_scores,
            flash_attention=self.flash_attention,
            chunk_size=self.attention_chunk_size,
            scale=self.attention_scale,
            soft_cap=self.attention_logit_soft_cap,
            bias=bias,
            alibi_slopes=self._alibi_slopes,
        )

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
            "num_key_value_heads": self.num_key_value_heads,
            "sliding_window": self.sliding_window,
            "use_gate": self.use_gate,
            "rotary_embedding": (
                None
                if self.rotary_embedding is None
                else keras.layers.serialize(self.rotary_embedding)
            ),
            "attention_chunk_size": self.attention_chunk_size,
            "use_output_bias": self.use_output_bias,
            "use_query_key_norm": self.use_query_key_norm,
            "query_key_norm_epsilon": self.query_key_norm_epsilon,
            "attention_logit_soft_cap": self.attention_logit_soft_cap,
            "attention_scale": self.attention_scale,
            "rotary_fraction": self.rotary_fraction,
            "use_alibi": self.use_alibi,
            "alibi_slope_scale": self.alibi_slope_scale,
        }
