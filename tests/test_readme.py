"""The README's code runs as written and does what the README says."""

import importlib.util
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
