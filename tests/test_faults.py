"""Faults during training: interruptions, divergence, and NaN sources.

- A run interrupted mid-epoch and restarted with `BackupAndRestore` ends
  with the weights of an uninterrupted run: in one process (an exception
  from a callback), and in a child process killed with SIGKILL (slow).
- `TerminateOnNaN` stops a diverging run.
- Our layers never create NaN themselves: a query with nothing to attend to
  outputs zeros (and has finite gradients), and inputs up to 1e3 under
  `mixed_float16` give finite outputs.
"""

import os
import signal
import subprocess
import sys
import threading

import keras
import numpy as np
import pytest

import keras_mha
import keras_mha.saving
from tests.layer_test_case import REPO_ROOT
from tests.reliability_helpers import build_translator
from tests.reliability_helpers import compile_translator
from tests.reliability_helpers import copy_task
from tests.reliability_helpers import load_arrays
from tests.reliability_helpers import run_worker
from tests.reliability_helpers import weights_as_arrays

BATCH_SIZE, BATCHES_PER_EPOCH, EPOCHS = 8, 4, 3


def _assert_same_weights(actual, expected, atol=1e-6):
    assert len(actual) == len(expected)
    for a, b in zip(actual, expected):
        np.testing.assert_allclose(a, b, atol=atol, rtol=1e-5)


class _Interrupt(keras.callbacks.Callback):
    """Raises after `at_step` training steps, like a crash mid-epoch."""

    def __init__(self, at_step):
        super().__init__()
        self.at_step = at_step
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps == self.at_step:
            raise RuntimeError("interrupted")


def _fit(model, backup_dir=None, callbacks=(), epochs=EPOCHS):
    inputs, targets = copy_task(BATCHES_PER_EPOCH * BATCH_SIZE, 6, seed=1)
    callbacks = list(callbacks)
    if backup_dir is not None:
        callbacks.insert(0, keras.callbacks.BackupAndRestore(backup_dir))
    return model.fit(
        inputs,
        targets,
        batch_size=BATCH_SIZE,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
    )


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    backup_dir = str(tmp_path / "backup")
    reference = compile_translator(build_translator(seed=0))
    _fit(reference, epochs=2)

    crashed = compile_translator(build_translator(seed=0))
    # Mid-epoch: one batch into the second epoch.
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit(crashed, backup_dir, [_Interrupt(BATCHES_PER_EPOCH + 1)], 2)
    assert os.path.exists(os.path.join(backup_dir, "latest.weights.h5"))

    resumed = compile_translator(build_translator(seed=0))
    history = _fit(resumed, backup_dir, epochs=2)
    assert len(history.history["loss"]) == 1  # Only the second epoch reran.
    _assert_same_weights(
        weights_as_arrays(resumed), weights_as_arrays(reference), atol=1e-5
    )
    # And training did move the weights.
    initial = weights_as_arrays(build_translator(seed=0))
    assert (
        max(
            np.abs(a - b).max()
            for a, b in zip(weights_as_arrays(resumed), initial)
        )
        > 1e-2
    )


@pytest.mark.slow
def test_sigkilled_run_resumes_and_its_checkpoint_loads(tmp_path):
    """A child process SIGKILLed mid-epoch, restarted from its backup."""
    reference_dir, run_dir = tmp_path / "reference", tmp_path / "run"
    reference_dir.mkdir()
    run_dir.mkdir()
    run_worker("train_with_backup", reference_dir, "--epochs", EPOCHS)

    hang_at = 2 * BATCHES_PER_EPOCH + 2  # Two batches into the third epoch.
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.reliability_helpers",
            "train_with_backup",
            "--workdir",
            str(run_dir),
            "--epochs",
            str(EPOCHS),
            "--hang-at",
            str(hang_at),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    # Never wait forever on a child that fails to reach the kill point.
    watchdog = threading.Timer(300, child.kill)
    watchdog.start()
    last_step = 0
    try:
        for line in child.stdout:
            if line.startswith("STEP"):
                last_step = int(line.split()[1])
            if line.startswith("WAITING"):
                child.send_signal(signal.SIGKILL)
                break
        child.wait(timeout=60)
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
        child.stdout.close()
    assert last_step == hang_at
    assert child.returncode == -signal.SIGKILL

    # The checkpoint written at the end of the second epoch still loads, in
    # safe mode, and predicts.
    checkpoint = keras_mha.saving.load_model(str(run_dir / "checkpoint.keras"))
    inputs, _ = copy_task(4, 6, seed=2)
    assert np.all(np.isfinite(checkpoint.predict(inputs, verbose=0)))

    result = run_worker("train_with_backup", run_dir, "--epochs", EPOCHS)
    assert '"epochs_run": 1' in result.stdout  # Resumed in the third epoch.
    _assert_same_weights(
        load_arrays(run_dir / "train_with_backup.npz"),
        load_arrays(reference_dir / "train_with_backup.npz"),
    )


def test_terminate_on_nan_stops_a_diverging_run():
    model = build_translator(seed=0)
    # A learning rate this large makes the weights, then the loss, blow up.
    model.compile(
        optimizer=keras.optimizers.SGD(1e4, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    losses = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: losses.append(logs["loss"])
    )
    _fit(model, callbacks=[keras.callbacks.TerminateOnNaN(), record])
    assert model.stop_training
    assert len(losses) < EPOCHS * BATCHES_PER_EPOCH
    assert not np.isfinite(losses[-1])
    assert np.all(np.isfinite(losses[:-1]))


def _floats(*shape, scale=1.0):
    rng = np.random.default_rng(0)
    return (scale * rng.uniform(-1, 1, shape)).astype("float32")


@pytest.mark.parametrize("path", ["fused", "scores", "dropout"])
def test_query_with_nothing_to_attend_to_outputs_zeros(path):
    """Fully padded rows, and a causal row whose only key is padding."""
    layer = keras_mha.MultiHeadSelfAttention(
        3,
        use_bias=False,
        use_causal_mask=True,
        dropout=0.5 if path == "dropout" else 0.0,
        seed=0,
    )
    x = _floats(3, 5, 12)
    mask = np.ones((3, 5), bool)
    mask[0] = False  # An empty sequence.
    mask[1, 3:] = False  # Right padding.
    mask[2, 0] = False  # Left padding: query 0 may only see key 0.
    outputs = layer(
        x,
        mask=mask,
        training=path == "dropout",
        return_attention_scores=path == "scores",
    )
    if path == "scores":
        outputs, scores = outputs
        scores = keras.ops.convert_to_numpy(scores)
        assert np.all(scores[0] == 0.0) and np.all(scores[2, :, 0] == 0.0)
    outputs = keras.ops.convert_to_numpy(outputs)
    assert np.all(np.isfinite(outputs))
    assert np.all(outputs[0] == 0.0)
    assert np.all(outputs[1, 3:] == 0.0)
    assert np.all(outputs[2, 0] == 0.0)
    assert np.all(np.abs(outputs[1, :3]).sum(-1) > 0)


def test_cross_attention_with_fully_masked_rows_outputs_zeros():
    layer = keras_mha.MultiHeadAttention(3, use_bias=False)
    query, value = _floats(2, 4, 12), _floats(2, 6, 12)
    value_mask = np.ones((2, 6), bool)
    value_mask[0] = False  # An empty source sentence.
    attention_mask = np.ones((2, 4, 6), bool)
    attention_mask[1, 2] = False  # One query may see nothing.
    outputs = keras.ops.convert_to_numpy(
        layer(
            query, value, value_mask=value_mask, attention_mask=attention_mask
        )
    )
    assert np.all(outputs[0] == 0.0) and np.all(outputs[1, 2] == 0.0)
    assert np.all(np.abs(outputs[1, [0, 1, 3]]).sum(-1) > 0)


def test_empty_sequences_in_a_batch_train_with_finite_weights():
    """An all-padding source and target row: no NaN gradients."""
    model = compile_translator(build_translator(seed=0))
    (source, target_in), target_out = copy_task(16, 6, seed=1)
    source[0] = 0
    target_in[1], target_out[1] = 0, 0
    history = model.fit(
        (source, target_in), target_out, batch_size=8, epochs=2, verbose=0
    )
    assert np.all(np.isfinite(history.history["loss"]))
    for weight in weights_as_arrays(model):
        assert np.all(np.isfinite(weight))


FLOAT16_MAX = 65504.0

MIXED_PRECISION_CASES = [
    ("self-attention", lambda: keras_mha.MultiHeadSelfAttention(4), ("x",)),
    (
        "self-attention-causal-scores",
        lambda: keras_mha.MultiHeadSelfAttention(4, use_causal_mask=True),
        ("x", "scores"),
    ),
    ("cross-attention", lambda: keras_mha.MultiHeadAttention(4), ("x", "e")),
    (
        "encoder-block",
        lambda: keras_mha.TransformerEncoderBlock(4, intermediate_dim=32),
        ("x",),
    ),
    (
        "decoder-block",
        lambda: keras_mha.TransformerDecoderBlock(4, intermediate_dim=32),
        ("x", "e"),
    ),
    (
        "position-encoding",
        lambda: keras_mha.SinusoidalPositionEncoding(),
        ("x",),
    ),
]


@pytest.mark.parametrize(
    "make_layer, args",
    [case[1:] for case in MIXED_PRECISION_CASES],
    ids=[case[0] for case in MIXED_PRECISION_CASES],
)
def test_large_inputs_stay_finite_under_mixed_float16(make_layer, args):
    keras.config.set_dtype_policy("mixed_float16")
    tensors = {
        "x": _floats(2, 6, 16, scale=1e3),
        "e": _floats(2, 7, 16, scale=1e3),
    }
    layer = make_layer()
    inputs = [tensors[name] for name in args if name != "scores"]
    outputs = layer(
        *inputs,
        **({"return_attention_scores": True} if "scores" in args else {}),
    )
    for output in keras.tree.flatten(outputs):
        assert keras.backend.standardize_dtype(output.dtype) == "float16"
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(output)))


def test_float16_logits_overflow_where_keras_attention_fails():
    """The inputs above do overflow float16 logits; Keras's own layer, asked
    for its scores, returns non-finite values there, ours finite ones."""
    keras.config.set_dtype_policy("mixed_float16")
    x = _floats(2, 6, 16, scale=1e3)
    ours = keras_mha.MultiHeadSelfAttention(4)
    outputs, scores = ours(x, return_attention_scores=True)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(outputs)))
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(scores)))
    # The float32 logits of our layer's own projections exceed float16.
    kernel = keras.ops.convert_to_numpy(ours.qkv_dense.kernel)
    q = np.einsum("btd,dnh->btnh", x, kernel[..., :4])
    k = np.einsum("btd,dnh->btnh", x, kernel[..., 4:8])
    logits = np.einsum("btnh,bsnh->bnts", q, k) / 2.0
    assert np.abs(logits).max() > FLOAT16_MAX

    theirs = keras.layers.MultiHeadAttention(num_heads=4, key_dim=4)
    outputs, _ = theirs(x, x, return_attention_scores=True)
    assert not np.all(np.isfinite(keras.ops.convert_to_numpy(outputs)))
