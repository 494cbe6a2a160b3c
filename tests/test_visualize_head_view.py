"""`head_view`: layers paired with their tokens, one self-contained file.

What the page does when hovered is tested in a browser
(test_visualize_browser.py); here, what the file holds.
"""

import json
import re

import keras
import numpy as np
import pytest

import keras_mha
from keras_mha.seq2seq.models import TransformerSeq2Seq
from keras_mha.visualize import HeadView
from keras_mha.visualize import attention_maps
from keras_mha.visualize import head_view

HEADS, SOURCE, TARGET = 3, ["▁The", "▁che", "f", "▁bake", "d"], ["<s>", "t1"]


@pytest.fixture(scope="module")
def translator():
    model = TransformerSeq2Seq(
        30, 40, hidden_dim=12, num_heads=HEADS, num_layers=1, dropout=0.0
    )
    inputs = [np.array([[5, 6, 7, 8, 9]]), np.array([[2, 11]])]
    return model, inputs


def payload(html):
    data = re.search(
        r'<script type="application/json" class="kmha-data">(.*?)</script>',
        html,
        re.S,
    )
    return json.loads(data.group(1))


def test_each_layer_gets_the_tokens_of_its_sides(translator):
    model, inputs = translator
    view = head_view(model, inputs, SOURCE, TARGET)
    sides = [
        (layer.name, layer.kind, layer.query_tokens, layer.key_tokens)
        for layer in view.layers
    ]
    assert sides == [
        ("encoder_block_0/self_attention", "self-attention", SOURCE, SOURCE),
        ("decoder_block_0/self_attention", "self-attention", TARGET, TARGET),
        ("decoder_block_0/cross_attention", "cross-attention", TARGET, SOURCE),
    ]
    maps = attention_maps(model, inputs)
    for layer in view.layers:
        np.testing.assert_array_equal(layer.scores, maps[layer.name][0])


def test_the_file_holds_the_maps_and_needs_no_network(translator, tmp_path):
    model, inputs = translator
    view = head_view(model, inputs, SOURCE, TARGET, title="A <view>")
    path = view.save(str(tmp_path / "view.html"))
    html = open(path, encoding="utf-8").read()
    assert html.startswith("<!DOCTYPE html>")
    data = payload(html)
    assert [layer["name"] for layer in data["layers"]] == list(view.maps)
    for layer, shown in zip(view.layers, data["layers"]):
        np.testing.assert_allclose(shown["attention"], layer.scores, atol=1e-6)
        assert (shown["queries"], shown["keys"]) == (
            layer.query_tokens,
            layer.key_tokens,
        )
    # Inline script and style only: nothing to fetch.
    assert not re.search(r"<link|\bsrc=|\bhref=|@import|url\(", html)
    urls = set(re.findall(r"https?://[^\s\"')]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}  # A namespace, not a fetch.
    assert "A &lt;view&gt;" in html
    assert html.count('<table class="head-table"') == len(view.layers)


def test_tokens_cannot_break_out_of_the_script(tmp_path):
    block = keras_mha.TransformerEncoderBlock(HEADS, intermediate_dim=7)
    tokens = ["</script><script>alert(1)</script>", "a", "b"]
    view = head_view(block, keras.random.normal((1, 3, 12)), tokens)
    html = view._repr_html_()
    assert html.count("</script>") == 2  # The data's and the code's.
    assert payload(html)["layers"][0]["queries"] == tokens


def test_merged_words_and_ids(translator):
    model, inputs = translator
    view = head_view(model, inputs, SOURCE, TARGET, merge_subwords=True)
    encoder = view.layers[0]
    assert encoder.query_tokens == ["The", "chef", "baked"]
    assert encoder.scores.shape == (HEADS, 3, 3)
    np.testing.assert_allclose(encoder.scores.sum(-1), 1.0, rtol=1e-5)
    other = head_view(model, inputs, SOURCE, ["<s>", "t2"])
    ids = [
        re.search(r'id="(kmha-\w+)"', v._repr_html_())[1] for v in (view, other)
    ]
    assert ids[0] != ids[1]


@pytest.mark.parametrize(
    "tokens, target_tokens, message",
    [
        (SOURCE[:4], TARGET, "encoder_block_0/self_attention .* 5 query"),
        (SOURCE, None, "decoder_block_0/self_attention .* 2 query"),
    ],
    ids=["short_source", "no_target_tokens"],
)
def test_tokens_that_do_not_match_are_named(
    translator, tokens, target_tokens, message
):
    model, inputs = translator
    with pytest.raises(ValueError, match=message):
        head_view(model, inputs, tokens, target_tokens)


def test_an_empty_view_is_refused():
    with pytest.raises(ValueError, match="at least one LayerView"):
        HeadView([])
