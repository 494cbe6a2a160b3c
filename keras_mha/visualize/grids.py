"""Per-head attention maps drawn with matplotlib, saved as PNG.

`plot_attention_scores` draws a grid with one heatmap per head from a scores
array, with a colour bar on one scale for all heads or one per head;
`plot_layer_attention` calls any attention layer or block of this package
with `return_attention_scores=True` and draws its scores. Queries run down
the rows and keys across the columns, as in the `(heads, queries, keys)`
scores.
"""

import math

import numpy as np
from keras import ops

from keras_mha._validation import check_example
from keras_mha._validation import check_positive_float
from keras_mha._validation import check_positive_int
from keras_mha.visualize.maps import merge_subwords as merge_pieces

SCALES = ("shared", "per_head")


def plot_attention_scores(
    scores,
    path=None,
    query_tokens=None,
    key_tokens=None,
    title=None,
    columns=4,
    cell_size=0.35,
    scale="shared",
    merge_subwords=False,
):
    """Draws one heatmap per head, tokens on both axes, with colour bars.

    Args:
        scores: array-like of shape `(num_heads, query_length, key_length)`,
            or `(1, num_heads, query_length, key_length)` as returned by a
            layer for one example.
        path: where to save the PNG, or `None` to only return the figure.
            Defaults to `None`.
        query_tokens: optional list of `query_length` row labels.
        key_tokens: optional list of `key_length` column labels.
        title: optional title of the figure, followed by the scale (the
            scale alone without a title).
        columns: int. Most heatmaps per row of the grid. Defaults to `4`.
        cell_size: float. Inches per token in each heatmap. Defaults to
            `0.35`.
        scale: `"shared"`: one colour scale from 0 to the largest weight of
            all heads, and one colour bar; `"per_head"`: each head from 0
            to its own largest weight, each with its colour bar (faint
            heads become visible, but colours no longer compare across
            heads). The title says which. Defaults to `"shared"`.
        merge_subwords: bool. Draws words instead of subword pieces (see
            `merge_subwords`): needs `query_tokens` and `key_tokens`.
            Defaults to `False`.

    Returns:
        The `matplotlib.figure.Figure`: one axes per head (`"head i"`),
        then the colour bars' axes.

    Example:

    >>> scores = np.full((4, 3, 5), 0.2)
    >>> figure = plot_attention_scores(scores, "heads.png", title="Heads")
    >>> figure.axes[3].get_title(), figure.get_suptitle()
    ('head 3', 'Heads (one scale for all heads, 0 to 0.20)')
    """
    # The Agg canvas draws to files without a display or pyplot's state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scores = np.asarray(ops.convert_to_numpy(scores), dtype="float32")
    if scores.ndim == 4 and scores.shape[0] == 1:
        scores = scores[0]
    if scores.ndim != 3:
        raise ValueError(
            "`scores` expected shape (num_heads, query_length, key_length) or "
            f"(1, num_heads, query_length, key_length). Received: "
            f"scores.shape={scores.shape}"
        )
    if scale not in SCALES:
        raise ValueError(
            f"`scale` expected one of {SCALES}. Received: scale={scale!r}"
        )
    if merge_subwords:
        if query_tokens is None or key_tokens is None:
            raise ValueError(
                "`merge_subwords=True` needs `query_tokens` and "
                "`key_tokens`. Received: query_tokens="
                f"{query_tokens!r}, key_tokens={key_tokens!r}"
            )
        scores, query_tokens, key_tokens = merge_pieces(
            scores, query_tokens, key_tokens
        )
    num_heads, query_length, key_length = scores.shape
    for name, tokens, length in (
        ("query_tokens", query_tokens, query_length),
        ("key_tokens", key_tokens, key_length),
    ):
        if tokens is not None and len(tokens) != length:
            raise ValueError(
                f"`{name}` expected {length} labels to match the scores. "
                f"Received: len({name})={len(tokens)}"
            )
    columns = min(check_positive_int("columns", columns), num_heads)
    check_positive_float("cell_size", cell_size)
    rows = math.ceil(num_heads / columns)
    figure = Figure(
        figsize=(
            columns * (2.2 + cell_size * key_length),
            rows * (1.2 + cell_size * query_length) + 0.4,
        ),
        layout="constrained",
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    # A constant map (or an all-zero one) still needs a range to draw.
    top = max(float(scores.max()), 1e-6)
    for head, ax in enumerate(axes.flat):
        if head >= num_heads:
            figure.delaxes(ax)  # Empty cells of the last row.
            continue
        vmax = (
            top if scale == "shared" else max(float(scores[head].max()), 1e-6)
        )
        image = ax.imshow(
            scores[head], cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto"
        )
        if scale == "per_head":
            figure.colorbar(image, ax=ax, fraction=0.08, pad=0.02)
        ax.set_title(f"head {head}", fontsize=9)
        for set_ticks, set_labels, tokens in (
            (ax.set_xticks, ax.set_xticklabels, key_tokens),
            (ax.set_yticks, ax.set_yticklabels, query_tokens),
        ):
            if tokens is None:
                continue
            set_ticks(range(len(tokens)))
            set_labels(tokens, fontsize=7)
        ax.tick_params(axis="x", labelrotation=90)
    if scale == "shared":
        figure.colorbar(
            image, ax=list(axes.flat[:num_heads]), fraction=0.05, pad=0.02
        )
        scale_text = f"one scale for all heads, 0 to {top:.2f}"
    else:
        scale_text = "one scale per head"
    figure.suptitle(f"{title} ({scale_text})" if title else scale_text)
    if path is not None:
        figure.savefig(path, dpi=100)
    return figure


def plot_layer_attention(
    layer,
    inputs,
    path=None,
    query_tokens=None,
    key_tokens=None,
    scores_index=-1,
    example=0,
    title=None,
    scale="shared",
    merge_subwords=False,
    **call_kwargs,
):
    """Calls an attention layer or block and draws its per-head scores.

    Works with every layer of this package that takes
    `return_attention_scores=True`: `MultiHeadSelfAttention`,
    `MultiHeadAttention`, `TransformerEncoderBlock` and
    `TransformerDecoderBlock` (which returns self- and cross-attention
    scores; pick one with `scores_index`).

    Args:
        layer: the layer or block.
        inputs: its positional call arguments, a tensor or a tuple of them
            (for example `(decoder_sequence, encoder_sequence)`).
        path: where to save the PNG, or `None`. Defaults to `None`.
        query_tokens: optional list of row labels.
        key_tokens: optional list of column labels.
        scores_index: int. Which of the returned score tensors to draw:
            `0` the first (self-attention), `-1` the last (cross-attention
            of a decoder block with an encoder sequence). Defaults to `-1`.
        example: int. Which example of the batch to draw. Defaults to `0`.
        title: optional title of the figure.
        scale: `"shared"` or `"per_head"`, see `plot_attention_scores`.
            Defaults to `"shared"`.
        merge_subwords: bool. Words instead of pieces, see
            `plot_attention_scores`. Defaults to `False`.
        **call_kwargs: other call arguments, such as `padding_mask`.

    Returns:
        A tuple `(figure, scores)`: the `matplotlib.figure.Figure` and the
        layer's `(num_heads, query_length, key_length)` NumPy scores (over
        pieces, also with `merge_subwords`).

    Example:

    >>> block = keras_mha.TransformerEncoderBlock(4, intermediate_dim=32)
    >>> x = keras.random.normal((1, 6, 16))
    >>> figure, scores = plot_layer_attention(block, x, "encoder.png")
    >>> figure.axes[0].get_title(), scores.shape
    ('head 0', (4, 6, 6))
    """
    if not isinstance(inputs, (tuple, list)):
        inputs = (inputs,)
    outputs = layer(*inputs, return_attention_scores=True, **call_kwargs)
    scores = outputs[1:]  # (outputs, scores, ...) -> the score tensors
    scores = [s for s in scores if s is not None]
    if not -len(scores) <= scores_index < len(scores):
        raise ValueError(
            f"`scores_index` expected an index into the {len(scores)} score "
            f"tensors that {layer.name} returns. Received: "
            f"scores_index={scores_index}"
        )
    scores = scores[scores_index]
    batch_size = scores.shape[0]
    check_example(example, batch_size)
    scores = ops.convert_to_numpy(scores[example])
    figure = plot_attention_scores(
        scores,
        path,
        query_tokens=query_tokens,
        key_tokens=key_tokens,
        title=title,
        scale=scale,
        merge_subwords=merge_subwords,
    )
    return figure, scores
