"""Scaled dot-product attention and mask merging: the one copy of the math.

Every layer of the package projects its inputs into heads and then calls
`dot_product_attention`; every padding, attention and causal mask goes through
`merge_masks`. Notation: b batch, t query length, s key length, n heads,
h head width.
"""

import keras
from keras import ops

# Added to masked logits before the softmax. Logits are float32 here, so
# exp(-1e9 - max) is exactly 0 and a masked key gets exactly zero weight.
_MASKED_LOGIT = -1e9


def merge_masks(
    query_length,
    key_length,
    query_mask=None,
    key_mask=None,
    attention_mask=None,
    use_causal_mask=False,
    causal_offset=0,
):
    """Combines padding, attention and causal masks into one boolean mask.

    Args:
        query_length: int or scalar tensor, `t`.
        key_length: int or scalar tensor, `s`.
        query_mask: `(b, t)` padding mask of the queries, or `None`.
        key_mask: `(b, s)` padding mask of the keys and values, or `None`.
        attention_mask: `(b, t, s)` or `(b, n, t, s)` mask, or `None`.
        use_causal_mask: whether query `i` may only see keys `j <= i`.
        causal_offset: position of the first query among the keys, for
            step-by-step decoding with a cache.

    Returns:
        A boolean tensor broadcastable to `(b, n, t, s)`, or `None` when no
        mask applies. True means "may attend".
    """
    mask = None

    def _and(mask, other):
        return other if mask is None else ops.logical_and(mask, other)

    if key_mask is not None:
        mask = ops.cast(key_mask, "bool")[:, None, None, :]  # (b, 1, 1, s)
    if query_mask is not None:
        mask = _and(mask, ops.cast(query_mask, "bool")[:, None, :, None])
    if attention_mask is not None:
        attention_mask = ops.cast(attention_mask, "bool")
        if len(attention_mask.shape) == 3:
            attention_mask = attention_mask[:, None]  # (b, 1, t, s)
        mask = _and(mask, attention_mask)
    if use_causal_mask:
        rows = ops.arange(query_length) + causal_offset
        cols = ops.arange(key_length)
        mask = _and(mask, (rows[:, None] >= cols[None, :])[None, None])
    return mask


def _needs_explicit_path(
    query, value, dropout, training, return_scores, flash_attention
):
    """Whether this call needs the explicit softmax instead of the fused op."""
    if return_scores or flash_attention is False:
        return True
    if dropout > 0 and training:
        return True  # The fused op has no attention dropout.
    if query.shape[-1] != value.shape[-1]:
        return True  # The fused op needs one head width for keys and values.
    # TensorFlow's fused op computes the logits in float16, where q.k overflows
    # for large activations; the explicit path computes them in float32.
    return (
        keras.backend.backend() == "tensorflow"
        and keras.backend.standardize_dtype(query.dtype) == "float16"
    )


def dot_product_attention(
    query,
    key,
    value,
    mask=None,
    use_causal_mask=False,
    dropout=0.0,
    training=False,
    seed_generator=None,
    return_scores=False,
    flash_attention=None,
):
    """Multi-head scaled dot-product attention, softmax(q k^T / sqrt(h)) v.

    Takes the backend's fused kernel (`keras.ops.dot_product_attention`, flash
    attention where available) unless this call needs the scores, attention
    dropout, or different key and value widths. Both paths zero the output of
    a query that may attend to no key, instead of averaging padding.

    Args:
        query: `(b, t, n, h)` projected queries.
        key: `(b, s, n, h)` projected keys.
        value: `(b, s, n, hv)` projected values.
        mask: boolean mask broadcastable to `(b, n, t, s)` from
            `merge_masks`, or `None`.
        use_causal_mask: whether query `i` may only see keys `j <= i`; only
            used when `mask` is `None` (otherwise merge it into `mask`).
        dropout: dropout rate on the attention probabilities.
        training: whether dropout is active.
        seed_generator: `keras.random.SeedGenerator` for the dropout.
        return_scores: whether to also return the probabilities.
        flash_attention: `None` lets the backend choose, `False` forces the
            explicit path, `True` asks the backend for a flash kernel.

    Returns:
        `(b, t, n, hv)` outputs and `(b, n, t, s)` probabilities (or `None`
        when `return_scores` is false).
    """
    if use_causal_mask and mask is not None:
        raise ValueError(
            "Merge the causal mask into `mask` with `merge_masks` when both "
            "are used."
        )
    if not _needs_explicit_path(
        query, value, dropout, training, return_scores, flash_attention
    ):
        outputs = ops.dot_product_attention(
            query,
            key,
            value,
            mask=mask,
            is_causal=use_causal_mask,
            flash_attention=flash_attention,
        )
        return _zero_unattended_queries(outputs, mask), None

    if use_causal_mask:
        mask = merge_masks(
            ops.shape(query)[1], ops.shape(key)[1], use_causal_mask=True
        )
    head_dim = query.shape[-1]
    compute_dtype = query.dtype
    if keras.backend.standardize_dtype(compute_dtype) == "float16":
        # float16 q.k overflows above 65504; bfloat16 has float32's range.
        query, key = ops.cast(query, "float32"), ops.cast(key, "float32")
    query = ops.multiply(query, ops.cast(head_dim**-0.5, query.dtype))
    logits = ops.einsum("btnh,bsnh->bnts", query, key)
    logits = ops.cast(logits, "float32")
    if mask is not None:
        logits = ops.where(mask, logits, _MASKED_LOGIT)
    scores = ops.softmax(logits, axis=-1)
    if mask is not None:
        # Exact zeros at masked keys, and all zeros in fully masked rows.
        scores = ops.where(mask, scores, 0.0)
    scores = ops.cast(scores, compute_dtype)
    probs = scores
    if dropout > 0 and training:
        probs = keras.random.dropout(probs, dropout, seed=seed_generator)
    outputs = ops.einsum("bnts,bsnh->btnh", probs, value)
    return outputs, (scores if return_scores else None)


def _zero_unattended_queries(outputs, mask):
    """Zeros the `(b, t, n, h)` outputs of queries whose mask row is empty."""
    if mask is None:
        return outputs
    attends = ops.any(mask, axis=-1)  # (b, n|1, t|1)
    attends = ops.transpose(attends, (0, 2, 1))[..., None]  # (b, t|1, n|1, 1)
    return ops.multiply(outputs, ops.cast(attends, outputs.dtype))
