"""An interactive head view: tokens as text, one colour per head.

`head_view` runs a model once (`record_attention`), pairs each attention
layer's maps with the tokens of its two sides and returns a `HeadView`: it
shows itself in Jupyter and saves one HTML file with its CSS, JavaScript
and data inline, which opens from disk with no network. Hovering or
clicking a token shows, in every selected head, the tokens it attends to
(or, on the key side, that attend to it); a menu picks the layer, buttons
show and hide heads, and a table ranks the layer's heads (`rank_heads`).
"""

import dataclasses
import hashlib
import html
import importlib.resources
import json

import numpy as np

from keras_mha._validation import check_example
from keras_mha.multi_head_self_attention import MultiHeadSelfAttention
from keras_mha.visualize.maps import merge_subwords as merge_pieces
from keras_mha.visualize.maps import record_attention
from keras_mha.visualize.ranking import head_table_html
from keras_mha.visualize.ranking import rank_heads


@dataclasses.dataclass
class LayerView:
    """One attention layer of a `HeadView`.

    Attributes:
        name: the layer's key in `attention_maps`.
        kind: `"self-attention"` or `"cross-attention"`.
        query_tokens: labels of the queries (rows).
        key_tokens: labels of the keys (columns).
        scores: `(num_heads, len(query_tokens), len(key_tokens))` maps.
    """

    name: str
    kind: str
    query_tokens: list
    key_tokens: list
    scores: np.ndarray


class HeadView:
    """Per-head attention of every layer, shown as interactive HTML.

    Made by `head_view`. In Jupyter it shows itself (`_repr_html_`);
    `save` writes a self-contained HTML file. Each token element carries
    `data-token-index` and `data-side` (`"query"` or `"key"`) attributes.

    Args:
        layers: list of `LayerView`.
        title: optional text shown above the view.
    """

    def __init__(self, layers, title=None):
        if not layers:
            raise ValueError("`layers` expected at least one LayerView.")
        self.layers = list(layers)
        self.title = title

    @property
    def maps(self):
        """`{layer name: (num_heads, queries, keys) scores}`."""
        return {layer.name: layer.scores for layer in self.layers}

    def head_table(self, top_k=3, sort_by="head"):
        """`rank_heads` rows of every layer, labelled with its tokens."""
        return rank_heads(
            {layer.name: layer.scores[None] for layer in self.layers},
            {layer.name: layer.query_tokens for layer in self.layers},
            {layer.name: layer.key_tokens for layer in self.layers},
            top_k=top_k,
            sort_by=sort_by,
        )

    def _payload(self):
        layers = []
        for layer in self.layers:
            cross = layer.kind == "cross-attention"
            layers.append(
                {
                    "name": layer.name,
                    "kind": layer.kind,
                    "query_side": "target (queries)" if cross else "queries",
                    "key_side": "source (keys)" if cross else "keys",
                    "queries": [str(t) for t in layer.query_tokens],
                    "keys": [str(t) for t in layer.key_tokens],
                    # 6 decimals: exact zeros stay zero, files stay small.
                    "attention": np.round(layer.scores, 6).tolist(),
                }
            )
        # `<` escaped: the JSON sits inside a <script> element.
        text = json.dumps({"layers": layers}, ensure_ascii=False)
        return text.replace("<", "\\u003c")

    def _repr_html_(self):
        payload = self._payload()
        # A stable id from the content, unique per view in one notebook.
        view_id = "kmha-" + hashlib.sha1(payload.encode()).hexdigest()[:12]
        title = (
            f'<div class="kmha-title">{html.escape(self.title)}</div>'
            if self.title
            else ""
        )
        return _TEMPLATE.format(
            id=view_id,
            css=_asset("head_view.css"),
            js=_asset("head_view.js"),
            title=title,
            tables=head_table_html(self.head_table()),
            data=payload,
        )

    def to_html(self):
        """A complete HTML document of the view."""
        title = html.escape(self.title or "Attention heads")
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
            f"<title>{title}</title></head>\n<body>\n"
            f"{self._repr_html_()}\n</body>\n</html>\n"
        )

    def save(self, path):
        """Writes the view to `path` as one HTML file; returns `path`."""
        with open(path, "w", encoding="utf-8") as file:
            file.write(self.to_html())
        return path


_TEMPLATE = """<div class="kmha-head-view" id="{id}">
<style>{css}</style>
{title}<div class="kmha-controls">
<label>Layer <select class="kmha-layer"></select></label>
<span>Heads <span class="kmha-heads"></span></span>
</div>
<div class="kmha-body">
<div class="kmha-side-title kmha-query-title"></div><div></div>
<div class="kmha-side-title kmha-key-title"></div>
<div class="kmha-column kmha-queries"></div>
<svg class="kmha-lines"></svg>
<div class="kmha-column kmha-keys"></div>
</div>
<p class="kmha-hint">Hover a token to see where each selected head looks
(click pins it). Click a head to show or hide it; double-click shows it
alone.</p>
<div class="kmha-tables">{tables}</div>
<script type="application/json" class="kmha-data">{data}</script>
<script>
{js}
kmhaHeadView(document.getElementById("{id}"));
</script>
</div>"""


def _asset(name):
    return (
        importlib.resources.files("keras_mha.visualize")
        .joinpath(name)
        .read_text(encoding="utf-8")
    )


def _sides(layer, tokens, target_tokens):
    """`(kind, query_tokens, key_tokens)` of one attention layer.

    Without `target_tokens` every layer attends over `tokens`. With them,
    as in an encoder-decoder: `MultiHeadAttention` layers are
    cross-attention (target queries, source keys), causal
    `MultiHeadSelfAttention` layers the decoder's (target) and the other
    self-attention layers the encoder's (source).
    """
    if isinstance(layer, MultiHeadSelfAttention):
        causal = layer.use_causal_mask and target_tokens is not None
        sequence = target_tokens if causal else tokens
        return "self-attention", sequence, sequence
    if target_tokens is None:
        return "attention", tokens, tokens
    return "cross-attention", target_tokens, tokens


def head_view(
    model,
    inputs,
    tokens,
    target_tokens=None,
    merge_subwords=False,
    example=0,
    title=None,
    **call_kwargs,
):
    """The interactive head view of every attention layer of `model`.

    Args:
        model: a model or layer containing keras_mha's attention layers,
            as for `attention_maps`.
        inputs: its inputs (for `TransformerSeq2Seq`, `[source_ids,
            target_ids]`).
        tokens: labels of the (source) sequence, one per position of
            example `example`.
        target_tokens: labels of the target sequence of an encoder-decoder
            model, or `None`. With them, `MultiHeadAttention` layers show
            cross-attention (target -> source, the alignment) and causal
            self-attention layers the target. Defaults to `None`.
        merge_subwords: bool. Shows words instead of subword pieces: a
            word's weight as a key sums its pieces', as a query averages
            them (`merge_subwords`), and `▁` marks are dropped. Defaults
            to `False`.
        example: int. Which example of the batch. Defaults to `0`.
        title: optional text shown above the view.
        **call_kwargs: other call arguments of `model`.

    Returns:
        A `HeadView`.

    Example:

    >>> block = keras_mha.TransformerEncoderBlock(2, intermediate_dim=8)
    >>> x = keras.random.normal((1, 3, 4))
    >>> view = head_view(block, x, ["a", "b", "c"])
    >>> view.save("heads.html")
    'heads.html'
    >>> [(layer.kind, layer.scores.shape) for layer in view.layers]
    [('self-attention', (2, 3, 3))]
    """
    records = record_attention(model, inputs, **call_kwargs)
    layers = []
    for record in records:
        kind, queries, keys = _sides(record.layer, tokens, target_tokens)
        check_example(example, record.scores.shape[0])
        scores = record.scores[example]  # (n, t, s)
        for name, labels, length in (
            ("query", queries, scores.shape[1]),
            ("key", keys, scores.shape[2]),
        ):
            if labels is None or len(labels) != length:
                raise ValueError(
                    f"{record.path} ({kind}) has {length} {name} positions, "
                    "which `tokens` and `target_tokens` must label one by "
                    f"one. Received: {name} labels {labels!r}"
                )
        if merge_subwords:
            scores, queries, keys = merge_pieces(scores, queries, keys)
        layers.append(
            LayerView(record.path, kind, list(queries), list(keys), scores)
        )
    return HeadView(layers, title=title)
