"""The head view in a real browser: headless Chromium driven by Selenium.

The saved file is opened from disk (the network is closed to the browser),
a token is hovered, and the highlighted tokens and each head's box
opacities are compared with the maps. `make test` installs Chromium and
its driver where it can (`make browser`); elsewhere these tests skip.
"""

import shutil

import keras
import numpy as np
import pytest

import keras_mha
from keras_mha.seq2seq.models import TransformerSeq2Seq
from keras_mha.visualize import attention_maps
from keras_mha.visualize import head_view

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (the test extra)"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip(
        "Chromium and chromedriver are not installed (Debian: apt-get "
        "install chromium chromium-driver, which `make test` runs as root)",
        allow_module_level=True,
    )
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

# Distinct sizes: 3 heads, 5 source and 4 target tokens.
HEADS, SOURCE, TARGET = 3, ["▁The", "▁che", "f", "▁bake", "d"], 4


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1000,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(DRIVER)
    )
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def translator():
    model = TransformerSeq2Seq(
        30, 40, hidden_dim=12, num_heads=HEADS, num_layers=1, dropout=0.0
    )
    source = np.array([[5, 6, 7, 8, 9]], "int32")
    target = np.array([[2, 11, 12, 13]], "int32")
    return model, [source, target]


def open_view(browser, view, tmp_path):
    path = view.save(str(tmp_path / "view.html"))
    browser.get(f"file://{path}")
    return path


def errors(browser):
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def hover(browser, side, index):
    token = browser.find_element(
        By.CSS_SELECTOR,
        f'.kmha-token[data-side="{side}"][data-token-index="{index}"]',
    )
    ActionChains(browser).move_to_element(token).perform()
    return token


def shown(browser, side):
    """`(highlighted indices, (heads, tokens) box opacities)` of a side."""
    rows = browser.find_elements(
        By.CSS_SELECTOR, f'.kmha-token[data-side="{side}"]'
    )
    highlighted = [
        int(row.get_attribute("data-token-index"))
        for row in rows
        if "kmha-attended" in row.get_attribute("class").split()
    ]
    opacities = np.zeros((HEADS, len(rows)))
    for column, row in enumerate(rows):
        for box in row.find_elements(By.CSS_SELECTOR, ".kmha-box"):
            if box.value_of_css_property("display") == "none":
                continue  # A hidden head shows nothing.
            head = int(box.get_attribute("data-head"))
            opacities[head, column] = float(
                box.value_of_css_property("opacity")
            )
    return highlighted, opacities


def brightness(browser, side):
    """The alpha of each token's text background on one side."""
    texts = browser.find_elements(
        By.CSS_SELECTOR, f'.kmha-token[data-side="{side}"] .kmha-text'
    )
    colours = [t.value_of_css_property("background-color") for t in texts]
    return [
        float(c.split(",")[3].rstrip(")")) if c.startswith("rgba") else 1.0
        for c in colours
    ]


def choose_layer(browser, name):
    select = Select(browser.find_element(By.CSS_SELECTOR, ".kmha-layer"))
    labels = [option.text for option in select.options]
    select.select_by_index(
        next(i for i, label in enumerate(labels) if label.startswith(name))
    )


@pytest.mark.parametrize(
    "layer, side, index",
    [
        ("encoder_block_0/self_attention", "query", 2),
        ("decoder_block_0/self_attention", "query", 1),
        ("decoder_block_0/cross_attention", "query", 3),
        ("decoder_block_0/cross_attention", "key", 4),
    ],
    ids=["encoder", "causal_decoder", "cross_target_to_source", "cross_key"],
)
def test_hover_highlights_the_maps(
    browser, translator, tmp_path, layer, side, index
):
    model, inputs = translator
    target_tokens = [f"t{i}" for i in range(TARGET)]
    view = head_view(model, inputs, SOURCE, target_tokens)
    open_view(browser, view, tmp_path)
    choose_layer(browser, layer)
    hover(browser, side, index)
    maps = attention_maps(model, inputs)[layer][0]  # (n, t, s)
    # Hovering a query shows its row; hovering a key, its column.
    expected = maps[:, index, :] if side == "query" else maps[:, :, index]
    other = "key" if side == "query" else "query"
    highlighted, opacities = shown(browser, other)
    assert (
        highlighted == np.flatnonzero(np.round(expected, 6).max(0) > 0).tolist()
    )
    np.testing.assert_allclose(opacities, expected, atol=1e-5)
    # Each token's text as bright as its strongest link (Chromium keeps
    # colours' alpha in 8 bits and prints it with two or three decimals).
    np.testing.assert_allclose(
        brightness(browser, other), expected.max(0), atol=1e-2
    )
    if layer.endswith("/self_attention") and layer.startswith("decoder"):
        assert highlighted == list(range(index + 1))  # Causal: no future.
    assert errors(browser) == []


def test_heads_toggle_and_words_merge(browser, translator, tmp_path):
    model, inputs = translator
    view = head_view(
        model,
        inputs,
        SOURCE,
        ["<s>", "▁Le", "▁chef", "."],
        merge_subwords=True,
    )
    open_view(browser, view, tmp_path)
    keys = browser.find_elements(
        By.CSS_SELECTOR, '.kmha-token[data-side="key"] .kmha-text'
    )
    assert [key.text for key in keys] == ["The", "chef", "baked"]
    # Head 1 hidden: its boxes show nothing; the others are unchanged.
    browser.find_element(By.CSS_SELECTOR, '.kmha-head[data-head="1"]').click()
    hover(browser, "query", 1)
    _, opacities = shown(browser, "key")
    merged = view.layers[0].scores  # (n, words, words)
    np.testing.assert_allclose(opacities[[0, 2]], merged[[0, 2], 1], atol=1e-5)
    assert np.all(opacities[1] == 0)
    # A double click shows head 2 alone.
    ActionChains(browser).double_click(
        browser.find_element(By.CSS_SELECTOR, '.kmha-head[data-head="2"]')
    ).perform()
    hover(browser, "query", 0)
    _, opacities = shown(browser, "key")
    np.testing.assert_allclose(opacities[2], merged[2, 0], atol=1e-5)
    assert np.all(opacities[:2] == 0)
    assert errors(browser) == []


def test_click_pins_and_layers_show_their_table(browser, tmp_path):
    block = keras_mha.TransformerEncoderBlock(HEADS, intermediate_dim=7)
    x = keras.random.normal((1, 5, 12), seed=3)
    model = keras.Sequential([keras.Input((5, 12)), block])
    view = head_view(model, x, list("abcde"))
    open_view(browser, view, tmp_path)
    hover(browser, "query", 3).click()
    hover(browser, "key", 0)  # Pinned: moving away changes nothing.
    highlighted, opacities = shown(browser, "key")
    np.testing.assert_allclose(
        opacities, view.layers[0].scores[:, 3], atol=1e-5
    )
    assert highlighted == [0, 1, 2, 3, 4]
    tables = browser.find_elements(By.CSS_SELECTOR, "table.head-table")
    assert [t.is_displayed() for t in tables] == [True]
    assert len(tables[0].find_elements(By.TAG_NAME, "tr")) == 1 + HEADS
    assert errors(browser) == []
