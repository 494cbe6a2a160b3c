"""The README's code runs as written and does what the README says."""

import importlib.util
import json
import pathlib

import keras
import numpy as np
import pytest

from tests.docs_blocks import python_blocks
from tests.docs_blocks import run_blocks

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BACKEND = keras.backend.backend()


@pytest.mark.skipif(
    BACKEND == "torch",
    reason="eager PyTorch takes up to a minute an epoch of the README model "
    "on 2 busy cores (val_accuracy 1.0 after 8 epochs, measured); "
    "TensorFlow and JAX run the README",
)
def test_the_fifteen_line_model_trains_and_exports(tmp_path, monkeypatch):
    text = README.read_text(encoding="utf-8")
    section = text.split("## The fifteen-line model", 1)[1].split("\n## ")[0]
    blocks = python_blocks(section)
    assert len(blocks) == 3
    assert len(blocks[0].code.strip().splitlines()) <= 17  # 15 + imports
    monkeypatch.chdir(tmp_path)
    namespace, left_out = run_blocks(blocks, README, BACKEND)

    model = namespace["model"]
    assert model.output_shape == (None, None, 100)
    # The copy task is learned: held-out rows copied (the README's 1.0).
    assert max(namespace["history"].history["val_accuracy"]) >= 0.99
    ids, shifted = namespace["ids"][:4], namespace["shifted"][:4]
    predicted = np.argmax(model.predict([ids, shifted], verbose=0), axis=-1)
    assert (predicted == ids).mean() >= 0.99

    _check_the_other_sections(text, namespace, tmp_path)
    if left_out:
        assert BACKEND == "torch", left_out
        return
    # The SavedModel answers as the model does.
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed")
    import tensorflow as tf

    served = tf.saved_model.load(str(tmp_path / "copy_model"))
    outputs = served.serve([ids.astype("int32"), shifted.astype("int32")])
    np.testing.assert_allclose(
        np.asarray(outputs),
        keras.ops.convert_to_numpy(model([ids, shifted])),
        atol=1e-4,
    )


def _check_the_other_sections(text, namespace, directory):
    """The blocks after the fifteen-line model, run on from its namespace:
    a Llama-style block, the copy model's heads, a converted preset (which
    downloads, so it is marked skipped)."""
    rest = text.split("## The layers at a glance", 1)[1]
    blocks = python_blocks(rest)
    assert len(blocks) == 3
    _, left_out = run_blocks(blocks, README, BACKEND, namespace)
    assert left_out == ["downloads a preset"]

    llama = namespace["llama"]
    assert llama.self_attention.num_key_value_heads == 2
    assert llama.normalization == "rms_norm" and llama.use_gated_feedforward
    # Four attention layers: the encoder's two, the decoder's two.
    maps = namespace["maps"]
    assert len(maps) == 4
    for heads in maps.values():
        assert heads.shape == (2, 4, 8, 8)
        np.testing.assert_allclose(heads.sum(-1), 1.0, atol=1e-5)
    # The saved view carries every layer's maps, cross-attention from the
    # target's tokens to the source's.
    page = (directory / "copy_heads.html").read_text(encoding="utf-8")
    data = page.split('class="kmha-data">', 1)[1].split("</script>", 1)[0]
    layers = json.loads(data)["layers"]
    assert len(layers) == 4
    (cross,) = [layer for layer in layers if layer["kind"] == "cross-attention"]
    assert cross["queries"] == [str(t) for t in namespace["shifted"][0]]
    assert cross["keys"] == [str(t) for t in namespace["ids"][0]]
