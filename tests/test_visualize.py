"""Per-head attention maps: one heatmap per head, saved as a PNG."""

import keras
import numpy as np
import pytest
from matplotlib.image import imread

import keras_mha
from keras_mha.visualize import plot_attention_scores
from keras_mha.visualize import plot_layer_attention

# Distinct sizes, so swapped query and key axes cannot pass.
BATCH, QUERIES, KEYS, WIDTH, HEADS = 2, 5, 7, 12, 3


def heatmaps(figure):
    """The `(rows, columns)` shape of the image drawn in each axes."""
    return [ax.get_images()[0].get_array().shape for ax in figure.axes]


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
        figure.axes[-1].get_images()[0].get_array(), scores[-1], rtol=1e-6
    )
    # The grid: distinct axes positions in rows and columns.
    positions = [ax.get_subplotspec().get_geometry()[:2] for ax in figure.axes]
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
    assert len(small.axes) == len(large.axes) == 2


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
    ],
    ids=["rank", "query_tokens", "key_tokens"],
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
