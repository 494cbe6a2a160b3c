"""What the encoder and decoder blocks share: options, sub-layers, residuals.

A block takes the options of its parts and hands them on: the attention
options (`ATTENTION_OPTIONS`, under the attention layers' own names, so
the attention layer checks them once and its errors name the block's
argument), and its own for the norms, the feed-forward network and the
residual wiring. Notation: b batch, t length, d width, f `intermediate_dim`.
"""

import keras

from keras_mha._base_attention import ATTENTION_OPTIONS
from keras_mha._base_attention import POSITIONAL_OPTIONS
from keras_mha._feedforward import feedforward
from keras_mha._feedforward import get_activation
from keras_mha._layer import PackageLayer
from keras_mha._lora import check_targets
from keras_mha._lora import enable_lora
from keras_mha._normalization import check_normalization
from keras_mha._normalization import make_norm
from keras_mha._utils import unpack_outputs
from keras_mha._validation import check_bool
from keras_mha._validation import check_positive_float
from keras_mha._validation import check_positive_int
from keras_mha._validation import check_sequence_shape
from keras_mha.distribution import check_split
from keras_mha.multi_head_self_attention import MultiHeadSelfAttention


def attention_sublayer(layer, return_scores, *args, cache=None, **kwargs):
    """Calls an attention layer; returns `(outputs, (scores, cache))`.

    `scores` is `None` unless `return_scores`, and `cache` is `None`
    unless one is given: the fixed structure `_residuals` passes on.
    """
    outputs, scores, cache = unpack_outputs(
        layer(
            *args,
            return_attention_scores=return_scores,
            cache=cache,
            **kwargs,
        ),
        return_scores,
        cache is not None,
    )
    return outputs, (scores, cache)


class TransformerBlock(PackageLayer):
    """Base of `TransformerEncoderBlock` and `TransformerDecoderBlock`.

    Holds the constructor arguments both blocks take (see
    `TransformerEncoderBlock`), creates the self-attention layer from the
    attention options, builds the feed-forward network and the norms, and
    runs the sub-layers with their residual connections (`_residuals`).
    Subclasses set `_causal` and add their own sub-layers.
    """

    _keyword_only = ("intermediate_dim", "dropout", "...")
    _causal = False

    def __init__(
        self,
        num_heads,
        *,
        intermediate_dim,
        dropout=0.0,
        activation="relu",
        norm_first=False,
        layer_norm_epsilon=1e-5,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        flash_attention=None,
        key_dim=None,
        num_key_value_heads=None,
        use_bias=True,
        use_output_bias=None,
        use_gate=False,
        attention_chunk_size=None,
        use_query_key_norm=False,
        query_key_norm_epsilon=None,
        attention_logit_soft_cap=None,
        attention_scale=None,
        sliding_window=None,
        rotary_embedding=None,
        rotary_fraction=1.0,
        use_alibi=False,
        alibi_slope_scale=1.0,
        normalization="layer_norm",
        use_gated_feedforward=False,
        use_feedforward_bias=None,
        use_post_attention_norm=False,
        use_post_feedforward_norm=False,
        parallel_residual=False,
        shared_input_norm=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.intermediate_dim = check_positive_int(
            "intermediate_dim", intermediate_dim
        )
        self.activation = get_activation(activation)
        self.norm_first = check_bool("norm_first", norm_first)
        self.layer_norm_epsilon = check_positive_float(
            "layer_norm_epsilon", layer_norm_epsilon
        )
        self.query_key_norm_epsilon = check_positive_float(
            "query_key_norm_epsilon", query_key_norm_epsilon, allow_none=True
        )
        self.normalization = check_normalization(normalization)
        self.use_gated_feedforward = check_bool(
            "use_gated_feedforward", use_gated_feedforward
        )
        self.use_feedforward_bias = check_bool(
            "use_feedforward_bias", use_feedforward_bias, allow_none=True
        )
        self.use_post_attention_norm = check_bool(
            "use_post_attention_norm", use_post_attention_norm
        )
        self.use_post_feedforward_norm = check_bool(
            "use_post_feedforward_norm", use_post_feedforward_norm
        )
        self.parallel_residual = check_bool(
            "parallel_residual", parallel_residual
        )
        self.shared_input_norm = check_bool(
            "shared_input_norm", shared_input_norm
        )
        if self.parallel_residual and not self.norm_first:
            raise ValueError(
                "`parallel_residual=True` adds the sub-layers of one "
                "normalized input, x + attention(norm(x)) + ffn(norm(x)): "
                "it needs norm_first=True. Received: parallel_residual=True, "
                "norm_first=False"
            )
        if self.shared_input_norm and not self.parallel_residual:
            raise ValueError(
                "`shared_input_norm=True` feeds one input norm to the "
                "parallel sub-layers: it needs parallel_residual=True. "
                "Received: shared_input_norm=True, parallel_residual=False"
            )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        # Created here, built in `build`: the attention layer checks the
        # attention options (and `num_heads`, `dropout`) once, at
        # construction, under the names the block takes them by.
        self.self_attention = MultiHeadSelfAttention(
            num_heads,
            use_causal_mask=self._causal,
            dropout=dropout,
            query_key_norm_epsilon=self._query_key_norm_epsilon(),
            dtype=self.dtype_policy,
            name="self_attention",
            **self._initializers(),
            key_dim=key_dim,
            num_key_value_heads=num_key_value_heads,
            use_bias=use_bias,
            use_output_bias=use_output_bias,
            use_gate=use_gate,
            attention_chunk_size=attention_chunk_size,
            flash_attention=flash_attention,
            use_query_key_norm=use_query_key_norm,
            attention_logit_soft_cap=attention_logit_soft_cap,
            attention_scale=attention_scale,
            sliding_window=sliding_window,
            rotary_embedding=rotary_embedding,
            rotary_fraction=rotary_fraction,
            use_alibi=use_alibi,
            alibi_slope_scale=alibi_slope_scale,
        )
        self.num_heads = self.self_attention.num_heads
        self.dropout = self.self_attention.dropout
        self.flash_attention = self.self_attention.flash_attention
        self.supports_masking = True

    def enable_lora(self, rank, targets=("query", "value"), lora_alpha=None):
        """Freezes the block and adds LoRA updates to its attention layers.

        Calls `enable_lora` of each attention layer of the block (see
        `MultiHeadAttention.enable_lora`); the layer norms and the
        feed-forward network stay frozen. Everything is checked before
        anything changes: a refused call leaves the block as it was.

        Args:
            rank: int. Rank of the updates.
            targets: names among `"query"`, `"key"`, `"value"` and
                `"output"`. Defaults to `("query", "value")`.
            lora_alpha: float. Scale of the updates. Defaults to `None`,
                which uses `rank`.
        """
        self._check_built("enable_lora")
        targets = check_targets(targets)
        projections = {}
        for attention in (
            self.self_attention,
            getattr(self, "cross_attention", None),
        ):
            if attention is not None:
                projections.update(attention._lora_projections(targets))
        enable_lora(self, projections, rank, lora_alpha)

    def _attention_options(self, positional=True):
        """The attention options as the self-attention layer checked them.

        `positional=False` leaves out those about positions (rotary,
        ALiBi, sliding window), which cross-attention does not take.
        """
        config = self.self_attention.get_config()
        return {
            name: config[name]
            for name in ATTENTION_OPTIONS
            if positional or name not in POSITIONAL_OPTIONS
        }

    def _query_key_norm_epsilon(self):
        """The query/key norms' epsilon: the block's unless set apart."""
        if self.query_key_norm_epsilon is None:
            return self.layer_norm_epsilon
        return self.query_key_norm_epsilon

    def _cross_attention_kwargs(self):
        """What a cross-attention layer of the block is made with."""
        return dict(
            num_heads=self.num_heads,
            dropout=self.dropout,
            query_key_norm_epsilon=self._query_key_norm_epsilon(),
            dtype=self.dtype_policy,
            **self._initializers(),
            **self._attention_options(positional=False),
        )

    def _norm(self, name, input_shape):
        return make_norm(
            self.normalization,
            self.layer_norm_epsilon,
            self.dtype_policy,
            name,
            input_shape,
        )

    def _build_norms(self, prefix, input_shape, post_norm):
        """The input norm, post norm (or `None`) and residual dropout of
        the sub-layer `prefix`, as attributes `{prefix}_norm`, ...

        With `shared_input_norm` only the self-attention has an input norm.
        """
        norm = None
        if not (self.shared_input_norm and prefix != "self_attention"):
            norm = self._norm(f"{prefix}_layer_norm", input_shape)
        setattr(self, f"{prefix}_norm", norm)
        setattr(
            self,
            f"{prefix}_post_norm",
            self._norm(f"{prefix}_post_norm", input_shape)
            if post_norm
            else None,
        )
        dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name=f"{prefix}_dropout"
        )
        setattr(self, f"{prefix}_dropout", dropout)

    def _build_self_attention_and_ffn(self, input_shape):
        """Builds the sub-layers both blocks have; returns the width."""
        width = check_sequence_shape("inputs", input_shape)
        self._width = width
        self.self_attention.build(input_shape)
        self._build_norms(
            "self_attention", input_shape, self.use_post_attention_norm
        )
        use_bias = self.use_feedforward_bias
        if use_bias is None:
            use_bias = self.self_attention.use_bias
        gated = self.use_gated_feedforward
        dense = dict(use_bias=use_bias, dtype=self.dtype_policy)
        if gated:
            self.ffn_gate = keras.layers.Dense(
                self.intermediate_dim,
                activation=self.activation,
                name="ffn_gate",
                **dense,
                **self._initializers(),
            )
            check_split(
                self,
                "ffn_gate",
                [(width, "width")],
                [(self.intermediate_dim, "intermediate_dim")],
            )
            self.ffn_gate.build(input_shape)
        self.ffn_intermediate = keras.layers.Dense(
            self.intermediate_dim,
            activation=None if gated else self.activation,
            name="ffn_intermediate",
            **dense,
            **self._initializers(),
        )
        ffn = [(self.intermediate_dim, "intermediate_dim")]
        check_split(self, "ffn_intermediate", [(width, "width")], ffn)
        self.ffn_intermediate.build(input_shape)
        self.ffn_output = keras.layers.Dense(
            width, name="ffn_output", **dense, **self._initializers()
        )
        check_split(self, "ffn_output", ffn, [(width, "width")])
        self.ffn_output.build((*input_shape[:-1], self.intermediate_dim))
        self._build_norms("ffn", input_shape, self.use_post_feedforward_norm)
        return width

    def _residuals(self, x, sublayers, training):
        """Runs `sublayers` with their residual connections.

        `sublayers` are `(prefix, fn)` pairs, `fn` mapping a tensor to
        `(outputs, extras)`; the sub-layer's output goes through its post
        norm (if any) and dropout before the add. Post-LN: `x =
        norm(x + f(x))`; pre-LN: `x = x + f(norm(x))`; parallel: `x = x +
        sum f(norm_f(x))`, with `shared_input_norm` the self-attention's
        input norm for all. Returns `x` and the list of extras.
        """
        extras, normed = [], {}
        total = x
        for prefix, fn in sublayers:
            norm = getattr(self, f"{prefix}_norm")
            if norm is None:  # shared_input_norm
                norm = self.self_attention_norm
            if not self.norm_first:
                inputs = x
            elif self.parallel_residual:
                # Every branch reads the same x: one norm call each norm.
                if norm.name not in normed:
                    normed[norm.name] = norm(x)
                inputs = normed[norm.name]
            else:
                inputs = norm(x)
            y, extra = fn(inputs)
            extras.append(extra)
            post_norm = getattr(self, f"{prefix}_post_norm")
            if post_norm is not None:
                y = post_norm(y)
            y = getattr(self, f"{prefix}_dropout")(y, training=training)
            if self.parallel_residual:
                total = total + y
                continue
            x = x + y
            if not self.norm_first:
                x = norm(x)
        return (total if self.parallel_residual else x), extras

    def _self_attend(self, x, mask, attention_mask, training, scores, cache):
        """Self-attention; returns `(outputs, (scores, cache))`."""
        cache, index = cache
        return attention_sublayer(
            self.self_attention,
            scores,
            x,
            mask=mask,
            attention_mask=attention_mask,
            training=training,
            cache=cache,
            cache_update_index=index,
        )

    def _ffn_sublayer(self, x):
        return feedforward(self, x), None

    def compute_output_shape(self, inputs_shape, *args, **kwargs):
        # The shapes the call would accept, or its error.
        width = self._width if self.built else None
        check_sequence_shape("inputs", inputs_shape, width)
        return inputs_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "activation": keras.activations.serialize(self.activation),
            "norm_first": self.norm_first,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "query_key_norm_epsilon": self.query_key_norm_epsilon,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
            "bias_initializer": keras.initializers.serialize(
                self.bias_initializer
            ),
            **self._attention_options(),
            "normalization": self.normalization,
            "use_gated_feedforward": self.use_gated_feedforward,
            "use_feedforward_bias": self.use_feedforward_bias,
            "use_post_attention_norm": self.use_post_attention_norm,
            "use_post_feedforward_norm": self.use_post_feedforward_norm,
            "parallel_residual": self.parallel_residual,
            "shared_input_norm": self.shared_input_norm,
        }
