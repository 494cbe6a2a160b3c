"""Heads described by numbers: how far each looks, how peaked it is.

`rank_heads` gives one row per head of each layer: the mean attention
distance `sum_j p_ij |i - j|` and offset `sum_j p_ij (j - i)` (a "previous
word" head has an offset near -1, an alignment head a distance near 0),
the entropy of its rows in bits (0 for a head that looks at one token) and
its strongest token pairs. `format_head_table` and `head_table_html`
render the rows. Queries that may attend to no key are left out.
"""

import html

import numpy as np

from keras_mha._validation import check_example

SORT_KEYS = ("head", "distance", "offset", "entropy")


def head_statistics(scores):
    """Distance, offset and entropy of each head of one example.

    Args:
        scores: `(num_heads, query_length, key_length)` probabilities.

    Returns:
        Three `(num_heads,)` float arrays: mean distance, mean offset and
        mean entropy in bits, averaged over the queries that attend to
        something (`nan` for a head with none).
    """
    scores = np.asarray(scores, "float64")
    _, query_length, key_length = scores.shape
    # (t, s) offset j - i of each key from its query.
    offsets = np.arange(key_length)[None, :] - np.arange(query_length)[:, None]
    attends = scores.sum(-1) > 0  # (n, t)
    safe = np.where(scores > 0, scores, 1.0)
    per_query = {
        "distance": (scores * np.abs(offsets)).sum(-1),
        "offset": (scores * offsets).sum(-1),
        "entropy": -(scores * np.log2(safe)).sum(-1),
    }
    counts = attends.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tuple(
            np.where(attends, values, 0.0).sum(-1) / counts
            for values in per_query.values()
        )


def top_pairs(scores, query_tokens, key_tokens, k=3):
    """The `k` strongest `(query, key, weight)` links of each head."""
    heads = []
    for head in np.asarray(scores):  # (query_length, key_length)
        flat = np.argsort(head, axis=None, kind="stable")[::-1][:k]
        rows, columns = np.unravel_index(flat, head.shape)
        heads.append(
            [
                (query_tokens[r], key_tokens[c], float(head[r, c]))
                for r, c in zip(rows, columns)
            ]
        )
    return heads


def rank_heads(
    maps, query_tokens=None, key_tokens=None, example=0, top_k=3, sort_by="head"
):
    """One row per head of each layer: distance, offset, entropy, pairs.

    Args:
        maps: dict from layer key to `(batch, num_heads, query_length,
            key_length)` probabilities, as `attention_maps` returns.
        query_tokens: labels of the queries: one list for every layer, a
            dict from layer key to list, or `None` for positions.
            Defaults to `None`.
        key_tokens: labels of the keys, as `query_tokens`. Defaults to
            `None`.
        example: int. Which example of the batch. Defaults to `0`.
        top_k: int. Strongest pairs listed per head. Defaults to `3`.
        sort_by: `"head"`, `"distance"`, `"offset"` or `"entropy"`: the
            order of the heads within each layer (ascending). Defaults to
            `"head"`.

    Returns:
        A list of dicts with keys `layer`, `head`, `distance`, `offset`,
        `entropy` and `top_pairs` (a list of `(query, key, weight)`),
        layer by layer in the order of `maps`.

    Example:

    >>> previous = np.eye(4, k=-1)[None, None]  # each token -> the one before
    >>> previous[0, 0, 0, 0] = 1.0
    >>> rows = rank_heads({"layer": previous}, ["a", "b", "c", "d"], top_k=1)
    >>> rows[0]["offset"], rows[0]["top_pairs"]
    (-0.75, [('d', 'c', 1.0)])
    """
    if sort_by not in SORT_KEYS:
        raise ValueError(
            f"`sort_by` expected one of {SORT_KEYS}. Received: "
            f"sort_by={sort_by!r}"
        )
    key_tokens = query_tokens if key_tokens is None else key_tokens
    rows = []
    for layer, scores in maps.items():
        scores = np.asarray(scores)
        batch_size = scores.shape[0]
        check_example(example, batch_size)
        scores = scores[example]  # (n, t, s)
        queries = _labels(query_tokens, layer, scores.shape[1])
        keys = _labels(key_tokens, layer, scores.shape[2])
        distance, offset, entropy = head_statistics(scores)
        pairs = top_pairs(scores, queries, keys, top_k)
        layer_rows = [
            {
                "layer": layer,
                "head": head,
                "distance": float(distance[head]),
                "offset": float(offset[head]),
                "entropy": float(entropy[head]),
                "top_pairs": pairs[head],
            }
            for head in range(scores.shape[0])
        ]
        rows += sorted(layer_rows, key=lambda row: row[sort_by])
    return rows


def _labels(tokens, layer, length):
    if isinstance(tokens, dict):
        tokens = tokens[layer]
    if tokens is None:
        return [str(i) for i in range(length)]
    if len(tokens) != length:
        raise ValueError(
            f"Expected {length} tokens for the maps of {layer}. Received: "
            f"{len(tokens)} tokens {list(tokens)[:8]}"
        )
    return [str(token) for token in tokens]


def _pairs_text(pairs):
    return ", ".join(f"{q} -> {k} {w:.2f}" for q, k, w in pairs)


def format_head_table(rows):
    """The rows of `rank_heads` as plain text, one table per layer."""
    lines, layer = [], None
    for row in rows:
        if row["layer"] != layer:
            layer = row["layer"]
            lines.append(layer)
            lines.append("  head  distance  offset  entropy  strongest pairs")
        lines.append(
            f"  {row['head']:4d}  {row['distance']:8.2f}  "
            f"{row['offset']:6.2f}  {row['entropy']:7.2f}  "
            f"{_pairs_text(row['top_pairs'])}"
        )
    return "\n".join(lines)


def head_table_html(rows):
    """The rows of `rank_heads` as HTML, one `<table>` per layer."""
    tables = {}
    for row in rows:
        cells = (
            str(row["head"]),
            f"{row['distance']:.2f}",
            f"{row['offset']:.2f}",
            f"{row['entropy']:.2f}",
            _pairs_text(row["top_pairs"]),
        )
        tables.setdefault(row["layer"], []).append(
            "<tr>"
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            + "</tr>"
        )
    header = "".join(
        f"<th>{name}</th>"
        for name in ("head", "distance", "offset", "entropy", "strongest pairs")
    )
    return "\n".join(
        f'<table class="head-table" data-layer="{html.escape(layer)}">'
        f"<caption>{html.escape(layer)}</caption>"
        f"<tr>{header}</tr>{''.join(body)}</table>"
        for layer, body in tables.items()
    )
