"""`rank_heads`: distance, offset, entropy and strongest pairs per head."""

import numpy as np
import pytest

from keras_mha.visualize import format_head_table
from keras_mha.visualize import head_statistics
from keras_mha.visualize import head_table_html
from keras_mha.visualize import rank_heads

QUERIES = KEYS = 5
TOKENS = ["The", "chef", "baked", "a", "cake"]


def analytic_heads():
    """Three heads of known shape: previous token, uniform, self."""
    previous = np.eye(QUERIES, KEYS, k=-1)
    previous[0, 0] = 1.0  # The first token has no previous one.
    uniform = np.full((QUERIES, KEYS), 1.0 / KEYS)
    return np.stack([previous, uniform, np.eye(QUERIES, KEYS)])


def test_statistics_of_analytic_heads():
    distance, offset, entropy = head_statistics(analytic_heads())
    offsets = np.arange(KEYS)[None] - np.arange(QUERIES)[:, None]
    np.testing.assert_allclose(distance, [4 / 5, np.abs(offsets).mean(), 0])
    np.testing.assert_allclose(offset, [-4 / 5, offsets.mean(), 0], atol=1e-12)
    np.testing.assert_allclose(entropy, [0, np.log2(KEYS), 0], atol=1e-12)


def test_queries_that_see_nothing_are_left_out():
    scores = analytic_heads()[:1].copy()
    scores[0, 0] = 0.0  # A padded query: a row of zeros.
    distance, offset, entropy = head_statistics(scores)
    assert (distance[0], offset[0], entropy[0]) == (1.0, -1.0, 0.0)


def test_rows_name_layers_heads_and_pairs():
    maps = {
        "encoder": analytic_heads()[None],
        "decoder": analytic_heads()[None],
    }
    rows = rank_heads(maps, TOKENS, top_k=2, sort_by="entropy")
    assert [(r["layer"], r["head"]) for r in rows] == [
        ("encoder", 0),
        ("encoder", 2),
        ("encoder", 1),
        ("decoder", 0),
        ("decoder", 2),
        ("decoder", 1),
    ]
    assert rows[0]["top_pairs"] == [("cake", "a", 1.0), ("a", "baked", 1.0)]
    assert rows[1]["top_pairs"][0] == ("cake", "cake", 1.0)
    text = format_head_table(rows)
    assert text.splitlines()[0] == "encoder"
    assert "cake -> a 1.00" in text and text.count("head  distance") == 2
    html = head_table_html(rows)
    assert html.count("<table") == 2 and html.count("<tr>") == 2 * (1 + 3)


def test_tokens_per_layer_and_escaped_html():
    scores = np.array([[0.2, 0.2, 0.6], [0.7, 0.2, 0.1]])[None, None]
    maps = {"cross": scores}
    rows = rank_heads(
        maps, {"cross": ["<s>", "Le"]}, {"cross": ["a", "b", "c"]}, top_k=2
    )
    assert rows[0]["top_pairs"] == [("Le", "a", 0.7), ("<s>", "c", 0.6)]
    html = head_table_html(rows)
    assert "&lt;s&gt; -&gt; c 0.60" in html and "<s>" not in html


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sort_by="size"), "sort_by='size'"),
        (dict(example=1), "example=1"),
        (dict(query_tokens=["a"]), "Expected 5 tokens"),
    ],
    ids=["sort_by", "example", "tokens"],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rank_heads({"layer": analytic_heads()[None]}, **kwargs)
