"""The Transformer encoder block: self-attention and feed-forward."""

import keras
from keras.src.backend import get_keras_mask

from keras_mha._transformer_block import TransformerBlock
from keras_mha._utils import pack_outputs
from keras_mha._validation import check_float_dtype
from keras_mha._validation import check_mask_shape
from keras_mha._validation import check_sequence_shape


@keras.saving.register_keras_serializable(package="keras_mha")
class TransformerEncoderBlock(TransformerBlock):
    """One encoder block of "Attention Is All You Need".

    Multi-head self-attention, then a position-wise feed-forward network
    (`Dense(intermediate_dim, activation)` then `Dense(width)`), each wrapped
    in a residual connection with dropout and layer normalization: "Add &
    Norm" after the sub-layer (post-LN, as in the paper) by default, or the
    norm before the sub-layer (pre-LN) with `norm_first=True`. The options
    of today's models (RMS norm, gated feed-forward, post norms, parallel
    residual, and every option of the attention layers, handed down to
    them) make the blocks of Llama, Gemma, Qwen or GPT-NeoX: see
    docs/attention-options.md.

    Args:
        num_heads: int. Number of attention heads; must divide the width
            unless `key_dim` is given.
        intermediate_dim: int. Hidden width of the feed-forward network.
        dropout: float in [0, 1). Dropout rate on the attention
            probabilities and on each sub-layer's output. Defaults to `0.0`.
        activation: activation of the feed-forward network, a Keras name,
            `"keras_mha>gelu_approximate"` (the tanh GELU) or a callable.
            Defaults to `"relu"`.
        norm_first: bool. Pre-LN if `True`, post-LN if `False`. Defaults to
            `False`.
        layer_norm_epsilon: float. Epsilon of every norm of the block, the
            query/key norms included unless `query_key_norm_epsilon` is
            set. Defaults to `1e-5`.
        query_key_norm_epsilon: float. Epsilon of the query/key norms
            (`use_query_key_norm`) when it differs from the block's
            (keras_hub's Qwen 3 keeps 1e-5). Defaults to `None`, which
            uses `layer_norm_epsilon`.
        kernel_initializer: initializer of all kernels. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of all biases. Defaults to `"zeros"`.
        flash_attention: `None`, `True` or `False`, as in
            `MultiHeadAttention`. Defaults to `None`.
        key_dim: int. Head width of queries and keys. Defaults to `None`,
            which uses `width // num_heads`.
        num_key_value_heads: int. Key/value heads of grouped-query
            attention. Defaults to `None`, which uses `num_heads`.
        use_bias: bool. Biases of the query/key/value projections.
            Defaults to `True`.
        use_output_bias: bool. Bias of the attention output projection.
            Defaults to `None`, which follows `use_bias`.
        use_gate: bool. Sigmoid gate on the heads' outputs. Defaults to
            `False`.
        attention_chunk_size: int. Block size of the chunked attention.
            Defaults to `None` (automatic).
        use_query_key_norm: bool. RMS norm of queries and keys over the
            head width. Defaults to `False`.
        attention_logit_soft_cap: float. Soft cap of the logits. Defaults
            to `None`.
        attention_scale: float. Factor on `q . k`. Defaults to `None`,
            which uses `key_dim ** -0.5`.
        sliding_window: int. Attention window. Defaults to `None`.
        rotary_embedding: a rotary position layer on queries and keys.
            Defaults to `None`.
        rotary_fraction: float. Share of each head that rotates. Defaults
            to `1.0`.
        use_alibi: bool. ALiBi biases on the logits. Defaults to `False`.
        alibi_slope_scale: float. Factor on the ALiBi slopes. Defaults to
            `1.0`.
            These attention options are handed to the self-attention
            under the same names, as in `MultiHeadAttention`, and checked
            by it when the block is constructed.
        normalization: `"layer_norm"` or `"rms_norm"` (`x * rsqrt(mean(x^2)
            + eps) * scale`, in float32). Defaults to `"layer_norm"`.
        use_gated_feedforward: bool. Whether the feed-forward network is
            gated, `down(activation(gate(x)) * up(x))` (SwiGLU with
            `"silu"`, GeGLU with a GELU), with the gate `ffn_gate`.
            Defaults to `False`.
        use_feedforward_bias: bool. Whether the feed-forward layers have
            biases. Defaults to `None`, which follows `use_bias`.
        use_post_attention_norm: bool. Whether the attention output is
            normalized before the residual add (Gemma 2/3). Defaults to
            `False`.
        use_post_feedforward_norm: bool. The same for the feed-forward
            output. Defaults to `False`.
        parallel_residual: bool. Whether the sub-layers run in parallel on
            the input, `x + attention(norm_a(x)) + ffn(norm_f(x))`
            (GPT-NeoX); needs `norm_first=True`. Defaults to `False`.
        shared_input_norm: bool. With `parallel_residual`, one input norm
            feeds every sub-layer (Falcon, GPT-J, Phi-2). Defaults to
            `False`.
        **kwargs: other arguments of `keras.layers.Layer`, such as `name`
            and `dtype`.

    Call arguments:
        inputs: `(batch, seq_length, width)` float tensor.
        padding_mask: optional `(batch, seq_length)` boolean mask, True at
            real tokens; defaults to the Keras mask of `inputs`.
        attention_mask: optional boolean mask of shape
            `(batch, seq_length, seq_length)`; True may attend. Also
            `(seq_length, seq_length)` or `(batch, num_heads, seq_length,
            seq_length)`, any axis of which may be 1, as in
            `keras.layers.MultiHeadAttention`.
        training: bool. Whether dropout is active.
        return_attention_scores: bool. Whether to also return the
            self-attention probabilities. Defaults to `False`.

    Returns:
        `(batch, seq_length, width)` tensor carrying the input's mask, and
        with `return_attention_scores=True` also the self-attention
        probabilities of shape `(batch, num_heads, seq_length, seq_length)`.

    Example:

    >>> tokens = keras.Input((None,), dtype="int32")
    >>> x = keras.layers.Embedding(1000, 64, mask_zero=True)(tokens)
    >>> x = keras_mha.SinusoidalPositionEncoding()(x)
    >>> x = keras_mha.TransformerEncoderBlock(8, intermediate_dim=256)(x)
    >>> tuple(x.shape)
    (None, None, 64)

    References:
        - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762)
    """

    def build(self, inputs_shape):
        self._build_self_attention_and_ffn(inputs_shape)

    def call(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
    ):
        check_float_dtype("inputs", inputs)
        check_sequence_shape("inputs", inputs.shape, self._width)
        if padding_mask is None:
            padding_mask = get_keras_mask(inputs)
        check_mask_shape("padding_mask", padding_mask, tuple(inputs.shape[:2]))
        x, ((scores, _), _) = self._residuals(
            inputs,
            [
                (
                    "self_attention",
                    lambda y: self._self_attend(
                        y,
                        padding_mask,
                        attention_mask,
                        training,
                        return_attention_scores,
                        (None, None),
                    ),
                ),
                ("ffn", self._ffn_sublayer),
            ],
            training,
        )
        return pack_outputs(x, scores)
