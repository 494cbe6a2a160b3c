"""What `pip install keras-mha` brings: the layers with Keras and NumPy
only, nothing that pulls TensorFlow; the application's parts name the
extra they need."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A backend other than TensorFlow, so that Keras itself loads no TF.
OTHER_BACKEND = next(
    (name for name in ("jax", "torch") if importlib.util.find_spec(name)),
    None,
)
needs_other_backend = pytest.mark.skipif(
    OTHER_BACKEND is None, reason="neither JAX nor PyTorch is installed"
)


def run_child(code, backend, python=sys.executable, cwd=ROOT):
    """Runs `code` in a fresh interpreter; returns its last stdout line as
    JSON."""
    result = subprocess.run(
        [python, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "KERAS_BACKEND": backend},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@needs_other_backend
def test_import_adds_no_package_to_keras():
    loaded = run_child(
        """
        import json, sys
        import keras
        before = {name.split(".")[0] for name in sys.modules}
        import keras_mha
        after = {name.split(".")[0] for name in sys.modules}
        print(json.dumps({
            "file": keras_mha.__file__,
            "added": sorted(after - before),
            "tensorflow": "tensorflow" in sys.modules,
        }))
        """,
        OTHER_BACKEND,
    )
    assert loaded["file"].startswith(ROOT)
    # The package's own modules and the standard library's only.
    assert [
        name
        for name in loaded["added"]
        if name != "keras_mha" and name not in sys.stdlib_module_names
    ] == []
    assert not loaded["tensorflow"]


@needs_other_backend
def test_a_missing_extra_is_named():
    # `sys.modules[name] = None` makes `import name` fail and `find_spec`
    # answer None, as when the module is not installed. One child runs the
    # three cases in turn (a failed import leaves no module behind).
    errors = run_child(
        """
        import json, sys
        import keras_mha

        def error_of(blocked, use):
            sys.modules[blocked] = None
            try:
                use()
            except ImportError as error:
                return str(error)
            finally:
                del sys.modules[blocked]

        def generate():
            model = keras_mha.TransformerCausalLM(
                20, hidden_dim=8, num_heads=2, intermediate_dim=8,
                num_layers=1,
            )
            keras_mha.generate(model, [[3, 4]], max_length=4)

        print(json.dumps({
            "tensorflow": error_of(
                "tensorflow", lambda: __import__("keras_mha.seq2seq")
            ),
            "sentencepiece": error_of(
                "sentencepiece", lambda: keras_mha.seq2seq
            ),
            "keras_hub": error_of("keras_hub", generate),
        }))
        """,
        OTHER_BACKEND,
    )
    extras = {"tensorflow": "text", "sentencepiece": "text", "keras_hub": "hub"}
    for blocked, extra in extras.items():
        assert errors[blocked] is not None, blocked
        assert f"pip install 'keras-mha[{extra}]'" in errors[blocked]
        assert f"`{blocked}`" in errors[blocked]


TRAIN_ON_JAX = """
import importlib.util, json
import keras
import numpy as np
import keras_mha

keras.utils.set_random_seed(0)
inputs = keras.Input((None,), dtype="int32")
x = keras.layers.Embedding(20, 16, mask_zero=True)(inputs)
x = keras_mha.SinusoidalPositionEncoding()(x)
x = keras_mha.TransformerEncoderBlock(2, intermediate_dim=16)(x)
x = keras_mha.MultiHeadSelfAttention(2)(x)
y = keras_mha.TransformerDecoderBlock(2, intermediate_dim=16)(x)
outputs = keras.layers.Dense(20)(y)
model = keras.Model(inputs, outputs)
model.compile(
    keras.optimizers.Adam(3e-3),
    keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)
ids = np.random.default_rng(0).integers(1, 20, size=(64, 6))
history = model.fit(ids, ids, epochs=20, batch_size=16, verbose=0)
print(json.dumps({
    "backend": keras.backend.backend(),
    "file": keras_mha.__file__,
    "tensorflow": importlib.util.find_spec("tensorflow") is not None,
    "keras_hub": importlib.util.find_spec("keras_hub") is not None,
    "losses": history.history["loss"],
}))
"""


@pytest.mark.slow
def test_wheel_without_extras_trains_on_jax(tmp_path):
    """The wheel in a fresh venv with no extras, plus jax[cpu]: no
    TensorFlow or keras_hub is installed, and the layers train."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            ROOT,
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("keras_mha-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", str(wheel), "jax[cpu]"],
        check=True,
        timeout=900,
    )
    trained = run_child(TRAIN_ON_JAX, "jax", python=python, cwd=tmp_path)
    assert trained["backend"] == "jax"
    assert trained["file"].startswith(str(venv))
    assert not trained["tensorflow"] and not trained["keras_hub"]
    losses = trained["losses"]
    assert losses[-1] < 0.8 * losses[0], losses
