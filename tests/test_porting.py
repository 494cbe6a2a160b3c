"""Code written for keras_hub's or Keras's layers: same model, or loud.

One test per row of the table in docs/porting.md.
Arguments both libraries take under one name are checked to mean the same
thing by copying weights across and comparing outputs; arguments we name
differently, or do not have, raise a `TypeError` that names ours.
"""

import keras
import keras_hub
import numpy as np
import pytest

import keras_mha

B, T, S, D, HEADS, FFN = 2, 5, 6, 12, 3, 7


def _floats(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _padding(length, lengths=(3, 5)):
    return np.arange(length)[None] < np.array(lengths)[:, None]


def test_positional_sizes_after_num_heads_are_refused():
    # keras_hub: TransformerEncoder(intermediate_dim=64, num_heads=4).
    with pytest.raises(TypeError, match="`intermediate_dim`.*by keyword"):
        keras_mha.TransformerEncoderBlock(64, 4)
    with pytest.raises(TypeError, match="`intermediate_dim`"):
        keras_mha.TransformerDecoderBlock(64, 4)
    # Keras: GroupQueryAttention(head_dim, num_query_heads, ...).
    with pytest.raises(TypeError, match="`key_dim`.*by keyword"):
        keras_mha.MultiHeadAttention(16, 4)
    with pytest.raises(TypeError, match="`key_dim`"):
        keras_mha.MultiHeadSelfAttention(16, 4, 2)


def _copy_keras_hub_encoder(hub, ours):
    """keras_hub TransformerEncoder weights into TransformerEncoderBlock."""
    attention = hub._self_attention_layer
    q, k, v = (
        keras.ops.convert_to_numpy(layer.kernel)
        for layer in (
            attention._query_dense,
            attention._key_dense,
            attention._value_dense,
        )
    )
    qb, kb, vb = (
        keras.ops.convert_to_numpy(layer.bias)
        for layer in (
            attention._query_dense,
            attention._key_dense,
            attention._value_dense,
        )
    )
    # Head i owns [:, i, :] = [q_i | k_i | v_i] of the fused kernel.
    ours.self_attention.qkv_dense.set_weights(
        [np.concatenate([q, k, v], -1), np.concatenate([qb, kb, vb], -1)]
    )
    pairs = [
        (attention._output_dense, ours.self_attention.output_dense),
        (hub._self_attention_layer_norm, ours.self_attention_norm),
        (hub._feedforward_intermediate_dense, ours.ffn_intermediate),
        (hub._feedforward_output_dense, ours.ffn_output),
        (hub._feedforward_layer_norm, ours.ffn_norm),
    ]
    for theirs, mine in pairs:
        mine.set_weights(theirs.get_weights())


@pytest.mark.parametrize("norm_first", [False, True], ids=["post", "pre"])
def test_keras_hub_encoder_arguments_build_the_same_block(norm_first):
    """Same names mean the same: keras_hub's `normalize_first` is our
    `norm_first`; `dropout`, `activation`, `layer_norm_epsilon` are shared.
    """
    shared = dict(dropout=0.1, activation="gelu", layer_norm_epsilon=1e-3)
    hub = keras_hub.layers.TransformerEncoder(
        intermediate_dim=FFN,
        num_heads=HEADS,
        normalize_first=norm_first,
        **shared,
    )
    ours = keras_mha.TransformerEncoderBlock(
        HEADS, intermediate_dim=FFN, norm_first=norm_first, **shared
    )
    x, mask = _floats(B, T, D), _padding(T)
    hub(x, padding_mask=mask)
    ours(x, padding_mask=mask)
    _copy_keras_hub_encoder(hub, ours)
    want = keras.ops.convert_to_numpy(hub(x, padding_mask=mask))
    got = keras.ops.convert_to_numpy(ours(x, padding_mask=mask))
    # Padded positions: keras_hub's still attend, ours output zeros from
    # the attention; compare the real tokens.
    np.testing.assert_allclose(got[mask], want[mask], rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match="`norm_first`.*normalize_first=True"):
        keras_mha.TransformerEncoderBlock(
            HEADS, intermediate_dim=FFN, normalize_first=True
        )


def test_keras_hub_decoder_encoder_attention_mask_names_ours():
    block = keras_mha.TransformerDecoderBlock(HEADS, intermediate_dim=FFN)
    x, e = _floats(B, T, D), _floats(B, S, D, seed=1)
    with pytest.raises(TypeError, match="`encoder_padding_mask`"):
        block(x, e, encoder_attention_mask=np.ones((B, T, S), bool))
    with pytest.raises(TypeError, match="always causal"):
        block(x, e, use_causal_mask=True)


def test_keras_attention_causal_call_argument_names_the_constructor_one():
    """Keras's `call(..., use_causal_mask=True)` is our constructor
    argument, with the same mask (copied weights, same outputs)."""
    q, v = _floats(B, T, D), _floats(B, S, D, seed=1)
    theirs = keras.layers.MultiHeadAttention(num_heads=HEADS, key_dim=4)
    ours = keras_mha.MultiHeadAttention(HEADS, key_dim=4, use_causal_mask=True)
    want = theirs(q, v, use_causal_mask=True)
    ours(q, v)
    for name in ("query", "key", "value", "output"):
        getattr(ours, f"{name}_dense").set_weights(
            getattr(theirs, f"_{name}_dense").get_weights()
        )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours(q, v)),
        keras.ops.convert_to_numpy(want),
        rtol=1e-4,
        atol=1e-5,
    )
    with pytest.raises(TypeError, match="constructor argument"):
        ours(q, v, use_causal_mask=True)


@pytest.mark.parametrize(
    "kwargs, ours",
    [
        ({"output_shape": 8}, "`output_dim`"),
        ({"attention_axes": (1,)}, "no equivalent"),
        ({"num_query_heads": 4}, "`num_heads`"),
        ({"head_dim": 4}, "`key_dim`"),
    ],
    ids=["output_shape", "attention_axes", "num_query_heads", "head_dim"],
)
def test_keras_attention_arguments_name_ours(kwargs, ours):
    for layer in (
        keras_mha.MultiHeadAttention,
        keras_mha.MultiHeadSelfAttention,
    ):
        with pytest.raises(TypeError, match=ours):
            layer(HEADS, **kwargs)


def test_keras_hub_sine_position_encoding_is_add_to_input_false():
    """keras_hub's `x + SinePositionEncoding()(x)` is our default call, or
    `x + SinusoidalPositionEncoding(add_to_input=False)(x)`."""
    x = keras.ops.convert_to_tensor(_floats(B, 9, 10))
    theirs = keras.ops.convert_to_numpy(
        x + keras_hub.layers.SinePositionEncoding()(x)
    )
    encoding_only = keras_mha.SinusoidalPositionEncoding(add_to_input=False)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(x + encoding_only(x)), theirs, atol=1e-5
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras_mha.SinusoidalPositionEncoding()(x)),
        theirs,
        atol=1e-5,
    )
