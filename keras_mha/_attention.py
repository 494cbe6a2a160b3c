"""Scaled dot-product attention and mask merging: the one copy of the math.

Every layer of the package projects its inputs into heads and then calls
`attend`; every padding, attention and causal mask goes through
`merge_masks`. Notation: b batch, t query length, s key length, n heads,
h head width.

The heads come first, `(b, n, t, h)`, so that q k^T and p v are plain
batched matrix products with no transposes around them. Long sequences run
in chunks with a running softmax (`chunked_attention`), so memory grows
with the sequence length rather than its square. What turns `q . k` into
logits (the scale, the soft cap, a bias, ALiBi) is one object, `_Scores`,
that every path applies, so an option behaves the same on the fused,
explicit and chunked paths; an option left off adds no op.
"""

import math
from typing import Any
from typing import NamedTuple

import keras
from keras import ops

# Added to masked logits before the softmax. Logits are float32 here, so
# exp(-1e9 - max) is exactly 0 and a masked key gets exactly zero weight.
_MASKED_LOGIT = -1e9

# Without a fused kernel, a head whose query_length * key_length logits
# exceed this runs chunked: 2048 x 2048 float32 logits are 16 MiB a head.
AUTO_CHUNK_THRESHOLD = 2048 * 2048
AUTO_CHUNK_SIZE = 1024


class Masks(NamedTuple):
    """What may attend to what: the mask arguments of `attend`.

    Attributes:
        query_mask: `(b, t)` padding mask of the queries, or `None`.
        key_mask: `(b, s)` padding mask of the keys, or `None`.
        attention_mask: mask of rank 2 to 4 broadcastable to
            `(b, n, t, s)` once axes are inserted at -3, or `None`.
        use_causal_mask: whether query `i` may only see keys
            `j <= i + causal_offset`.
        causal_offset: int or scalar tensor, the position of the first
            query among the keys (cached decoding); also where ALiBi
            counts the queries' positions from.
        sliding_window: int or `None`, see `merge_masks`.
    """

    query_mask: Any = None
    key_mask: Any = None
    attention_mask: Any = None
    use_causal_mask: bool = False
    causal_offset: Any = 0
    sliding_window: Any = None


def alibi_slopes(num_heads, max_bias=8):
    """The ALiBi slope of each head (Press et al., 2022).

    For `n` a power of two, `2 ** (-max_bias * (i + 1) / n)`; otherwise
    those of the power of two below `n`, then every other slope of twice
    that power, as in the paper's code, BLOOM and keras_hub's `AlibiBias`.
    """

    def power_of_two(n):
        start = 2 ** (-max_bias / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        return power_of_two(num_heads)
    closest = 2 ** math.floor(math.log2(num_heads))
    extra = alibi_slopes(2 * closest, max_bias)[0::2][: num_heads - closest]
    return power_of_two(closest) + extra


def merge_masks(
    query_length,
    key_length,
    query_mask=None,
    key_mask=None,
    attention_mask=None,
    use_causal_mask=False,
    causal_offset=0,
    sliding_window=None,
):
    """Combines padding, attention and causal masks into one boolean mask.

    Args:
        query_length: int or scalar tensor, `t`.
        key_length: int or scalar tensor, `s`.
        query_mask: `(b, t)` padding mask of the queries, or `None`.
        key_mask: `(b, s)` padding mask of the keys and values, or `None`.
        attention_mask: mask of rank 2 to 4 that broadcasts to
            `(b, n, t, s)` once axes are inserted at -3 (see
            `check_attention_mask`), or `None`.
        use_causal_mask: whether query `i` may only see keys `j <= i`.
        causal_offset: position of the first query among the keys, for
            step-by-step decoding with a cache.
        sliding_window: int or `None`; query `i` may only see keys with
            `|i - j| < sliding_window` (a band; with the causal mask, the
            last `sliding_window` positions, as in Mistral).

    Returns:
        A boolean tensor broadcastable to `(b, n, t, s)`, or `None` when no
        mask applies. True means "may attend".
    """
    mask = None

    def _and(mask, other):
        return other if mask is None else ops.logical_and(mask, other)

    # New axes by `expand_dims`, not `[:, None]` indexing: TensorFlow
    # traces that indexing as a StridedSlice with a new-axis mask, which
    # LiteRT has no builtin op for.
    if key_mask is not None:
        key_mask = ops.cast(key_mask, "bool")
        mask = ops.expand_dims(key_mask, (1, 2))  # (b, 1, 1, s)
    if query_mask is not None:
        query_mask = ops.cast(query_mask, "bool")
        mask = _and(mask, ops.expand_dims(query_mask, (1, 3)))  # (b,1,t,1)
    if attention_mask is not None:
        attention_mask = ops.cast(attention_mask, "bool")
        # As in keras.layers.MultiHeadAttention: head axes are inserted at
        # -3 up to rank 4, so (t, s) -> (1, 1, t, s), (b, t, s) -> (b, 1, t, s).
        for _ in range(4 - len(attention_mask.shape)):
            attention_mask = ops.expand_dims(attention_mask, -3)
        mask = _and(mask, attention_mask)
    if use_causal_mask or sliding_window is not None:
        rows = ops.expand_dims(ops.arange(query_length) + causal_offset, 1)
        cols = ops.expand_dims(ops.arange(key_length), 0)
    if use_causal_mask:
        causal = rows >= cols  # (t, s)
        mask = _and(mask, ops.expand_dims(causal, (0, 1)))  # (1, 1, t, s)
    if sliding_window is not None:
        band = ops.abs(rows - cols) < sliding_window  # (t, s)
        mask = _and(mask, ops.expand_dims(band, (0, 1)))  # (1, 1, t, s)
    return mask


def _backend_has_fused_kernel():
    """Whether `keras.ops.dot_product_attention` is a fused kernel here.

    On TensorFlow it is two einsums around a softmax: the einsums transpose
    q, k, v and the output on every call and their gradients are einsums
    too, which profiles slower on CPU than the heads-first matmuls of
    `_explicit_attention`. PyTorch has fused kernels on every device. JAX
    has them on a GPU (cuDNN flash attention); on a CPU its op is XLA's
    einsums around a softmax, which profile slower than the explicit path.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend() == "gpu"
    return backend == "torch"


def attention_chunk_size_for(query_length, key_length, chunk_size=None):
    """The chunk size the chunked path uses for these lengths, or `None`.

    Args:
        query_length: static query length, or `None` when unknown.
        key_length: static key length, or `None` when unknown.
        chunk_size: the layer's `attention_chunk_size`. `None` chunks
            automatically on backends without a fused kernel once a head's
            `query_length * key_length` logits exceed
            `AUTO_CHUNK_THRESHOLD`.

    Returns:
        The chunk size, or `None` for the one-block paths. Unknown lengths
        (a trace with a `None` sequence axis, or JAX's symbolic
        dimensions when Keras infers output shapes) never chunk: the chunks
        are Python loops over static slices.
    """
    if not (isinstance(query_length, int) and isinstance(key_length, int)):
        return None
    if chunk_size is None:
        if _backend_has_fused_kernel():
            return None
        if query_length * key_length <= AUTO_CHUNK_THRESHOLD:
            return None
        chunk_size = AUTO_CHUNK_SIZE
    if query_length <= chunk_size and key_length <= chunk_size:
        return None
    return chunk_size


def attend(
    query,
    key,
    value,
    query_mask=None,
    key_mask=None,
    attention_mask=None,
    use_causal_mask=False,
    causal_offset=0,
    dropout=0.0,
    training=False,
    seed_generator=None,
    return_scores=False,
    flash_attention=None,
    chunk_size=None,
    sliding_window=None,
    scale=None,
    soft_cap=None,
    bias=None,
    alibi_slopes=None,
):
    """Multi-head scaled dot-product attention, softmax(q k^T / sqrt(h)) v.

    Takes heads-first inputs and runs one of three paths with the same
    results: the backend's fused kernel (`keras.ops.dot_product_attention`,
    flash attention where available) on JAX and PyTorch; chunked attention
    with a running softmax (`chunked_attention`) for long sequences; and
    the explicit softmax otherwise, which is also the path that returns the
    scores or applies attention dropout. Every path gives a query that may
    attend to no key a zero output instead of an average of padding.

    Args:
        query: `(b, n, t, h)` projected queries.
        key: `(b, n, s, h)` projected keys.
        value: `(b, n, s, hv)` projected values.
        query_mask: `(b, t)` padding mask of the queries, or `None`.
        key_mask: `(b, s)` padding mask of the keys, or `None`.
        attention_mask: mask of rank 2 to 4 that broadcasts to
            `(b, n, t, s)` once axes are inserted at -3, or `None`.
        use_causal_mask: whether query `i` may only see keys
            `j <= i + causal_offset`.
        causal_offset: int or scalar tensor, the position of the first
            query among the keys (cached decoding).
        dropout: dropout rate on the attention probabilities.
        training: whether dropout is active.
        seed_generator: `keras.random.SeedGenerator` for the dropout.
        return_scores: whether to also return the probabilities.
        flash_attention: `None` lets the backend choose, `False` never uses
            the fused kernel, `True` asks the backend for a flash kernel.
        chunk_size: `attention_chunk_size` of the layer; see
            `attention_chunk_size_for`.
        sliding_window: int or `None`, see `merge_masks`.
        scale: float multiplying `q . k`, or `None` for `h ** -0.5`.
        soft_cap: float or `None`: logits become
            `soft_cap * tanh(logits / soft_cap)` (Gemma 2), after the
            scale and before any bias. The backends' fused kernels do not
            apply it (Keras 3.15 passes `attn_logits_soft_cap` to TPU
            kernels only), so soft-capped attention runs the explicit or
            chunked path.
        bias: float tensor broadcastable to `(b, n, t, s)` added to the
            logits (after the soft cap), or `None`.
        alibi_slopes: sequence of `n` floats or `None`: ALiBi adds
            `slope * (j - i)` to the logit of query position `i` (counted
            from `causal_offset`) and key position `j`, which gives the
            probabilities of BLOOM's and keras_hub's `AlibiBias` (they
            differ from it by a constant per row).

    Returns:
        `(b, t, n, hv)` outputs (ready for the output projection) and
        `(b, n, t, s)` probabilities, or `None` when `return_scores` is
        false.
    """
    needs_probs = return_scores or (dropout > 0 and training)
    scores = _Scores(scale, soft_cap, bias, alibi_slopes, causal_offset)
    chunk = attention_chunk_size_for(query.shape[2], key.shape[2], chunk_size)
    if chunk and not needs_probs and not flash_attention:
        outputs = chunked_attention(
            query,
            key,
            value,
            chunk,
            query_mask,
            key_mask,
            attention_mask,
            use_causal_mask,
            causal_offset,
            sliding_window,
            scores=scores,
        )
        return ops.transpose(outputs, (0, 2, 1, 3)), None
    masks = (query_mask, key_mask, attention_mask)
    fused = not needs_probs and _use_fused(
        query, value, flash_attention, soft_cap
    )
    # With the causal mask alone, the fused kernel builds it itself.
    causal_only = (
        use_causal_mask
        and sliding_window is None
        and all(m is None for m in masks)
        and isinstance(causal_offset, int)
        and causal_offset == 0
        and not (fused and scores.has_bias and _bias_replaces_mask())
    )
    mask = None
    if not (causal_only and fused):
        mask = merge_masks(
            ops.shape(query)[2],
            ops.shape(key)[2],
            *masks,
            use_causal_mask=use_causal_mask,
            causal_offset=causal_offset,
            sliding_window=sliding_window,
        )
    if fused:
        return _fused_attention(
            query, key, value, mask, causal_only, flash_attention, scores
        ), None
    return _explicit_attention(
        query,
        key,
        value,
        mask,
        dropout,
        training,
        seed_generator,
        return_scores,
        scores,
    )


class _Scores:
    """What turns `q . k` into logits: scale, soft cap and biases.

    The one copy of the score math, applied by every path: `logits(q, k)`
    on the explicit and chunked paths (for a block of queries from
    `query_start` and keys from `key_start`), `fused_bias` on the fused
    kernel. With every option off it is `(q * h ** -0.5) . k`, as before.
    """

    def __init__(self, scale, soft_cap, bias, alibi_slopes, causal_offset):
        self.scale = scale
        self.soft_cap = soft_cap
        self.bias = bias
        self.alibi_slopes = alibi_slopes
        self.causal_offset = causal_offset
        self.has_bias = bias is not None or alibi_slopes is not None

    def scale_query(self, query):
        scale = query.shape[-1] ** -0.5 if self.scale is None else self.scale
        return ops.multiply(query, ops.cast(scale, query.dtype))

    def logits(self, query, key, query_start=0, key_start=0, bias=None):
        """`(b, n, t, s)` float32 logits of queries from `scale_query`.

        `bias` is the block of `self.bias` for these queries and keys.
        """
        logits = _logits(query, key)
        if self.soft_cap is not None:
            cap = self.soft_cap
            logits = ops.multiply(ops.tanh(ops.divide(logits, cap)), cap)
        if bias is not None:
            logits = logits + ops.cast(bias, "float32")
        if self.alibi_slopes is not None:
            logits = logits + self._alibi(
                ops.shape(query)[2], ops.shape(key)[2], query_start, key_start
            )
        return logits

    def _alibi(self, query_length, key_length, query_start, key_start):
        # (t, 1) query and (1, s) key positions, the queries' from the
        # offset of cached decoding.
        rows = ops.arange(query_length) + self.causal_offset + query_start
        cols = ops.arange(key_length) + key_start
        distance = ops.cast(cols[None, :] - rows[:, None], "float32")
        slopes = ops.convert_to_tensor(self.alibi_slopes, "float32")
        return slopes[:, None, None] * distance[None]  # (n, t, s)

    def fused_bias(self, query, key):
        """The `(b|1, n|1, t, s)` bias of the fused kernel, or `None`."""
        if not self.has_bias:
            return None
        bias = 0.0 if self.bias is None else ops.cast(self.bias, "float32")
        if self.alibi_slopes is not None:
            alibi = self._alibi(ops.shape(query)[2], ops.shape(key)[2], 0, 0)
            bias = bias + alibi[None]
        return bias


def _bias_replaces_mask():
    # PyTorch's fused op takes a bias or a mask, never both: the mask is
    # folded into the bias.
    return keras.backend.backend() == "torch"


def _use_fused(query, value, flash_attention, soft_cap=None):
    # The fused op needs one head width for keys and values, and applies
    # no soft cap on GPUs and CPUs.
    if (
        flash_attention is False
        or query.shape[-1] != value.shape[-1]
        or soft_cap is not None
    ):
        return False
    # `None` follows keras.config.disable_flash_attention(), as Keras does
    # (the setting is `None` by default, `False` once disabled).
    enabled = keras.config.is_flash_attention_enabled()
    if flash_attention is None and enabled is False:
        return False
    return flash_attention is True or _backend_has_fused_kernel()


def _fused_attention(
    query, key, value, mask, is_causal, flash_attention, scores
):
    bias = scores.fused_bias(query, key)
    op_mask = mask
    if bias is not None:
        bias = ops.cast(bias, query.dtype)
        if mask is not None and _bias_replaces_mask():
            bias = ops.where(mask, bias, _large_negative(query.dtype))
            op_mask = None
    # (b, n, t, h) -> (b, t, n, h), the layout of the fused op.
    query, key, value = (
        ops.transpose(x, (0, 2, 1, 3)) for x in (query, key, value)
    )
    # Only the options in use, so the default call is the plain one.
    options = {"bias": bias, "scale": scores.scale}
    options = {k: v for k, v in options.items() if v is not None}
    outputs = ops.dot_product_attention(
        query,
        key,
        value,
        mask=op_mask,
        is_causal=is_causal,
        flash_attention=flash_attention,
        **options,
    )
    if mask is None:
        return outputs
    attends = ops.any(mask, axis=-1)  # (b, n|1, t|1)
    attends = ops.transpose(attends, (0, 2, 1))[..., None]  # (b, t|1, n|1, 1)
    return ops.multiply(outputs, ops.cast(attends, outputs.dtype))


def _large_negative(dtype):
    # Finite in the dtype: -1e9 is -inf in float16.
    if keras.backend.standardize_dtype(dtype) == "float16":
        return -3e4
    return _MASKED_LOGIT


def _logits(query, key):
    """`(b, n, t, s)` float32 logits of queries already scaled by 1/sqrt(h).

    float16 q.k overflows above 65504, so it runs in float32; bfloat16 has
    float32's range and keeps its matmul speed.
    """
    if keras.backend.standardize_dtype(query.dtype) == "float16":
        query, key = ops.cast(query, "float32"), ops.cast(key, "float32")
    # A transpose of the last two axes: TensorFlow folds it into the matmul.
    logits = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2)))
    return ops.cast(logits, "float32")


def _explicit_attention(
    query,
    key,
    value,
    mask,
    dropout,
    training,
    seed_generator,
    return_scores,
    scores,
):
    compute_dtype = value.dtype
    logits = scores.logits(scores.scale_query(query), key, bias=scores.bias)
    if mask is not None:
        logits = ops.where(mask, logits, _MASKED_LOGIT)
    if logits.shape[-1] == 1:
        # One key: every probability is 1 (softmax would warn about it).
        scores = ops.ones_like(logits)
    else:
        scores = ops.softmax(logits, axis=-1)
    if mask is not None and return_scores:
        # Exact zeros in fully masked rows too (the softmax made them flat).
        scores = ops.where(mask, scores, 0.0)
    scores = ops.cast(scores, compute_dtype)
    probs = scores
    if dropout > 0 and training:
        probs = keras.random.dropout(probs, dropout, seed=seed_generator)
    outputs = ops.matmul(probs, value)  # (b, n, t, hv)
    if mask is not None and not return_scores:
        # Zero the flat rows of queries with nothing to attend to, on the
        # (t, hv) outputs rather than the (t, s) probabilities.
        attends = ops.any(mask, axis=-1, keepdims=True)  # (b, n|1, t|1, 1)
        outputs = ops.multiply(outputs, ops.cast(attends, outputs.dtype))
    outputs = ops.transpose(outputs, (0, 2, 1, 3))  # (b, t, n, hv)
    return outputs, (scores if return_scores else None)


def chunked_attention(
    query,
    key,
    value,
    chunk_size,
    query_mask=None,
    key_mask=None,
    attention_mask=None,
    use_causal_mask=False,
    causal_offset=0,
    sliding_window=None,
    scores=None,
):
    """Attention in `(chunk, chunk)` blocks with a running softmax.

    Never holds more than one block of logits per query chunk: for each
    chunk of queries it walks the key chunks and keeps the running row
    maximum `m`, softmax denominator `l` and unnormalized output `acc`
    (the online softmax of Milakov & Gimelshein, 2018, as in
    FlashAttention). Each block update is wrapped in `keras.remat`, so
    the backward pass recomputes the block's logits instead of keeping
    all of them. With the causal mask and a static offset, blocks above
    the diagonal are skipped. The sequence lengths must be static.

    Args:
        query: `(b, n, t, h)` projected queries.
        key: `(b, n, s, h)` projected keys.
        value: `(b, n, s, hv)` projected values.
        chunk_size: int, queries and keys per block.
        query_mask, key_mask, attention_mask, use_causal_mask,
            causal_offset, sliding_window: as in `attend`.
        scores: the scale, soft cap and biases (`attend` makes it);
            `None` is the plain scaled dot product.

    Returns:
        `(b, n, t, hv)` outputs, equal to the explicit path's up to float
        rounding; zeros for queries that may attend to no key.

    References:
        - [Milakov & Gimelshein, 2018](https://arxiv.org/abs/1805.02867)
        - [Dao et al., 2022](https://arxiv.org/abs/2205.14135)
    """
    query_length, key_length = query.shape[2], key.shape[2]
    static_offset = isinstance(causal_offset, int)
    compute_dtype = value.dtype
    if scores is None:
        scores = _Scores(None, None, None, None, causal_offset)
    # Split once rather than slice per block: TensorFlow's gradient of each
    # slice is a zero-padded copy of the whole input, all kept until summed.
    queries = _split(scores.scale_query(query), chunk_size)
    keys, values = _split(key, chunk_size), _split(value, chunk_size)
    outputs = []
    for start, query_chunk in zip(range(0, query_length, chunk_size), queries):
        stop = start + query_chunk.shape[2]
        if outputs:
            # A zero-valued dependency on the previous chunk, so the chunks
            # run (and their backward passes run) one after another instead
            # of holding several chunks' logits at once.
            # One element, not a sum, which could overflow float16 and
            # make 0 * inf = NaN; attention outputs are finite.
            query_chunk = query_chunk + ops.cast(
                0.0 * outputs[-1][:1, :1, :1, :1], query_chunk.dtype
            )
        state = None
        for key_start, key_chunk, value_chunk in zip(
            range(0, key_length, chunk_size), keys, values
        ):
            key_stop = key_start + key_chunk.shape[2]
            if (
                use_causal_mask
                and static_offset
                and (key_start > stop - 1 + causal_offset)
            ):
                break  # Above the diagonal: no query of the chunk sees it.
            # Below the diagonal a block needs no causal mask.
            causal = use_causal_mask and not (
                static_offset and key_stop - 1 <= start + causal_offset
            )
            block_mask = merge_masks(
                stop - start,
                key_stop - key_start,
                None if query_mask is None else query_mask[:, start:stop],
                None if key_mask is None else key_mask[:, key_start:key_stop],
                _mask_block(attention_mask, start, stop, key_start, key_stop),
                use_causal_mask=causal,
                causal_offset=causal_offset + start - key_start,
                sliding_window=sliding_window,
            )
            bias = _mask_block(scores.bias, start, stop, key_start, key_stop)
            step = _online_softmax_step(
                block_mask, state is None, scores, start, key_start, bias
            )
            # The bias block is an argument (it may be trained), the mask
            # is closed over.
            biases = () if bias is None else (bias,)
            state = keras.remat(step)(
                query_chunk, key_chunk, value_chunk, *biases, *(state or ())
            )
        if state is None:
            # No key is visible to any query of the chunk (a negative
            # causal offset): their outputs are zeros.
            shape = (*ops.shape(query_chunk)[:3], value.shape[-1])
            outputs.append(ops.zeros(shape, compute_dtype))
            continue
        _, total, acc = state
        # Rows that saw no key have acc == 0 and total == 0: outputs 0.
        total = ops.where(total > 0, total, 1.0)
        outputs.append(ops.cast(acc / total, compute_dtype))
    return ops.concatenate(outputs, axis=2)


def _split(x, chunk_size):
    """`x` split into chunks of `chunk_size` along the sequence axis 2."""
    length = x.shape[2]
    if length <= chunk_size:
        return [x]
    return ops.split(x, list(range(chunk_size, length, chunk_size)), axis=2)


def _mask_block(mask, start, stop, key_start, key_stop):
    """The `[start:stop, key_start:key_stop]` block of a broadcastable mask
    (or bias)."""
    if mask is None:
        return None
    if mask.shape[-2] != 1:
        mask = mask[..., start:stop, :]
    if mask.shape[-1] != 1:
        mask = mask[..., key_start:key_stop]
    return mask


def _online_softmax_step(mask, first, scores, query_start, key_start, bias):
    """One block of the running softmax: `(q, k, v, [bias], [m, l, acc])`
    to `(m, l, acc)`.

    The mask is closed over rather than passed: the rematerialization only
    differentiates and replays tensor arguments, and masks are boolean.
    """
    has_bias = bias is not None

    def step(query, key, value, *state):
        bias = None
        if has_bias:
            bias, state = state[0], state[1:]
        # (b, n, tc, sc)
        logits = scores.logits(query, key, query_start, key_start, bias)
        if mask is not None:
            logits = ops.where(mask, logits, _MASKED_LOGIT)
        # The result does not depend on the running maximum, only its
        # rounding does: no gradient flows through it.
        block_max = ops.stop_gradient(ops.max(logits, axis=-1, keepdims=True))
        new_max = block_max if first else ops.maximum(state[0], block_max)
        weights = ops.exp(logits - new_max)
        if mask is not None:
            # Exactly zero, also while every key so far was masked.
            weights = ops.where(mask, weights, 0.0)
        total = ops.sum(weights, axis=-1, keepdims=True)
        acc = ops.matmul(ops.cast(weights, value.dtype), value)
        acc = ops.cast(acc, "float32")
        if not first:
            correction = ops.exp(state[0] - new_max)
            total = state[1] * correction + total
            acc = state[2] * correction + acc
        return new_max, total, acc

    return step
