"""NumPy reference of multi-head attention, written from the equations.

b batch, t query length, s key length, d width, n heads, h head width.
"""

import keras
import numpy as np


def softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def attention(query, value, wq, bq, wk, bk, wv, bv, wo, bo, mask=None):
    """Per-head projections, softmax(q k^T / sqrt(h)) v, concat, output.

    `mask` is boolean, broadcastable to `(b, t, s)`; a query row with no
    visible key gets zero probabilities. Returns outputs `(b, t, d_out)` and
    probabilities `(b, n, t, s)`.
    """
    q = np.einsum("btd,dnh->btnh", query, wq) + bq
    k = np.einsum("bsd,dnh->bsnh", value, wk) + bk
    v = np.einsum("bsd,dnh->bsnh", value, wv) + bv
    logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1])
    if mask is None:
        probs = softmax(logits)
    else:
        mask = np.broadcast_to(mask[:, None], logits.shape)
        probs = softmax(np.where(mask, logits, -np.inf))
        probs = np.where(mask, np.nan_to_num(probs), 0.0)
    heads = np.einsum("bnts,bsnh->btnh", probs, v)
    # Concatenating the heads and projecting is one contraction over (n, h).
    outputs = np.einsum("btnh,nhd->btd", heads, wo) + bo
    return outputs, probs


def weights_of(layer):
    """The (wq, bq, wk, bk, wv, bv, wo, bo) of one of our attention layers."""
    np_ = keras.ops.convert_to_numpy
    if hasattr(layer, "qkv_dense"):
        kernel, bias = np_(layer.qkv_dense.kernel), np_(layer.qkv_dense.bias)
        hk = layer._key_dim
        split = lambda x: (x[..., :hk], x[..., hk : 2 * hk], x[..., 2 * hk :])
        (wq, wk, wv), (bq, bk, bv) = split(kernel), split(bias)
    else:
        wq, bq = np_(layer.query_dense.kernel), np_(layer.query_dense.bias)
        wk, bk = np_(layer.key_dense.kernel), np_(layer.key_dense.bias)
        wv, bv = np_(layer.value_dense.kernel), np_(layer.value_dense.bias)
    wo, bo = np_(layer.output_dense.kernel), np_(layer.output_dense.bias)
    return wq, bq, wk, bk, wv, bv, wo, bo
