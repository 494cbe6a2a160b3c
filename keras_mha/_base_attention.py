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

from keras_mha._attention import attend
from keras_mha._heads import check_cache
from keras_mha._heads import check_cache_update_index
from keras_mha._heads import check_cacheable
from keras_mha._heads import merge_heads
from keras_mha._heads import project_heads
from keras_mha._heads import update_cache
from keras_mha._heads import written_positions
from keras_mha._lora import check_targets
from keras_mha._lora import enable_lora
from keras_mha._porting import CALL_HINTS
from keras_mha._porting import CONSTRUCTOR_HINTS
from keras_mha._porting import check_foreign_arguments
from keras_mha._porting import check_positional
from keras_mha._quantization import dtype_config
from keras_mha._quantization import skip_quantize_when_weightless
from keras_mha._utils import clone_initializer
from keras_mha._utils import output_spec_of_call
from keras_mha._utils import pack_outputs
from keras_mha._validation import check_attention_mask
from keras_mha._validation import check_bool
from keras_mha._validation import check_flash_attention
from keras_mha._validation import check_flash_attention_call
from keras_mha._validation import check_mask_shape
from keras_mha._validation import check_positive_int
from keras_mha._validation import check_rate
from keras_mha._validation import check_rotary_key_dim
from keras_mha._validation import check_size
from keras_mha.distribution import check_split


class BaseAttention(keras.layers.Layer):
    """Base of `MultiHeadAttention` and `MultiHeadSelfAttention`.

    Takes and validates the constructor arguments both layers share (see
    `MultiHeadAttention`), resolves the head widths from the input width,
    builds the projections and runs the attention over heads-first
    projections (`_attend`). Subclasses define `build`, `call` and
    `compute_output_shape`.
    """

    def __new__(cls, *args, **kwargs):
        check_positional(cls, args, ("key_dim", "value_dim", "..."))
        return super().__new__(cls, *args, **kwargs)

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
        **kwargs,
    ):
        check_foreign_arguments(self, kwargs, CONSTRUCTOR_HINTS)
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
        if isinstance(rotary_embedding, dict):
            rotary_embedding = keras.layers.deserialize(rotary_embedding)
        if rotary_embedding is not None and not isinstance(
            rotary_embedding, keras.layers.Layer
        ):
            raise TypeError(
                "`rotary_embedding` expected a keras.layers.Layer such as "
                "keras_hub.layers.RotaryEmbedding(), or None. Received: "
                f"rotary_embedding={rotary_embedding!r}"
            )
        if rotary_embedding is not None:
            # A copy in this layer's dtype policy, as the other sub-layers.
            rotary_embedding = keras.layers.deserialize(
                keras.layers.serialize(rotary_embedding)
            )
            rotary_embedding.dtype_policy = self.dtype_policy
            skip_quantize_when_weightless(rotary_embedding)
        self.rotary_embedding = rotary_embedding
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
        self.use_bias = check_bool("use_bias", use_bias)
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

    def __call__(self, *args, **kwargs):
        check_foreign_arguments(self, kwargs, CALL_HINTS)
        return super().__call__(*args, **kwargs)

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
        if self.rotary_embedding is not None:
            check_rotary_key_dim(
                self._key_dim, self.key_dim is not None, self.num_heads, width
            )

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

    def _build_gate(self, query_shape):
        """With `use_gate`, the gate projection of the queries `(d, n, hv)`."""
        if self.use_gate:
            self.gate_dense = self._projection(
                "gate", query_shape, self._value_dim
            )

    def _gate(self, query):
        """`sigmoid(query W_g + b_g)` as `(b, t, n, hv)`, or `None`."""
        if not self.use_gate:
            return None
        gate = project_heads(self.gate_dense, query)  # (b, n, t, hv)
        return ops.sigmoid(ops.transpose(gate, (0, 2, 1, 3)))

    def _rotate(self, x, start_index):
        """`rotary_embedding` on heads-first `(b, n, t, h)` queries or keys.

        The layer sees `(b, t, n, h)`, the layout keras_hub's models call
        `RotaryEmbedding` on, and positions from `start_index`.
        """
        if self.rotary_embedding is None or x is None:
            return x
        x = ops.transpose(x, (0, 2, 1, 3))  # (b, t, n, h)
        x = self.rotary_embedding(x, start_index=start_index)
        return ops.transpose(ops.cast(x, self.compute_dtype), (0, 2, 1, 3))

    def _build_output_projection(self, input_shape):
        self.output_dense = keras.layers.EinsumDense(
            "btnh,nhd->btd",
            output_shape=(None, self._output_dim),
            bias_axes="d" if self.use_bias else None,
            name="attention_output",
            **self._sublayer_kwargs(),
        )
        heads_shape = (*input_shape[:2], self.num_heads, self._value_dim)
        check_split(
            self,
            "attention_output",
            [(self.num_heads, "num_heads"), (self._value_dim, "value_dim")],
            [(self._output_dim, "output_dim")],
        )
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

    def _check_built(self, method):
        if not self.built:
            raise ValueError(
                f"`{method}` needs a built layer: call the layer once "
                f"first. Received: layer {self.name} with built=False"
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

        `q` has `num_heads` heads, `k` and `v` `num_key_value_heads`; each
        key/value head serves `num_heads // num_key_value_heads`
        consecutive query heads. With a `cache`, `k` and `v` (or `None`)
        are first written into it at `cache_update_index`, and the
        attention runs over the cache: the queries then sit at
        `cache_update_index` among the keys, and keys not written yet are
        masked. A `gate` `(b, t, n, hv)` multiplies the heads' outputs
        before the output projection.
        """
        if cache is None and cache_update_index is not None:
            raise ValueError(
                "`cache_update_index` needs a `cache`. Received: cache=None, "
                f"cache_update_index={cache_update_index}"
            )
        check_flash_attention_call(
            self.flash_attention,
            return_attention_scores,
            (self._key_dim, self._value_dim),
        )
        # Positions of this call's queries and keys: from the cache index.
        start = 0 if cache_update_index is None else cache_update_index
        q, k = self._rotate(q, start), self._rotate(k, start)
        causal_offset, written = 0, None
        if cache is not None:
            check_cache(
                "cache",
                cache,
                self._kv_heads,
                self._key_dim,
                self._value_dim,
                batch_size=q.shape[0],
            )
            if cache_update_index is not None:
                check_cache_update_index(
                    "cache_update_index",
                    cache_update_index,
                    k.shape[2],
                    cache.shape[3],
                )
                causal_offset = cache_update_index
                written = cache_update_index + ops.shape(k)[2]
            k, v, cache = update_cache(cache, cache_update_index, k, v)
        if self._kv_heads != self.num_heads:
            # (b, n_kv, s, h) -> (b, n, s, h): query head i uses key/value
            # head i // group, as in Keras's GroupedQueryAttention.
            group = self.num_heads // self._kv_heads
            k, v = ops.repeat(k, group, axis=1), ops.repeat(v, group, axis=1)
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
            sliding_window=self.sliding_window,
        )
        if gate is not None:
            outputs = ops.multiply(outputs, ops.cast(gate, outputs.dtype))
        outputs = merge_heads(self.output_dense, outputs)  # (b, t, output_dim)
        return pack_outputs(
            outputs,
            (scores,) if return_attention_scores else (),
            () if cache is None else (cache,),
        )

    def compute_output_spec(self, *args, **kwargs):
        # `(outputs, [scores], [cache])`, as `call` returns it.
        return output_spec_of_call(self, *args, **kwargs)

    def get_config(self):
        config = super().get_config()
        # The policies of quantized sub-layers, so that they reload.
        config["dtype"] = dtype_config(self, config["dtype"])
        return {
            **config,
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
        }
