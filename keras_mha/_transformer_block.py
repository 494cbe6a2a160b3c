"""What the encoder and decoder blocks share: config, sub-layers, Add & Norm."""

import keras
from keras import ops

from keras_mha._lora import check_targets
from keras_mha._lora import enable_lora
from keras_mha._porting import CALL_HINTS
from keras_mha._porting import CONSTRUCTOR_HINTS
from keras_mha._porting import check_foreign_arguments
from keras_mha._porting import check_positional
from keras_mha._quantization import dtype_config
from keras_mha._utils import clone_initializer
from keras_mha._utils import output_spec_of_call
from keras_mha._validation import check_bool
from keras_mha._validation import check_flash_attention
from keras_mha._validation import check_positive_float
from keras_mha._validation import check_positive_int
from keras_mha._validation import check_rate
from keras_mha._validation import check_sequence_shape
from keras_mha.distribution import check_split
from keras_mha.multi_head_self_attention import MultiHeadSelfAttention


def call_attention(layer, return_scores, *args, **kwargs):
    """Calls an attention layer; returns `(outputs, scores_or_None)`."""
    if return_scores:
        return layer(*args, return_attention_scores=True, **kwargs)
    return layer(*args, **kwargs), None


class TransformerBlock(keras.layers.Layer):
    """Base of `TransformerEncoderBlock` and `TransformerDecoderBlock`.

    Holds the constructor arguments both blocks take, builds their shared
    sub-layers (self-attention and the feed-forward network, each with its
    dropout and layer norm) and applies a sub-layer with its residual
    connection. Subclasses set `_causal` and add their own sub-layers.
    """

    _causal = False

    def __new__(cls, *args, **kwargs):
        check_positional(cls, args, ("intermediate_dim", "dropout", "..."))
        return super().__new__(cls, *args, **kwargs)

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
        **kwargs,
    ):
        check_foreign_arguments(self, kwargs, CONSTRUCTOR_HINTS)
        super().__init__(**kwargs)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.intermediate_dim = check_positive_int(
            "intermediate_dim", intermediate_dim
        )
        self.dropout = check_rate("dropout", dropout)
        self.activation = keras.activations.get(activation)
        self.norm_first = check_bool("norm_first", norm_first)
        self.layer_norm_epsilon = check_positive_float(
            "layer_norm_epsilon", layer_norm_epsilon
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.flash_attention = check_flash_attention(
            flash_attention, self.dropout
        )
        self.supports_masking = True

    def __call__(self, *args, **kwargs):
        check_foreign_arguments(self, kwargs, CALL_HINTS)
        return super().__call__(*args, **kwargs)

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
        if not self.built:
            raise ValueError(
                "`enable_lora` needs a built layer: call the layer once "
                f"first. Received: layer {self.name} with built=False"
            )
        targets = check_targets(targets)
        projections = {}
        for attention in (
            self.self_attention,
            getattr(self, "cross_attention", None),
        ):
            if attention is not None:
                projections.update(attention._lora_projections(targets))
        enable_lora(self, projections, rank, lora_alpha)

    def _initializers(self):
        return {
            "kernel_initializer": clone_initializer(self.kernel_initializer),
            "bias_initializer": clone_initializer(self.bias_initializer),
        }

    def _attention_kwargs(self, width):
        if width % self.num_heads:
            raise ValueError(
                f"num_heads={self.num_heads} must divide the input width "
                f"{width}."
            )
        return dict(
            num_heads=self.num_heads,
            dropout=self.dropout,
            flash_attention=self.flash_attention,
            dtype=self.dtype_policy,
            **self._initializers(),
        )

    def _norm_and_dropout(self, prefix, input_shape):
        """The layer norm and residual dropout of one sub-layer."""
        norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon,
            dtype=self.dtype_policy,
            name=f"{prefix}_layer_norm",
        )
        norm.build(input_shape)
        dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name=f"{prefix}_dropout"
        )
        return norm, dropout

    def _build_self_attention_and_ffn(self, input_shape):
        """Builds the sub-layers both blocks have; returns the width."""
        width = check_sequence_shape("inputs", input_shape)
        self._width = width
        self.self_attention = MultiHeadSelfAttention(
            use_causal_mask=self._causal,
            name="self_attention",
            **self._attention_kwargs(width),
        )
        self.self_attention.build(input_shape)
        self.self_attention_norm, self.self_attention_dropout = (
            self._norm_and_dropout("self_attention", input_shape)
        )
        self.ffn_intermediate = keras.layers.Dense(
            self.intermediate_dim,
            activation=self.activation,
            dtype=self.dtype_policy,
            name="ffn_intermediate",
            **self._initializers(),
        )
        ffn = [(self.intermediate_dim, "intermediate_dim")]
        check_split(self, "ffn_intermediate", [(width, "width")], ffn)
        self.ffn_intermediate.build(input_shape)
        self.ffn_output = keras.layers.Dense(
            width,
            dtype=self.dtype_policy,
            name="ffn_output",
            **self._initializers(),
        )
        check_split(self, "ffn_output", ffn, [(width, "width")])
        self.ffn_output.build((*input_shape[:-1], self.intermediate_dim))
        self.ffn_norm, self.ffn_dropout = self._norm_and_dropout(
            "ffn", input_shape
        )
        return width

    def _residual(self, x, norm, dropout, sublayer, training):
        """Add & Norm around `sublayer`: post-LN, or pre-LN if `norm_first`.

        `sublayer` maps a tensor to `(outputs, attention_scores_or_None)`.
        """
        y, scores = sublayer(norm(x) if self.norm_first else x)
        x = x + dropout(y, training=training)
        return (x if self.norm_first else norm(x)), scores

    def _self_attention_sublayer(
        self, x, padding_mask, attention_mask, training, return_scores
    ):
        return self._residual(
            x,
            self.self_attention_norm,
            self.self_attention_dropout,
            lambda y: call_attention(
                self.self_attention,
                return_scores,
                y,
                mask=padding_mask,
                attention_mask=attention_mask,
                training=training,
            ),
            training,
        )

    def _ffn_sublayer(self, x, training):
        return self._residual(
            x,
            self.ffn_norm,
            self.ffn_dropout,
            lambda y: (self._ffn(y), None),
            training,
        )

    def _ffn(self, x):
        """The feed-forward network; on JAX over 2D `(tokens, width)`.

        XLA's CPU gradients of a `(b, t, d)` Dense profile about 1.15x
        slower than those of the same product on 2D tokens.
        """
        if keras.backend.backend() != "jax":
            return self.ffn_output(self.ffn_intermediate(x))
        shape = ops.shape(x)
        x = ops.reshape(x, (-1, shape[-1]))
        return ops.reshape(self.ffn_output(self.ffn_intermediate(x)), shape)

    def compute_output_shape(self, inputs_shape, *args, **kwargs):
        # The shapes the call would accept, or its error.
        width = self._width if self.built else None
        check_sequence_shape("inputs", inputs_shape, width)
        return inputs_shape

    def compute_output_spec(self, *args, **kwargs):
        # `(outputs, [scores], [caches])`, as `call` returns it.
        return output_spec_of_call(self, *args, **kwargs)

    def get_config(self):
        config = super().get_config()
        # The policies of quantized sub-layers, so that they reload.
        config["dtype"] = dtype_config(self, config["dtype"])
        return {
            **config,
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "activation": keras.activations.serialize(self.activation),
            "norm_first": self.norm_first,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer
            ),
            "bias_initializer": keras.initializers.serialize(
                self.bias_initializer
            ),
            "flash_attention": self.flash_attention,
        }
