"""Projections into and out of heads, and the key/value cache of decoding.

The attention layers own their projections as `EinsumDense` sub-layers
(that is their weight layout and what a `.keras` file stores), but apply
them here as one 2D matrix multiplication each: TensorFlow runs the
`btd,dnh->btnh` einsum as a broadcast batched matmul that profiles about
1.5x slower on CPU than the `MatMul` a reshape of the kernel allows.
Notation: b batch, t sequence length, d width, n heads, h head width.
"""

import keras
from keras import ops

from keras_mha._validation import check_index


def _is_quantized(layer):
    # A quantized kernel only works through the layer's own call.
    return getattr(layer, "quantization_mode", None) is not None


def _dense(x, kernel, bias=None):
    """`x @ kernel + bias` in the dtype of `x`, with a 2D kernel."""
    if keras.backend.backend() == "jax" and len(x.shape) > 2:
        # XLA's CPU gradients of a (b, t, d) @ (d, f) product profile
        # about 1.15x slower than those of the same product on 2D tokens.
        shape = ops.shape(x)
        y = _dense(ops.reshape(x, (-1, shape[-1])), kernel, bias)
        return ops.reshape(y, (*shape[:-1], kernel.shape[-1]))
    y = ops.matmul(x, ops.cast(kernel, x.dtype))
    if bias is not None:
        y = y + ops.cast(ops.reshape(bias, (-1,)), x.dtype)
    return y


def project_heads(layer, x):
    """Applies a `btd,dnh->btnh` `EinsumDense`; returns `(b, n, t, h)`."""
    if _is_quantized(layer):
        heads = layer(x)
    else:
        width, num_heads, head_dim = layer.kernel.shape
        kernel = ops.reshape(layer.kernel, (width, num_heads * head_dim))
        heads = _dense(x, kernel, layer.bias)
        # The batch size, not -1: a -1 is undefined when a length is 0.
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        heads = ops.reshape(heads, (batch, length, num_heads, head_dim))
    return ops.transpose(heads, (0, 2, 1, 3))


def project_fused_qkv(layer, x, key_dim, value_dim, group=1):
    """Applies the fused `(d, n_kv, g * hk + hk + hv)` projection of
    self-attention, `g = group` query heads per key/value head.

    Returns `q, k, v` of shapes `(b, n, t, hk)`, `(b, n_kv, t, hk)` and
    `(b, n_kv, t, hv)`, `n = g * n_kv`. Key/value head `i` owns the kernel
    slice `[:, i, :]`: its `g` query heads `g * i ... g * i + g - 1`, its
    key and its value (with `g = 1`, head `i`'s q, k and v). When `g = 1`
    and `hk == hv` the kernel's columns are first regrouped as `(3, n, h)`
    (a reorder of the small kernel, not of the activations), so that one
    transpose of the activations puts q, k and v heads-first at once.
    """
    width, num_heads, fused_dim = layer.kernel.shape
    batch, length = ops.shape(x)[0], ops.shape(x)[1]
    if _is_quantized(layer) or key_dim != value_dim or group > 1:
        if _is_quantized(layer):
            qkv = layer(x)
        else:
            kernel = ops.reshape(layer.kernel, (width, num_heads * fused_dim))
            qkv = _dense(x, kernel, layer.bias)
            qkv = ops.reshape(qkv, (batch, length, num_heads, fused_dim))
        qkv = ops.transpose(qkv, (0, 2, 1, 3))  # (b, n_kv, t, g*hk + hk + hv)
        q, k, v = ops.split(qkv, [group * key_dim, (group + 1) * key_dim], -1)
        if group > 1:
            # (b, n_kv, t, g * hk) -> (b, n_kv * g, t, hk)
            q = ops.reshape(q, (batch, num_heads, length, group, key_dim))
            q = ops.transpose(q, (0, 1, 3, 2, 4))
            q = ops.reshape(q, (batch, num_heads * group, length, key_dim))
        return q, k, v
    kernel = ops.reshape(layer.kernel, (width, num_heads, 3, key_dim))
    kernel = ops.transpose(kernel, (0, 2, 1, 3))  # (d, 3, n, h)
    kernel = ops.reshape(kernel, (width, 3 * num_heads * key_dim))
    bias = layer.bias
    if bias is not None:
        bias = ops.reshape(bias, (num_heads, 3, key_dim))
        bias = ops.transpose(bias, (1, 0, 2))  # (3, n, h)
    qkv = _dense(x, kernel, bias)
    qkv = ops.reshape(qkv, (batch, length, 3, num_heads, key_dim))
    # Unstacked, not indexed: the gradient of an index is a zero-padded
    # copy of the whole tensor, one per index; that of unstack is one stack.
    if keras.backend.backend() == "tensorflow":
        qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))  # (3, b, n, t, h)
        return ops.unstack(qkv, num=3, axis=0)
    # JAX and PyTorch: unstacked sequence-first, then each transposed, so
    # the backward pass stacks the gradients straight into the matmul's
    # (b, t, 3, n, h) layout instead of copying a transposed stack back.
    qkv = ops.unstack(qkv, num=3, axis=2)  # 3 x (b, t, n, h)
    return [ops.transpose(x, (0, 2, 1, 3)) for x in qkv]


def merge_heads(layer, heads):
    """Applies the `btnh,nhd->btd` output projection to `(b, t, n, hv)`."""
    if _is_quantized(layer):
        return layer(heads)
    num_heads, head_dim, width = layer.kernel.shape
    kernel = ops.reshape(layer.kernel, (num_heads * head_dim, width))
    batch, length = ops.shape(heads)[0], ops.shape(heads)[1]
    heads = ops.reshape(heads, (batch, length, num_heads * head_dim))
    return _dense(heads, kernel, layer.bias)


def check_cacheable(key_dim, value_dim):
    """Keys and values share one cache tensor, so their widths must match."""
    if key_dim != value_dim:
        raise ValueError(
            "A key/value cache needs key_dim == value_dim: keys and values "
            f"share one cache tensor. Received: key_dim={key_dim}, "
            f"value_dim={value_dim}"
        )


def check_cache(name, cache, num_heads, key_dim, value_dim, batch_size=None):
    """Checks a `(b, 2, n, s, h)` key/value cache against the layer.

    `batch_size` is the static batch size of the call's inputs, or `None`.
    """
    check_cacheable(key_dim, value_dim)
    head_dim = key_dim
    shape = tuple(cache.shape)
    if (
        len(shape) != 5
        or shape[1] != 2
        or shape[2] != num_heads
        or (shape[4] != head_dim)
    ):
        raise ValueError(
            f"`{name}` expected shape (batch, 2, {num_heads}, length, "
            f"{head_dim}): keys and values, heads first. "
            f"Received: {name}.shape={shape}"
        )
    dtype = keras.backend.standardize_dtype(cache.dtype)
    if not keras.backend.is_float_dtype(dtype):
        raise TypeError(
            f"`{name}` expected a floating-point tensor (from "
            f"`get_initial_cache` or `compute_cache`). "
            f"Received: {name}.dtype={dtype}"
        )
    if None not in (batch_size, shape[0]) and batch_size != shape[0]:
        raise ValueError(
            f"`{name}` expected the batch size of the inputs, "
            f"{batch_size}: one cache row per sequence. "
            f"Received: {name}.shape={shape} for inputs of batch size "
            f"{batch_size}"
        )


def check_cache_update_index(
    name, index, new_length, cache_length, cache_name="cache"
):
    """Checks that positions `[index, index + new_length)` fit the cache.

    Python ints and eager tensors are checked here; a traced index (inside
    a compiled decoding loop) is not: there TensorFlow's and JAX's
    dynamic-update-slice clamp an out-of-range start so that the write
    lands on the cache's last positions, and the outputs are wrong.
    """
    index = check_index(name, index)
    if index is None or new_length is None or cache_length is None:
        return
    if index + new_length > cache_length:
        raise ValueError(
            f"`{name}` plus the {new_length} new position(s) must not pass "
            f"the end of `{cache_name}`, which holds {cache_length}: expected "
            f"0 <= {name} <= {cache_length - new_length}. "
            f"Received: {name}={index}"
        )


def update_cache(cache, cache_update_index, key, value):
    """Writes `key`, `value` `(b, n, t, h)` into `cache` at the index.

    Returns the cached keys and values `(b, n, s, h)` and the new cache.
    With `cache_update_index=None` the cache is used as it is. The cache
    keeps its static shape (a fixed-size buffer updated with
    `ops.slice_update`), so a compiled decoding loop compiles once.
    """
    if cache_update_index is not None:
        update = ops.cast(ops.stack([key, value], axis=1), cache.dtype)
        start = [0, 0, 0, cache_update_index, 0]
        cache = ops.slice_update(cache, start, update)
    return cache[:, 0], cache[:, 1], cache


def written_positions(key_mask, cache_length, end):
    """`key_mask` (or all True) and'ed with "cache position < `end`"."""
    written = (ops.arange(cache_length) < end)[None]  # (1, s)
    if key_mask is None:
        return written
    return ops.logical_and(ops.cast(key_mask, "bool"), written)
