"""Argument and shape checks shared by the layers.

Each check raises with one message form: what was expected, then
`Received: name=value`, so the user sees the argument, the value and the
expectation in one line.
"""

import math
import numbers

import keras
import numpy as np
from keras import ops


def check_positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` expected a positive integer"
            f"{' or None' if allow_none else ''}. Received: {name}={value!r}"
        )
    if value <= 0:
        raise ValueError(
            f"`{name}` expected a positive integer"
            f"{' or None' if allow_none else ''}. Received: {name}={value!r}"
        )
    return int(value)


def check_int_at_least(name, value, minimum):
    """An int (not a bool) of at least `minimum`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, numbers.Integral
    ):
        raise TypeError(
            f"`{name}` expected an integer >= {minimum}. "
            f"Received: {name}={value!r}"
        )
    if value < minimum:
        raise ValueError(
            f"`{name}` expected an integer >= {minimum}. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def check_pairs(name, value):
    """A non-empty list or tuple of `(source, target)` pairs of `str`;
    returns them as a list of tuples."""
    expected = f"`{name}` expected a non-empty list of (source, target) str"
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"{expected} pairs. Received: {name}={value!r:.80} of type "
            f"{type(value).__name__}"
        )
    if not value:
        raise ValueError(f"{expected} pairs. Received: {name}={value!r}")
    for i, pair in enumerate(value):
        if not (
            isinstance(pair, (list, tuple))
            and len(pair) == 2
            and all(isinstance(text, str) for text in pair)
        ):
            raise TypeError(
                f"{expected} pairs; item {i} is not one. "
                f"Received: {name}[{i}]={pair!r:.80}"
            )
    return [tuple(pair) for pair in value]


def check_strings(name, value):
    """A list, tuple or 1-D NumPy array of `str`; returns a list of them.

    A bare string is refused rather than read as its characters, and an
    item that is not a `str` (`None`, a number, `bytes`) rather than
    converted with `str()`.
    """
    expected = f"`{name}` expected a list, tuple or 1-D array of str"
    if isinstance(value, (str, bytes)):
        raise TypeError(
            f"{expected}, not a bare {type(value).__name__} (pass [text] "
            f"for one). Received: {name}={value!r:.80}"
        )
    if isinstance(value, np.ndarray) and value.ndim != 1:
        raise TypeError(f"{expected}. Received: {name} of shape {value.shape}")
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise TypeError(
            f"{expected}. Received: {name}={value!r:.80} of type "
            f"{type(value).__name__}"
        )
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise TypeError(
                f"{expected}; item {i} is a {type(item).__name__}. "
                f"Received: {name}[{i}]={item!r:.80}"
            )
    return [str(item) for item in value]


def check_rotary_key_dim(key_dim, explicit, num_heads, width):
    """With `rotary_embedding`, the head width must be even: rotary
    embeddings rotate pairs of features."""
    if key_dim % 2 == 0:
        return
    source = (
        f"key_dim={key_dim}"
        if explicit
        else f"key_dim={key_dim} (width {width} // num_heads={num_heads})"
    )
    raise ValueError(
        "`key_dim` expected an even head width with `rotary_embedding`, "
        "which rotates pairs of features. Pass an even key_dim. "
        f"Received: {source}"
    )


def check_rotary_cache(rotary_embedding, what):
    """Refuses rotary positions with a precomputed cross-attention cache.

    A call with a `cache` and `cache_update_index=None` reads fixed keys
    and values (`compute_cache`) and knows no position for its queries:
    rotating them would treat every decoding step as position 0.
    """
    if rotary_embedding is not None:
        raise ValueError(
            f"{what} cannot be used with `rotary_embedding`: a call over a "
            "precomputed cache does not know the positions of its queries. "
            "Pass the query sequence from its start with `value` (its "
            "queries take positions 0 ... t - 1), or build the layer "
            "without rotary_embedding. Received: rotary_embedding="
            f"{type(rotary_embedding).__name__}"
        )


def check_rate(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` expected a float in [0, 1). Received: {name}={value!r}"
        )
    if not 0 <= value < 1:
        raise ValueError(
            f"`{name}` expected a float in [0, 1). Received: {name}={value!r}"
        )
    return float(value)


def check_positive_float(name, value, allow_none=False):
    if value is None and allow_none:
        return value
    expected = f"a positive finite number{' or None' if allow_none else ''}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` expected {expected}. Received: {name}={value!r}"
        )
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"`{name}` expected {expected}. Received: {name}={value!r}"
        )
    return float(value)


def check_fraction(name, value):
    """A number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` expected a float in (0, 1]. Received: {name}={value!r}"
        )
    if not 0 < value <= 1:
        raise ValueError(
            f"`{name}` expected a float in (0, 1]. Received: {name}={value!r}"
        )
    return float(value)


def check_choice(name, value, choices):
    """One of the strings `choices`."""
    if value not in choices:
        raise ValueError(
            f"`{name}` expected one of {', '.join(map(repr, choices))}. "
            f"Received: {name}={value!r}"
        )
    return value


def check_bool(name, value, allow_none=False):
    """A Python or NumPy bool; `"no"`, `0` or `None` are not taken as one
    (`None` is, with `allow_none`)."""
    if value is None and allow_none:
        return value
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"`{name}` expected True or False"
            f"{', or None' if allow_none else ''}. Received: {name}={value!r}"
        )
    return bool(value)


def check_flash_attention(value, dropout=0.0):
    """`None`, `True` or `False`; `True` only where it can be honoured.

    As `keras.layers.MultiHeadAttention`, `True` is refused with attention
    dropout (the flash kernel has none), and on a backend without a flash
    kernel, rather than silently running the explicit softmax.
    """
    if not isinstance(value, (bool, np.bool_, type(None))):
        raise ValueError(
            "`flash_attention` expected None, True or False. "
            f"Received: flash_attention={value!r}"
        )
    if value and dropout > 0:
        raise ValueError(
            "`flash_attention=True` cannot apply attention dropout: set "
            "dropout=0.0 to use flash attention, or flash_attention=None "
            "to let the layer choose. "
            f"Received: flash_attention=True, dropout={dropout}"
        )
    if value and keras.backend.backend() == "tensorflow":
        raise ValueError(
            "`flash_attention=True` needs a flash attention kernel, which "
            "the TensorFlow backend does not have (use JAX or PyTorch on a "
            "GPU, or None to let the backend choose). "
            f"Received: flash_attention={value!r} on TensorFlow"
        )
    return None if value is None else bool(value)


def check_flash_attention_call(flash_attention, return_scores, dims):
    """At a call: `flash_attention=True` that the call cannot honour.

    The flash kernel returns no scores and needs one head width for keys
    and values (`dims` is `(key_dim, value_dim)`).
    """
    if not flash_attention:
        return
    if return_scores:
        raise ValueError(
            "`return_attention_scores=True` needs the explicit softmax, "
            "which `flash_attention=True` does not run: the flash kernel "
            "returns no scores. Build the layer with flash_attention=None "
            "or False to get them. Received: flash_attention=True, "
            "return_attention_scores=True"
        )
    if dims[0] != dims[1]:
        raise ValueError(
            "`flash_attention=True` needs the same head width for keys and "
            "values. Received: flash_attention=True, key_dim="
            f"{dims[0]}, value_dim={dims[1]}"
        )


def concrete_int(value):
    """The Python int of an integer scalar, or `None` when it is traced.

    Python ints and eager tensors are concrete; a symbolic tensor (inside
    `tf.function`, `jax.jit` or a `keras.Input`) has no value yet.
    """
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, keras.KerasTensor):
        return None
    try:
        return int(ops.convert_to_numpy(value))
    except Exception:  # Each backend raises its own error for a tracer.
        return None


def check_index(name, value):
    """An int or integer scalar tensor; returns its value or `None`.

    Returns `None` for a traced tensor, whose value is unknown here.
    """
    dtype = getattr(value, "dtype", None)
    is_int = isinstance(value, numbers.Integral) and not isinstance(
        value, (bool, np.bool_)
    )
    if not is_int and (
        dtype is None
        or "int" not in keras.backend.standardize_dtype(dtype)
        or len(getattr(value, "shape", ())) != 0
    ):
        raise TypeError(
            f"`{name}` expected a non-negative integer or an integer scalar "
            f"tensor. Received: {name}={value!r}"
        )
    index = concrete_int(value)
    if index is not None and index < 0:
        raise ValueError(
            f"`{name}` expected a non-negative integer. "
            f"Received: {name}={index}"
        )
    return index


def check_sequence_shape(name, shape, width=None):
    """Checks a `(batch, seq, width)` shape; returns the width."""
    shape = tuple(shape)
    if len(shape) != 3:
        raise ValueError(
            f"`{name}` expected a rank-3 tensor of shape "
            f"(batch, sequence, features). Received: {name}.shape={shape}"
        )
    if shape[-1] is None:
        raise ValueError(
            f"`{name}` expected a known last dimension (features). "
            f"Received: {name}.shape={shape}"
        )
    if width is not None and shape[-1] != width:
        raise ValueError(
            f"`{name}` expected last dimension {width}, the width the layer "
            f"was built with. Received: {name}.shape={shape}"
        )
    return shape[-1]


def check_float_dtype(name, tensor):
    dtype = keras.backend.standardize_dtype(tensor.dtype)
    if not keras.backend.is_float_dtype(dtype):
        raise TypeError(
            f"`{name}` expected a floating-point tensor (embed integer ids "
            f"first, e.g. with keras.layers.Embedding). Received: "
            f"{name}.dtype={dtype}"
        )


def check_mask_shape(name, mask, *expected):
    """Checks a mask's static shape against the allowed `expected` shapes.

    `None` in a shape, on either side, matches any size.
    """
    if mask is None:
        return
    shape = tuple(mask.shape)
    for allowed in expected:
        if len(shape) == len(allowed) and all(
            a is None or b is None or a == b for a, b in zip(shape, allowed)
        ):
            return
    raise ValueError(
        f"`{name}` expected shape {' or '.join(_fmt(e) for e in expected)}. "
        f"Received: {name}.shape={shape}"
    )


def _fmt(shape):
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def check_matching_dim(dim_name, axis, **shapes):
    """Checks that the given shapes agree on `axis` where it is known.

    `dim_name` says what the axis is ("batch size", "sequence length").
    """
    known = {
        name: tuple(shape)[axis]
        for name, shape in shapes.items()
        if tuple(shape)[axis] is not None
    }
    if len(set(known.values())) > 1:
        names = " and ".join(f"`{name}`" for name in shapes)
        received = ", ".join(
            f"{name}.shape={tuple(shape)}" for name, shape in shapes.items()
        )
        raise ValueError(
            f"{names} expected the same {dim_name} (axis {axis}). "
            f"Received: {received}"
        )


def check_attention_mask(name, mask, batch, num_heads, query_length, length):
    """Checks a mask against keras.layers.MultiHeadAttention's rule.

    A mask of rank 2, 3 or 4 gets axes inserted at -3 up to rank 4 and
    must then broadcast to `(batch, num_heads, query_length, length)`:
    `(t, s)`, `(b, t, s)`, `(b, n, t, s)` and their size-1 variants.
    """
    if mask is None:
        return
    shape = tuple(mask.shape)
    full = (batch, num_heads, query_length, length)
    padded = ()
    if 2 <= len(shape) <= 4:
        padded = shape[:-2] + (1,) * (4 - len(shape)) + shape[-2:]
    if not padded or any(
        a is not None and b is not None and a not in (1, b)
        for a, b in zip(padded, full)
    ):
        raise ValueError(
            f"`{name}` expected a shape that broadcasts to (batch, "
            f"num_heads, query_length, key_length) = {_fmt(full)} once "
            "axes are inserted before its last two, as in "
            "keras.layers.MultiHeadAttention: (t, s), (b, t, s) or "
            f"(b, n, t, s), where any axis may be 1. Received: "
            f"{name}.shape={shape}"
        )


def check_size(name, value):
    """A positive int, or an integer scalar tensor (a traced batch size).

    Tensors are checked for their dtype, and for being positive when they
    have a value (eager); returns `value` unchanged.
    """
    if isinstance(value, numbers.Integral) and not isinstance(
        value, (bool, np.bool_)
    ):
        return check_positive_int(name, value)
    dtype = getattr(value, "dtype", None)
    if (
        dtype is None
        or "int" not in keras.backend.standardize_dtype(dtype)
        or len(getattr(value, "shape", ())) != 0
    ):
        raise TypeError(
            f"`{name}` expected a positive integer or an integer scalar "
            f"tensor. Received: {name}={value!r}"
        )
    size = concrete_int(value)
    if size is not None and size <= 0:
        raise ValueError(
            f"`{name}` expected a positive integer. Received: {name}={size}"
        )
    return value


def check_example(example, batch_size):
    """An index into a batch of `batch_size` examples (negative from the
    end), as the visualizations take to pick one example."""
    if (
        isinstance(example, bool)
        or not isinstance(example, numbers.Integral)
        or not -batch_size <= example < batch_size
    ):
        raise ValueError(
            f"`example` expected an index into the batch of {batch_size} "
            f"examples. Received: example={example!r}"
        )
    return int(example)
