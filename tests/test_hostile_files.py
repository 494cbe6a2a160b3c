"""Hostile, corrupt and half-written model files.

- A `.keras` file whose config was tampered with (a `Lambda` carrying code,
  a class that doesn't exist, a module that isn't Keras) is refused in safe
  mode, and the code in it never runs. Our own layers load in safe mode.
- A truncated or corrupt `.keras` file, or SavedModel, fails with an error
  that says what is wrong with which file.
- `keras_mha.saving.save_model` replaces a file atomically: a save that
  fails midway, or a process killed while saving, leaves the old file.
"""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import keras
import numpy as np
import pytest

import keras_mha
import keras_mha.saving
from tests.layer_test_case import REPO_ROOT
from tests.reliability_helpers import build_translator
from tests.reliability_helpers import copy_task

BACKEND = keras.backend.backend()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A saved translator, its inputs and its outputs."""
    path = str(tmp_path_factory.mktemp("model") / "translator.keras")
    model = build_translator(seed=0)
    inputs, _ = copy_task(4, 6, seed=2)
    keras_mha.saving.save_model(model, path)
    return path, inputs, keras.ops.convert_to_numpy(model(inputs))


def _rewrite_archive(source, target, config=None, members=None):
    """Copies a `.keras` zip, replacing its config or raw members."""
    with zipfile.ZipFile(source) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    if config is not None:
        contents["config.json"] = json.dumps(config).encode()
    contents.update(members or {})
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)


def _config(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json"))


def _find_layer(config, class_name):
    for layer in config["config"]["layers"]:
        if layer["class_name"] == class_name:
            return layer
    raise KeyError(class_name)


def test_our_layers_load_in_safe_mode(model_file):
    path, inputs, expected = model_file
    for load in (keras.saving.load_model, keras_mha.saving.load_model):
        loaded = load(path, safe_mode=True)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(loaded(inputs)), expected, atol=1e-6
        )


def test_lambda_layer_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "code-ran"

    # A lambda is stored as bytecode; a named function only by its name.
    touch_marker = lambda x, path: (open(path, "w").close(), x)[1]
    inputs = keras.Input((4, 12))
    x = keras_mha.TransformerEncoderBlock(3, intermediate_dim=7)(inputs)
    x = keras.layers.Lambda(touch_marker, arguments={"path": str(marker)})(x)
    path = str(tmp_path / "lambda.keras")
    keras.Model(inputs, x).save(path)
    marker.unlink()  # Building the model above ran the function once.

    for load in (keras.saving.load_model, keras_mha.saving.load_model):
        with pytest.raises(ValueError, match="safe_mode"):
            load(path)
        assert not marker.exists()
    # The contrast: outside safe mode, loading runs the file's code.
    keras.saving.load_model(path, safe_mode=False)
    assert marker.exists()


# (id, replacement of the encoder block's class fields, payload kind)
TAMPERED_CLASSES = [
    (
        "unknown-class",
        {"class_name": "NotALayer", "registered_name": "evil>NotALayer"},
        "python",
    ),
    (
        "unknown-module",
        {
            "module": "evil_module",
            "class_name": "Payload",
            "registered_name": None,
        },
        "python",
    ),
    (
        "os-system",
        {"module": "os", "class_name": "system", "registered_name": None},
        "shell",
    ),
    (
        "builtins-exec",
        {"module": "builtins", "class_name": "exec", "registered_name": None},
        "python",
    ),
]


@pytest.mark.parametrize(
    "changes, payload",
    [case[1:] for case in TAMPERED_CLASSES],
    ids=[case[0] for case in TAMPERED_CLASSES],
)
def test_tampered_class_is_refused_and_never_runs(
    model_file, tmp_path, changes, payload
):
    marker = tmp_path / "code-ran"
    config = _config(model_file[0])
    layer = _find_layer(config, "TransformerEncoderBlock")
    layer.update(changes)
    # What the class would run if the loader ever called it on its config.
    layer["config"] = {
        "command": (
            f"touch {marker}"
            if payload == "shell"
            else f"open({str(marker)!r}, 'w').close()"
        )
    }
    path = str(tmp_path / "tampered.keras")
    _rewrite_archive(model_file[0], path, config=config)
    for safe_mode in (True, False):
        with pytest.raises(
            TypeError,
            match=(f"Could not locate class '{changes['class_name']}'"),
        ):
            keras_mha.saving.load_model(path, safe_mode=safe_mode)
    assert not marker.exists()


def _damaged_copies(path, directory):
    data = open(path, "rb").read()
    flipped = bytearray(data)
    middle = len(data) // 2
    flipped[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle:][:64])
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json")
    damaged = {
        "truncated-half": data[: len(data) // 2],
        "truncated-to-10-bytes": data[:10],
        "empty": b"",
        "random-bytes": np.random.default_rng(0).bytes(4096),
        "flipped-bytes": bytes(flipped),
    }
    paths = {}
    for name, blob in damaged.items():
        paths[name] = os.path.join(directory, f"{name}.keras")
        with open(paths[name], "wb") as f:
            f.write(blob)
    paths["config-not-json"] = os.path.join(directory, "config.keras")
    _rewrite_archive(
        path,
        paths["config-not-json"],
        members={"config.json": config[: len(config) // 2]},
    )
    return paths


DAMAGE = [
    "truncated-half",
    "truncated-to-10-bytes",
    "empty",
    "random-bytes",
    "flipped-bytes",
    "config-not-json",
]


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_keras_file_gives_a_clear_error(model_file, tmp_path, damage):
    path = _damaged_copies(model_file[0], tmp_path)[damage]
    with pytest.raises(ValueError) as info:
        keras_mha.saving.load_model(path)
    message = str(info.value)
    assert "not a readable `.keras` archive" in message
    assert path in message and "truncated or corrupt" in message


def test_missing_and_misnamed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        keras_mha.saving.load_model(tmp_path / "missing.keras")
    for function, args in [
        (keras_mha.saving.load_model, ()),
        (keras_mha.saving.save_model, (keras.Sequential(),)),
    ]:
        with pytest.raises(ValueError, match=r"ending in `\.keras`.*\.h5"):
            if args:
                function(*args, tmp_path / "model.h5")
            else:
                function(tmp_path / "model.h5")


@pytest.mark.skipif(BACKEND != "tensorflow", reason="SavedModel needs TF")
def test_damaged_saved_model_gives_a_clear_error(tmp_path):
    import tensorflow as tf

    model = build_translator(seed=0)
    export_dir = str(tmp_path / "export")
    model.export(export_dir, verbose=False)
    pb = os.path.join(export_dir, "saved_model.pb")
    data = open(pb, "rb").read()
    with open(pb, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(OSError, match="saved_model.pb"):
        tf.saved_model.load(export_dir)

    # Truncated variables: the graph parses, the weights do not.
    model.export(export_dir + "2", verbose=False)
    variables = os.path.join(export_dir + "2", "variables")
    shard = next(
        os.path.join(variables, name)
        for name in os.listdir(variables)
        if "data" in name
    )
    data = open(shard, "rb").read()
    with open(shard, "wb") as f:
        f.write(data[: len(data) // 3])
    with pytest.raises(ValueError, match="not a readable SavedModel") as info:
        keras_mha.seq2seq.serving.load_saved_model(export_dir + "2")
    assert export_dir + "2" in str(info.value)
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        keras_mha.seq2seq.serving.load_saved_model(tmp_path)


def _weights(path):
    model = keras_mha.saving.load_model(path, compile=False)
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def test_save_replaces_the_file_atomically(model_file, tmp_path):
    path = str(tmp_path / "model.keras")
    old_model, new_model = build_translator(seed=0), build_translator(seed=1)
    keras_mha.saving.save_model(old_model, path)
    old_bytes = open(path, "rb").read()

    keras_mha.saving.save_model(new_model, path, overwrite=True)
    assert open(path, "rb").read() != old_bytes
    for saved, expected in zip(_weights(path), new_model.weights):
        np.testing.assert_array_equal(
            saved, keras.ops.convert_to_numpy(expected)
        )
    assert os.listdir(tmp_path) == ["model.keras"]  # No temporary left.
    with pytest.raises(FileExistsError, match="overwrite=False"):
        keras_mha.saving.save_model(new_model, path, overwrite=False)


@pytest.mark.parametrize("fail_in", ["writing", "renaming"])
def test_failed_save_leaves_the_old_file(tmp_path, monkeypatch, fail_in):
    path = str(tmp_path / "model.keras")
    keras_mha.saving.save_model(build_translator(seed=0), path)
    old_bytes = open(path, "rb").read()

    if fail_in == "writing":
        real_save = keras.saving.save_model

        def save_then_fail(model, filepath, **kwargs):
            real_save(model, filepath, **kwargs)
            with open(filepath, "r+b") as f:  # Half a file, then an error.
                f.truncate(os.path.getsize(filepath) // 2)
            raise OSError("disk full")

        monkeypatch.setattr(keras.saving, "save_model", save_then_fail)
    else:

        def fail_replace(source, target):
            raise OSError("rename failed")

        monkeypatch.setattr(keras_mha.saving.os, "replace", fail_replace)

    with pytest.raises(OSError, match="disk full|rename failed"):
        keras_mha.saving.save_model(build_translator(seed=1), path)
    assert open(path, "rb").read() == old_bytes
    assert os.listdir(tmp_path) == ["model.keras"]  # Temporary removed.
    keras_mha.saving.load_model(path)


_SAVE_LOOP = """
import sys
import keras_mha.saving
from tests.reliability_helpers import build_translator
models = [build_translator(seed=0), build_translator(seed=1)]
print("SAVING", flush=True)
i = 0
while True:
    keras_mha.saving.save_model(models[i % 2], sys.argv[1])
    i += 1
"""


@pytest.mark.slow
def test_process_killed_while_saving_leaves_a_loadable_file(tmp_path):
    """SIGKILL at random moments of a save loop; the file always loads."""
    path = str(tmp_path / "model.keras")
    keras_mha.saving.save_model(build_translator(seed=0), path)
    rng = np.random.default_rng(0)
    for _attempt in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", _SAVE_LOOP, path],
            cwd=REPO_ROOT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert child.stdout.readline().strip() == "SAVING"
            time.sleep(rng.uniform(0.5, 2.0))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
            child.stdout.close()
        keras_mha.saving.load_model(path)
