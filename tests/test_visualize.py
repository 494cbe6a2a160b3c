"""Per-head attention maps: one heatmap per head, saved as a PNG; the
docstring examples of `keras_mha.visualize` and its user guide."""

import doctest
import importlib
import os
import re

import keras
import numpy as np
import pytest
from matplotlib.image import imread

import keras_mha
from keras_mha.visualize import plot_attention_scores
from keras_mha.visualize import plot_layer_attention

# Distinct sizes, so swapped query and key axes cannot pass.
BATCH, QUERIES, KEYS, WIDTH, HEADS = 2, 5, 7, 12, 3


def head_axes(figure):
    """The axes of the heads, without the colour bars'."""
    return [ax for ax in figure.axes if ax.get_label() != "<colorbar>"]


def heatmaps(figure):
    """The `(rows, columns)` shape of the image drawn in each head's axes."""
    return [ax.get_images()[0].get_array().shape for ax in head_axes(figure)]


@pytest.mark.parametrize(
    "num_heads, columns, grid",
    [(3, 4, (1, 3)), (6, 4, (2, 4)), (8, 4, (2, 4)), (5, 2, (3, 2))],
    ids=["one_row", "partial_last_row", "full_grid", "two_columns"],
)
def test_one_heatmap_per_head_in_a_grid(tmp_path, num_heads, columns, grid):
    scores = np.random.default_rng(0).random((num_heads, QUERIES, KEYS))
    path = tmp_path / "heads.png"
    figure = plot_attention_scores(
        scores,
        path,
        [f"q{i}" for i in range(QUERIES)],
        [f"k{i}" for i in range(KEYS)],
        columns=columns,
    )
    assert heatmaps(figure) == [(QUERIES, KEYS)] * num_heads
    np.testing.assert_allclose(
        head_axes(figure)[-1].get_images()[0].get_array(),
        scores[-1],
        rtol=1e-6,
    )
    # The grid: distinct axes positions in rows and columns.
    positions = [
        ax.get_subplotspec().get_geometry()[:2] for ax in head_axes(figure)
    ]
    assert set(positions) == {grid}
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == [
        f"k{i}" for i in range(KEYS)
    ]
    height, width, _ = imread(path).shape
    dpi = 100
    assert (height, width) == tuple(
        round(size * dpi) for size in figure.get_size_inches()[::-1]
    )


def test_image_grows_with_the_tokens(tmp_path):
    small = plot_attention_scores(np.ones((2, 3, 3)) / 3, tmp_path / "s.png")
    large = plot_attention_scores(np.ones((2, 9, 12)) / 12, tmp_path / "l.png")
    small_shape = imread(tmp_path / "s.png").shape
    large_shape = imread(tmp_path / "l.png").shape
    assert large_shape[0] > small_shape[0] and large_shape[1] > small_shape[1]
    assert len(head_axes(small)) == len(head_axes(large)) == 2


@pytest.mark.parametrize(
    "scale, colour_bars, limits, title",
    [
        (
            "shared",
            1,
            [(0.0, 0.6)] * 3,
            "Heads (one scale for all heads, 0 to 0.60)",
        ),
        (
            "per_head",
            3,
            [(0.0, 0.2), (0.0, 0.4), (0.0, 0.6)],
            "Heads (one scale per head)",
        ),
    ],
    ids=["shared", "per_head"],
)
def test_colour_bars_and_scale(scale, colour_bars, limits, title):
    scores = np.stack([np.full((QUERIES, KEYS), w) for w in (0.1, 0.2, 0.3)])
    scores[:, 0, 0] = (0.2, 0.4, 0.6)  # Each head's largest weight.
    figure = plot_attention_scores(scores, title="Heads", scale=scale)
    bars = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == colour_bars
    assert [ax.get_images()[0].get_clim() for ax in head_axes(figure)] == [
        pytest.approx(limit) for limit in limits
    ]
    assert figure.get_suptitle() == title


def test_words_instead_of_pieces():
    scores = np.full((HEADS, 3, 4), 0.25)
    figure = plot_attention_scores(
        scores,
        query_tokens=["\u2581a", "\u2581b", "c"],
        key_tokens=["\u2581x", "y", "\u2581z", "\u2581w"],
        merge_subwords=True,
    )
    ax = head_axes(figure)[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["xy", "z", "w"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "bc"]
    np.testing.assert_allclose(
        ax.get_images()[0].get_array(), [[0.5, 0.25, 0.25]] * 2
    )


def test_layer_scores_are_drawn_per_head(tmp_path):
    layer = keras_mha.MultiHeadSelfAttention(num_heads=HEADS)
    x = keras.random.normal((BATCH, QUERIES, WIDTH), seed=1)
    figure, scores = plot_layer_attention(
        layer, x, tmp_path / "self.png", example=1
    )
    _, expected = layer(x, return_attention_scores=True)
    expected = keras.ops.convert_to_numpy(expected)
    np.testing.assert_allclose(scores, expected[1], rtol=1e-6)
    assert heatmaps(figure) == [(QUERIES, QUERIES)] * HEADS
    assert (tmp_path / "self.png").exists()


@pytest.mark.parametrize(
    "scores_index, shape",
    [(0, (QUERIES, QUERIES)), (-1, (QUERIES, KEYS))],
    ids=["self_attention", "cross_attention"],
)
def test_decoder_block_self_or_cross_attention(tmp_path, scores_index, shape):
    block = keras_mha.TransformerDecoderBlock(HEADS, intermediate_dim=7)
    decoder = keras.random.normal((BATCH, QUERIES, WIDTH), seed=2)
    encoder = keras.random.normal((BATCH, KEYS, WIDTH), seed=3)
    figure, scores = plot_layer_attention(
        block,
        (decoder, encoder),
        tmp_path / "decoder.png",
        scores_index=scores_index,
    )
    assert scores.shape == (HEADS, *shape)
    assert heatmaps(figure) == [shape] * HEADS
    if scores_index == 0:  # Causal: nothing above the diagonal.
        assert np.all(np.triu(scores, k=1) == 0)


def test_encoder_block_and_cross_attention_layer(tmp_path):
    block = keras_mha.TransformerEncoderBlock(HEADS, intermediate_dim=7)
    x = keras.random.normal((1, KEYS, WIDTH), seed=4)
    figure, _ = plot_layer_attention(block, x, tmp_path / "encoder.png")
    assert heatmaps(figure) == [(KEYS, KEYS)] * HEADS
    layer = keras_mha.MultiHeadAttention(num_heads=HEADS)
    query = keras.random.normal((1, QUERIES, WIDTH), seed=5)
    figure, _ = plot_layer_attention(layer, (query, x), tmp_path / "cross.png")
    assert heatmaps(figure) == [(QUERIES, KEYS)] * HEADS


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(scores=np.ones((2, 3))), "scores.shape=\\(2, 3\\)"),
        (
            dict(scores=np.ones((2, 3, 4)), query_tokens=["a"]),
            "len\\(query_tokens\\)=1",
        ),
        (
            dict(scores=np.ones((2, 3, 4)), key_tokens=["a"] * 3),
            "len\\(key_tokens\\)=3",
        ),
        (dict(scores=np.ones((2, 3, 4)), scale="log"), "scale='log'"),
        (
            dict(scores=np.ones((2, 3, 4)), merge_subwords=True),
            "needs `query_tokens` and `key_tokens`",
        ),
    ],
    ids=["rank", "query_tokens", "key_tokens", "scale", "merge_without_tokens"],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plot_attention_scores(**kwargs)


def test_bad_scores_index_names_the_argument():
    layer = keras_mha.MultiHeadSelfAttention(num_heads=HEADS)
    with pytest.raises(ValueError, match="scores_index=1"):
        plot_layer_attention(
            layer, keras.random.normal((1, QUERIES, WIDTH)), scores_index=1
        )


@pytest.mark.parametrize("module", ["grids", "maps", "head_view", "ranking"])
def test_docstring_examples_run(module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # The examples write their files here.
    module = importlib.import_module(f"keras_mha.visualize.{module}")
    result = doctest.testmod(
        module,
        extraglobs={"keras": keras, "np": np, "keras_mha": keras_mha},
        optionflags=doctest.ELLIPSIS,
    )
    assert result.attempted > 0 and result.failed == 0


def test_the_user_guide_runs(tmp_path, monkeypatch, capsys):
    """The Python blocks of docs/visualize.md, in order, in one namespace."""
    guide = os.path.join(
        os.path.dirname(os.path.dirname(__file__)), "docs", "visualize.md"
    )
    text = open(guide, encoding="utf-8").read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:
        exec(block, namespace)
    printed = capsys.readouterr().out
    assert "decoder_block_0/cross_attention (1, 2, 3, 4)" in printed
    assert (tmp_path / "heads.html").exists() and (
        tmp_path / "heads.png"
    ).exists()
