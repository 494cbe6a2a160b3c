"""A small translator, its data, and the training runs the reliability tests
start in fresh processes (killed runs, several devices).

As a script, `python -m tests.reliability_helpers RUN --workdir DIR ...`
runs one training run and writes its final weights to `DIR/RUN.npz`.
"""

import argparse
import json
import os
import sys
import time

import keras
import numpy as np

import keras_mha
from tests.layer_test_case import REPO_ROOT

VOCAB, WIDTH, HEADS, FFN = 23, 12, 3, 7
START_ID = 1


def build_translator(seed=0, dropout=0.0):
    """Encoder-decoder model of every public layer: ids in, logits out."""
    keras.utils.set_random_seed(seed)
    source = keras.Input((None,), dtype="int32", name="source")
    target = keras.Input((None,), dtype="int32", name="target")
    x = keras.layers.Embedding(VOCAB, WIDTH, mask_zero=True)(source)
    x = keras_mha.SinusoidalPositionEncoding()(x)
    x = keras_mha.TransformerEncoderBlock(
        HEADS, intermediate_dim=FFN, dropout=dropout
    )(x)
    y = keras.layers.Embedding(VOCAB, WIDTH, mask_zero=True)(target)
    y = keras_mha.SinusoidalPositionEncoding()(y)
    y = keras_mha.TransformerDecoderBlock(
        HEADS, intermediate_dim=FFN, dropout=dropout
    )(y, x)
    logits = keras.layers.Dense(VOCAB, name="logits")(y)
    return keras.Model([source, target], logits)


def compile_translator(model, learning_rate=1e-2):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def copy_task(num_samples, length, seed=0, padded=True):
    """`((source, target_in), target_out)` int32 arrays of a copy task.

    With `padded`, each row has a random length in `[2, length]` and zeros
    (padding) after it; without, every row is full.
    """
    rng = np.random.default_rng(seed)
    source = rng.integers(2, VOCAB, (num_samples, length)).astype("int32")
    if padded:
        lengths = rng.integers(2, length + 1, num_samples)
        source[np.arange(length)[None] >= lengths[:, None]] = 0
    start = np.full((num_samples, 1), START_ID, "int32")
    target_in = np.concatenate([start, source[:, :-1]], axis=1)
    target_in[source == 0] = 0
    return (source, target_in), source


def weights_as_arrays(model):
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def save_arrays(path, arrays):
    np.savez(path, *arrays)


def load_arrays(path):
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def run_worker(run, workdir, *args, env=None, timeout=300):
    """Runs `python -m tests.reliability_helpers RUN` to completion."""
    import subprocess

    command = [sys.executable, "-m", "tests.reliability_helpers", run]
    command += ["--workdir", str(workdir), *map(str, args)]
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited with {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


class _StepReporter(keras.callbacks.Callback):
    """Prints every finished step; at `hang_at` it stops to be killed."""

    def __init__(self, hang_at):
        super().__init__()
        self.hang_at = hang_at
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        print(f"STEP {self.steps}", flush=True)
        if self.steps == self.hang_at:
            print("WAITING TO BE KILLED", flush=True)
            time.sleep(600)


def train_with_backup(workdir, epochs, batch_size, hang_at):
    """Fits the translator with `BackupAndRestore` and an epoch checkpoint."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    model = compile_translator(build_translator(seed=0))
    inputs, targets = copy_task(4 * batch_size, 6, seed=1)
    history = model.fit(
        inputs,
        targets,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[
            keras.callbacks.BackupAndRestore(
                os.path.join(workdir, "backup"), save_freq="epoch"
            ),
            keras.callbacks.ModelCheckpoint(
                os.path.join(workdir, "checkpoint.keras"), save_freq="epoch"
            ),
            _StepReporter(hang_at),
        ],
    )
    save_arrays(
        os.path.join(workdir, "train_with_backup.npz"),
        weights_as_arrays(model),
    )
    print(json.dumps({"epochs_run": len(history.history["loss"])}))


def _data_parallel_run(make_scope, steps, global_batch):
    model_scope = make_scope()
    with model_scope:
        model = build_translator(seed=0)
        model.compile(
            optimizer=keras.optimizers.SGD(0.5),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    # Full rows: with padding, each replica would average its loss over its
    # own token count, a different weighting than one device's.
    inputs, targets = copy_task(steps * global_batch, 6, seed=1, padded=False)
    model.fit(
        inputs,
        targets,
        batch_size=global_batch,
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    return model


def mirrored_strategy(workdir, steps, global_batch):
    """Single-device vs `MirroredStrategy` over two logical CPUs (TF)."""
    import contextlib

    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    tf.config.experimental.enable_op_determinism()
    save_arrays(
        os.path.join(workdir, "initial.npz"),
        weights_as_arrays(build_translator(seed=0)),
    )
    single = _data_parallel_run(contextlib.nullcontext, steps, global_batch)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    parallel = _data_parallel_run(strategy.scope, steps, global_batch)
    save_arrays(os.path.join(workdir, "single.npz"), weights_as_arrays(single))
    save_arrays(
        os.path.join(workdir, "parallel.npz"), weights_as_arrays(parallel)
    )
    kernel = parallel.get_layer("logits").kernel.value
    print(
        json.dumps(
            {
                "replicas": strategy.num_replicas_in_sync,
                "kernel_copies": len(getattr(kernel, "values", [kernel])),
            }
        )
    )


def jax_data_parallel(workdir, steps, global_batch):
    """Single-device vs `keras.distribution.DataParallel` on two devices."""
    import contextlib

    import jax

    save_arrays(
        os.path.join(workdir, "initial.npz"),
        weights_as_arrays(build_translator(seed=0)),
    )
    single = _data_parallel_run(contextlib.nullcontext, steps, global_batch)
    devices = keras.distribution.list_devices("cpu")
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices)
    )
    parallel = _data_parallel_run(contextlib.nullcontext, steps, global_batch)
    save_arrays(os.path.join(workdir, "single.npz"), weights_as_arrays(single))
    save_arrays(
        os.path.join(workdir, "parallel.npz"), weights_as_arrays(parallel)
    )
    kernel = parallel.get_layer("logits").kernel.value
    print(
        json.dumps(
            {
                "devices": len(devices),
                "jax_devices": jax.device_count(),
                "kernel_devices": len(kernel.sharding.device_set),
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "run", choices=["train_with_backup", "mirrored", "jax_data_parallel"]
    )
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--hang-at", type=int, default=-1)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    if args.run == "train_with_backup":
        train_with_backup(
            args.workdir, args.epochs, args.batch_size, args.hang_at
        )
    elif args.run == "mirrored":
        mirrored_strategy(args.workdir, args.steps, args.batch_size)
    else:
        jax_data_parallel(args.workdir, args.steps, args.batch_size)


if __name__ == "__main__":
    main()
