"""Moving a keras_hub backbone's weights onto keras_mha's blocks.

keras_hub's attention layers keep separate query, key and value kernels;
`MultiHeadSelfAttention` keeps one fused kernel, in which key/value head
`i` owns the queries of its `g = num_heads // num_key_value_heads` heads,
its key and its value (see `keras_mha._heads.project_fused_qkv`).
`fuse_qkv` writes that layout and `split_qkv` reads it back. `map_weights`
pairs every variable of a converted model with its source, by variable
path, and refuses to leave one on either side unpaired. Notation: d
width, n query heads, n_kv key/value heads, g = n // n_kv, h head width.
"""

import keras
import numpy as np


def fuse_qkv(query, key, value):
    """The fused kernel (or bias) of separate query, key and value ones.

    Args:
        query: `(..., n, hk)` array: a `(d, n, hk)` kernel or an `(n, hk)`
            bias.
        key: `(..., n_kv, hk)` array.
        value: `(..., n_kv, hv)` array.

    Returns:
        `(..., n_kv, g * hk + hk + hv)`: for key/value head `i`, the
        queries of heads `g * i ... g * i + g - 1`, then its key and value.
    """
    query, key, value = (np.asarray(x) for x in (query, key, value))
    *lead, num_heads, key_dim = query.shape
    kv_heads = key.shape[-2]
    if (
        num_heads % kv_heads
        or key.shape != (*lead, kv_heads, key_dim)
        or value.shape[:-1] != (*lead, kv_heads)
    ):
        raise ValueError(
            "`fuse_qkv` expected query (..., n, h), key (..., n_kv, h) and "
            "value (..., n_kv, h_v), n a multiple of n_kv. Received: "
            f"query.shape={query.shape}, key.shape={key.shape}, "
            f"value.shape={value.shape}"
        )
    group = num_heads // kv_heads
    # (..., n, hk) -> (..., n_kv, g * hk): head g * i + j in slice i.
    query = query.reshape(*lead, kv_heads, group * key_dim)
    return np.concatenate([query, key, value], axis=-1)


def split_qkv(fused, num_heads, key_dim):
    """The inverse of `fuse_qkv`: `(query, key, value)` of a fused array."""
    fused = np.asarray(fused)
    *lead, kv_heads, _ = fused.shape
    group = num_heads // kv_heads
    query, key, value = np.split(
        fused, [group * key_dim, (group + 1) * key_dim], axis=-1
    )
    return query.reshape(*lead, num_heads, key_dim), key, value


# How a converted variable is computed from its sources, by the name in a
# family's weight table (`keras_mha.hub.families`).
TRANSFORMS = {
    "copy": lambda x: x,
    "fused_qkv": fuse_qkv,
    # Gemma's RMS norms multiply by `1 + scale`, ours by `scale`.
    "plus_one": lambda x: x + 1.0,
    # Kernels stored `(n, d, h)` (Gemma) -> `(d, n, h)`.
    "fused_qkv_ndh": lambda q, k, v: fuse_qkv(
        *(np.swapaxes(x, 0, 1) for x in (q, k, v))
    ),
    # A `(n * h, d)` output kernel (GPT-NeoX) -> `(n, h, d)`; the
    # target's shape comes last (`_SHAPED`).
    "heads_output": lambda x, shape: np.reshape(x, shape),
}
# Transforms that also take the shape of the variable they fill.
_SHAPED = {"heads_output"}


def _sources(spec):
    """`(transform name, source sub-layer paths)` of a table entry."""
    if isinstance(spec, str):
        return "copy", (spec,)
    return spec[0], tuple(spec[1:])


def map_weights(target, source, blocks, block_table, owner, table=None):
    """Pairs each variable of `target` with the values it takes.

    Variables inside a block `name/sublayer/leaf` come from the entry of
    `sublayer` in `block_table`: a source sub-layer path inside the same
    block (`"feedforward_output_dense"`), or a transform name and source
    paths (`("fused_qkv", ".../query", ".../key", ".../value")`); the
    source variable has the same leaf name (`kernel`, `bias`, `gamma`).
    Every other variable `sublayer/leaf` comes from the entry of
    `sublayer` in `table`, read the same way, or else from the source
    variable of the same path.

    Args:
        target: the converted model.
        source: the keras_hub backbone.
        blocks: names of the blocks, the same in both models.
        block_table: `{our sub-layer path: source entry}`.
        owner: the source's class name, for messages.
        table: `{our top-level sub-layer path: source entry}`.

    Returns:
        A list of `(target variable, value)` pairs covering every variable
        of `target`.

    Raises:
        ValueError: naming `owner` and the variables, if a variable of
            either model has no counterpart (a feature the table does not
            convert) or the shapes differ.
    """
    values = {v.path: v for v in source.weights}
    table = table or {}
    used, pairs, missing = set(), [], []
    for variable in target.weights:
        block, _, rest = variable.path.partition("/")
        sublayer, _, leaf = rest.rpartition("/")
        if block in blocks and sublayer in block_table:
            transform, paths = _sources(block_table[sublayer])
            paths = [f"{block}/{path}/{leaf}" for path in paths]
        elif variable.path.rpartition("/")[0] in table:
            layer, _, leaf = variable.path.rpartition("/")
            transform, paths = _sources(table[layer])
            paths = [f"{path}/{leaf}" for path in paths]
        else:
            transform, paths = "copy", [variable.path]
        if not all(path in values for path in paths):
            missing.append(variable.path)
            continue
        used.update(paths)
        arrays = [keras.ops.convert_to_numpy(values[p]) for p in paths]
        if transform in _SHAPED:
            arrays.append(tuple(variable.shape))
        value = TRANSFORMS[transform](*arrays)
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"from_keras_hub expected {paths} to give `{variable.path}` "
                f"its shape {tuple(variable.shape)}. Received: shape "
                f"{tuple(value.shape)} from a {owner}"
            )
        pairs.append((variable, value))
    unused = sorted(set(values) - used)
    if missing or unused:
        raise ValueError(
            "from_keras_hub converts only the weights of its family's table "
            "(keras_mha.hub.families): the converted model lacks a source "
            f"for {missing} and leaves {unused} unused. Received: a {owner}"
        )
    return pairs
