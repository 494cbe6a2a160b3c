"""Seeing what each attention head highlights.

- `attention_maps(model, inputs)`: every attention layer's per-head
  probabilities from one forward pass (`maps.py`).
- `head_view(model, inputs, tokens)`: an interactive HTML view, tokens as
  text, one colour per head (`head_view.py`).
- `rank_heads(maps)`: how far each head looks, how peaked it is and its
  strongest pairs (`ranking.py`).
- `plot_attention_scores` and `plot_layer_attention`: PNG grids, one
  heatmap per head, with colour bars (`grids.py`, needs matplotlib).
"""

from keras_mha.visualize.grids import plot_attention_scores
from keras_mha.visualize.grids import plot_layer_attention
from keras_mha.visualize.head_view import HeadView
from keras_mha.visualize.head_view import LayerView
from keras_mha.visualize.head_view import head_view
from keras_mha.visualize.maps import attention_maps
from keras_mha.visualize.maps import merge_subwords
from keras_mha.visualize.maps import word_groups
from keras_mha.visualize.ranking import format_head_table
from keras_mha.visualize.ranking import head_statistics
from keras_mha.visualize.ranking import head_table_html
from keras_mha.visualize.ranking import rank_heads
from keras_mha.visualize.ranking import top_pairs

__all__ = [
    "attention_maps",
    "format_head_table",
    "head_statistics",
    "head_table_html",
    "head_view",
    "HeadView",
    "LayerView",
    "merge_subwords",
    "plot_attention_scores",
    "plot_layer_attention",
    "rank_heads",
    "top_pairs",
    "word_groups",
]
