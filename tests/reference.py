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


# The attention options and the blocks, from the equations. Weights are
# dicts of NumPy arrays (`attention_weights`, `block_weights`); a missing
# bias or norm is `None`. Kernels are (d, n, h), heads second.


def rms_norm(x, scale, epsilon):
    """x / sqrt(mean(x^2) + eps) * scale over the last axis."""
    return x / np.sqrt(np.mean(x**2, -1, keepdims=True) + epsilon) * scale


def layer_norm(x, gamma, beta, epsilon):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def rotary(x, start=0, max_wavelength=10000.0):
    """RoPE of `(b, t, n, h)` with the halves rotated (GPT-NeoX layout).

    Position `p = start + t`, frequency `w_k = max_wavelength ** (-2k/h)`;
    `x1, x2` (the halves) become `x1 cos - x2 sin`, `x2 cos + x1 sin`.
    """
    h = x.shape[-1]
    positions = np.arange(x.shape[1]) + start
    freq = max_wavelength ** (-np.arange(0, h, 2) / h)  # (h / 2,)
    angle = positions[:, None] * freq[None]  # (t, h / 2)
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]  # (t, 1, h/2)
    x1, x2 = x[..., : h // 2], x[..., h // 2 :]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


def alibi_slopes(num_heads):
    """Press et al. (2022): a geometric sequence from 2^(-8/n), with the
    odd terms of the next power of two for other head counts."""
    power = 2 ** int(np.floor(np.log2(num_heads)))
    slopes = [2 ** (-8 * (i + 1) / power) for i in range(power)]
    if power < num_heads:
        extra = [2 ** (-8 * (i + 1) / (2 * power)) for i in range(2 * power)]
        slopes += extra[0::2][: num_heads - power]
    return np.array(slopes)


def _bias(layer, name):
    bias = getattr(layer, name).bias
    return None if bias is None else keras.ops.convert_to_numpy(bias)


def attention_weights(layer):
    """The weights of one of our attention layers as a dict of arrays."""
    np_ = keras.ops.convert_to_numpy
    n, hk = layer.num_heads, layer._key_dim
    w = {}
    if hasattr(layer, "qkv_dense"):
        kernel = np_(layer.qkv_dense.kernel)
        bias = _bias(layer, "qkv_dense")
        d, n_kv, _ = kernel.shape
        g = n // n_kv
        parts = {
            "q": slice(0, g * hk),
            "k": slice(g * hk, (g + 1) * hk),
            "v": slice((g + 1) * hk, None),
        }
        for name, cols in parts.items():
            w[f"w{name}"] = kernel[..., cols]
            w[f"b{name}"] = None if bias is None else bias[..., cols]
        w["wq"] = w["wq"].reshape(d, n, hk)
        if bias is not None:
            w["bq"] = w["bq"].reshape(n, hk)
    else:
        for name, dense in (("q", "query"), ("k", "key"), ("v", "value")):
            w[f"w{name}"] = np_(getattr(layer, f"{dense}_dense").kernel)
            w[f"b{name}"] = _bias(layer, f"{dense}_dense")
    w["wg"] = w["bg"] = None
    if layer.use_gate:
        w["wg"], w["bg"] = (
            np_(layer.gate_dense.kernel),
            _bias(layer, "gate_dense"),
        )
    w["wo"], w["bo"] = (
        np_(layer.output_dense.kernel),
        _bias(layer, "output_dense"),
    )
    w["q_scale"] = w["k_scale"] = None
    if layer.use_query_key_norm:
        w["q_scale"] = np_(layer.query_norm.scale)
        w["k_scale"] = np_(layer.key_norm.scale)
    return w


def _project(x, kernel, bias):
    y = np.einsum("btd,dnh->btnh", x, kernel)
    return y if bias is None else y + bias


def attention_with_options(
    layer,
    query,
    value,
    query_mask=None,
    key_mask=None,
    start=0,
    bias=None,
):
    """The outputs of `layer` (any options) on `query` over `value`.

    The queries sit at positions `start ...` and the keys at `0 ...`
    (cached decoding); `bias` is an extra `(b|1, n|1, t, s)` logit bias.
    """
    w = attention_weights(layer)
    q = _project(query, w["wq"], w["bq"])  # (b, t, n, h)
    k = _project(value, w["wk"], w["bk"])  # (b, s, n_kv, h)
    v = _project(value, w["wv"], w["bv"])
    eps = layer.query_key_norm_epsilon
    if w["q_scale"] is not None:
        q, k = rms_norm(q, w["q_scale"], eps), rms_norm(k, w["k_scale"], eps)
    if layer.rotary_embedding is not None:
        r = int(q.shape[-1] * layer.rotary_fraction)
        wavelength = layer.rotary_embedding.max_wavelength
        q_rot = rotary(q[..., :r], start, wavelength)
        k_rot = rotary(k[..., :r], 0, wavelength)
        q = np.concatenate([q_rot, q[..., r:]], -1)
        k = np.concatenate([k_rot, k[..., r:]], -1)
    group = q.shape[2] // k.shape[2]
    k, v = np.repeat(k, group, axis=2), np.repeat(v, group, axis=2)
    scale = layer.attention_scale or q.shape[-1] ** -0.5
    logits = np.einsum("btnh,bsnh->bnts", q, k) * scale
    cap = layer.attention_logit_soft_cap
    if cap is not None:
        logits = cap * np.tanh(logits / cap)
    if bias is not None:
        logits = logits + bias
    i = np.arange(query.shape[1])[:, None] + start
    j = np.arange(value.shape[1])[None]
    if layer.use_alibi:
        slopes = alibi_slopes(q.shape[2]) * layer.alibi_slope_scale
        logits = logits + slopes[:, None, None] * (j - i)
    b, t, s = query.shape[0], query.shape[1], value.shape[1]
    mask = np.ones((b, t, s), bool)
    if query_mask is not None:
        mask &= query_mask[:, :, None]
    if key_mask is not None:
        mask &= key_mask[:, None, :]
    if layer.use_causal_mask:
        mask = mask & (j <= i)
    if layer.sliding_window is not None:
        mask = mask & (np.abs(i - j) < layer.sliding_window)
    mask = np.broadcast_to(mask[:, None], logits.shape)
    with np.errstate(invalid="ignore"):  # Rows with no visible key.
        probs = softmax(np.where(mask, logits, -np.inf))
    probs = np.where(mask, np.nan_to_num(probs), 0.0)
    heads = np.einsum("bnts,bsnh->btnh", probs, v)
    if w["wg"] is not None:
        gate = _project(query, w["wg"], w["bg"])
        heads = heads / (1 + np.exp(-gate))
    outputs = np.einsum("btnh,nhd->btd", heads, w["wo"])
    return outputs if w["bo"] is None else outputs + w["bo"]


def _norm(block, norm, x):
    np_ = keras.ops.convert_to_numpy
    eps = block.layer_norm_epsilon
    if block.normalization == "rms_norm":
        return rms_norm(x, np_(norm.scale), eps)
    return layer_norm(x, np_(norm.gamma), np_(norm.beta), eps)


def _dense(dense, x, activation=None):
    np_ = keras.ops.convert_to_numpy
    y = x @ np_(dense.kernel)
    if dense.bias is not None:
        y = y + np_(dense.bias)
    return y if activation is None else activation(y)


ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))),
    "gelu_approximate": lambda x: (
        0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    ),
}


def _erf(x):
    import math

    return np.vectorize(math.erf)(x)


def feedforward(block, x, activation):
    """down(act(up(x))), or down(act(gate(x)) * up(x)) when gated."""
    act = ACTIVATIONS[activation]
    if block.use_gated_feedforward:
        hidden = _dense(block.ffn_gate, x, act) * _dense(
            block.ffn_intermediate, x
        )
    else:
        hidden = _dense(block.ffn_intermediate, x, act)
    return _dense(block.ffn_output, hidden)


def transformer_block(block, x, activation, source=None, padding_mask=None):
    """A block's outputs from its options and weights (dropout off).

    `activation` names the block's activation in `ACTIVATIONS`; `source`
    is the encoder sequence of a decoder block with cross-attention.
    """

    def self_attention(y):
        return attention_with_options(
            block.self_attention, y, y, padding_mask, padding_mask
        )

    def cross_attention(y):
        return attention_with_options(
            block.cross_attention, y, source, padding_mask
        )

    sublayers = [("self_attention", self_attention)]
    if source is not None:
        sublayers.append(("cross_attention", cross_attention))
    sublayers.append(("ffn", lambda y: feedforward(block, y, activation)))
    total = x
    for prefix, fn in sublayers:
        norm = getattr(block, f"{prefix}_norm")
        if norm is None:  # shared_input_norm
            norm = block.self_attention_norm
        y = fn(_norm(block, norm, x) if block.norm_first else x)
        post_norm = getattr(block, f"{prefix}_post_norm")
        if post_norm is not None:
            y = _norm(block, post_norm, y)
        if block.parallel_residual:
            total = total + y
        elif block.norm_first:
            x = x + y
        else:
            x = _norm(block, norm, x + y)
    return total if block.parallel_residual else x
