"""Argument and shape checks shared by the layers.

Each check raises with one message form: what was expected, then
`Received: name=value`, so the user sees the argument, the value and the
expectation in one line.
"""

import numbers

import keras


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


def check_positive_float(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` expected a positive number. Received: {name}={value!r}"
        )
    if value <= 0:
        raise ValueError(
            f"`{name}` expected a positive number. Received: {name}={value!r}"
        )
    return float(value)


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
