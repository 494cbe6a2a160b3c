"""Loud errors for code written for keras_hub's or Keras's layers.

Our layers mean the same things as keras_hub's `TransformerEncoder` /
`TransformerDecoder` / `SinePositionEncoding` and Keras's
`MultiHeadAttention` / `GroupQueryAttention` under partly different names
and argument orders. Instead of "Unrecognized keyword arguments", an
argument of theirs that we name differently (or do not have) raises a
`TypeError` that names ours; and sizes after `num_heads` are keyword-only,
so that keras_hub's `TransformerEncoder(intermediate_dim, num_heads)` or
Keras's `GroupQueryAttention(head_dim, num_query_heads, ...)` order cannot
silently build another model.
"""

# Constructor arguments of keras_hub's and Keras's layers -> what we take.
CONSTRUCTOR_HINTS = {
    "normalize_first": "`norm_first` (same meaning: True is pre-LN)",
    "output_shape": "`output_dim`, an int: the width of the output",
    "num_query_heads": "`num_heads`",
    "head_dim": "`key_dim` (and `value_dim`)",
    "attention_axes": (
        "no equivalent: attention runs over axis 1 of (batch, length, width) "
        "inputs"
    ),
}
# Call arguments of their layers -> what we take.
CALL_HINTS = {
    "use_causal_mask": (
        "the constructor argument `use_causal_mask=True` of "
        "MultiHeadAttention and MultiHeadSelfAttention; "
        "TransformerDecoderBlock is always causal"
    ),
    "encoder_attention_mask": (
        "`encoder_padding_mask`, a (batch, source_length) mask: cross-"
        "attention takes no (batch, target_length, source_length) mask"
    ),
    "cross_attention_cache_update_index": (
        "nothing: the cross-attention cache holds the encoder's keys and "
        "values (`compute_cross_attention_cache`) and is never updated"
    ),
}


def check_positional(cls, args, keyword_only):
    """Raises when sizes after `num_heads` come by position.

    Args:
        cls: the layer class being constructed.
        args: the positional constructor arguments.
        keyword_only: names of the arguments that must come by keyword,
            for the message.
    """
    if len(args) > 1:
        raise TypeError(
            f"{cls.__name__} takes only `num_heads` by position: pass "
            f"{', '.join(f'`{name}`' for name in keyword_only)} by keyword "
            "(keras_hub's TransformerEncoder/TransformerDecoder take "
            "(intermediate_dim, num_heads) and Keras's GroupQueryAttention "
            "(head_dim, num_query_heads, num_key_value_heads) in other "
            f"orders). Received: positional arguments {args}"
        )


def check_foreign_arguments(layer, kwargs, hints):
    """Raises a `TypeError` naming our argument for one of theirs."""
    for name, value in kwargs.items():
        if name in hints:
            raise TypeError(
                f"{type(layer).__name__} has no argument `{name}`; use "
                f"{hints[name]}. Received: {name}={value!r}"
            )
