"""Case 1: one encoder block trained and run for inference.

`keras_mha.TransformerEncoderBlock` against `keras_hub.layers.
TransformerEncoder` and a post-LN block assembled from
`keras.layers.MultiHeadAttention`, layer norms and a Dense feed-forward
network: the same width, heads, feed-forward width and inputs, so the same
FLOPs. Tokens per second of `train_on_batch` (the compiled `fit` step) and
`predict_on_batch`: on TensorFlow with `jit_compile` off and on, on JAX
compiled (JAX has no other way to run fast), on PyTorch eager (Keras's
default there), all under the global dtype policy.
"""

import numpy as np

from benchmarks.timing import attention_block_flops
from benchmarks.timing import fastest_of_interleaved
from benchmarks.timing import log
from benchmarks.timing import step_runner

IMPLS = ("keras_mha", "keras_hub", "keras")


def default_jits():
    """The `jit_compile` settings worth timing on the current backend."""
    import keras

    return {"tensorflow": (False, True), "jax": (True,), "torch": (False,)}[
        keras.backend.backend()
    ]


def _keras_block(x, num_heads, intermediate_dim):
    """Post-LN encoder block from `keras.layers.MultiHeadAttention`."""
    import keras

    width = x.shape[-1]
    y = keras.layers.MultiHeadAttention(num_heads, width // num_heads)(x, x)
    x = keras.layers.LayerNormalization(epsilon=1e-5)(x + y)
    y = keras.layers.Dense(intermediate_dim, activation="relu")(x)
    y = keras.layers.Dense(width)(y)
    return keras.layers.LayerNormalization(epsilon=1e-5)(x + y)


def build_model(impl, seq_length, width, num_heads, intermediate_dim, jit):
    """A compiled one-block model `(batch, seq, width) -> same` of `impl`."""
    import keras
    import keras_hub

    import keras_mha

    inputs = keras.Input((seq_length, width))
    if impl == "keras_mha":
        block = keras_mha.TransformerEncoderBlock(
            num_heads, intermediate_dim=intermediate_dim
        )
        outputs = block(inputs)
    elif impl == "keras_hub":
        block = keras_hub.layers.TransformerEncoder(intermediate_dim, num_heads)
        outputs = block(inputs)
    else:
        outputs = _keras_block(inputs, num_heads, intermediate_dim)
    model = keras.Model(inputs, outputs, name=f"encoder_{impl}")
    model.compile("adam", "mse", jit_compile=jit)
    return model


def run(
    shapes,
    width,
    num_heads,
    intermediate_dim,
    steps,
    rounds,
    peak,
    jits=None,
    device_resident=False,
):
    """Measures every impl at every shape; returns rows of the table.

    Args:
        shapes: `(batch, seq_length)` pairs.
        width, num_heads, intermediate_dim: the block's sizes.
        steps: dict with the steps per round of `"train"` and `"predict"`.
        rounds: interleaved rounds; each impl keeps its fastest.
        peak: the machine's matmul FLOP/s, for the fraction of it reached.
        jits: `jit_compile` settings to time; defaults to `default_jits()`.
        device_resident: JAX only: keep inputs and inference outputs on the
            device (a GPU), rather than copy them from and to NumPy every
            step; on a GPU those copies take as long as the block itself.

    Returns:
        A list of dicts, one per (shape, jit, mode, impl).
    """
    import keras

    backend = keras.backend.backend()
    policy = keras.config.dtype_policy().name
    rows = []
    rng = np.random.default_rng(0)
    for batch, seq_length in shapes:
        x = rng.standard_normal((batch, seq_length, width), dtype="float32")
        y = rng.standard_normal((batch, seq_length, width), dtype="float32")
        if device_resident:
            x, y = (
                keras.ops.convert_to_tensor(x),
                keras.ops.convert_to_tensor(y),
            )
        forward = attention_block_flops(
            batch * seq_length, width, intermediate_dim, seq_length
        )
        # A train step is the forward pass and a backward pass of about
        # twice its FLOPs.
        flops = {"train": 3 * forward, "predict": forward}
        for jit in jits or default_jits():
            label = (
                f"encoder {backend} b{batch} s{seq_length} "
                f"jit={'on' if jit else 'off'}"
            )
            log(f"{label}: building and compiling")
            models = {
                impl: build_model(
                    impl, seq_length, width, num_heads, intermediate_dim, jit
                )
                for impl in IMPLS
            }
            for model in models.values():
                for _ in range(2):  # trace and compile, then one warm step
                    model.train_on_batch(x, y)
                    model.predict_on_batch(x)
            for mode in ("train", "predict"):
                runners = {
                    impl: _runner(
                        model, mode, x, y, steps[mode], device_resident
                    )
                    for impl, model in models.items()
                }
                best = fastest_of_interleaved(
                    runners, rounds, f"{label} {mode}"
                )
                for impl in IMPLS:
                    seconds = best[impl] / steps[mode]
                    rows.append(
                        {
                            "backend": backend,
                            "dtype_policy": policy,
                            "batch": batch,
                            "seq_length": seq_length,
                            "jit_compile": jit,
                            "mode": mode,
                            "impl": impl,
                            "status": "ok",
                            "seconds_per_step": seconds,
                            "tokens_per_second": batch * seq_length / seconds,
                            "fraction_of_matmul_peak": flops[mode]
                            / seconds
                            / peak,
                        }
                    )
    return rows


def _runner(model, mode, x, y, steps, device_resident=False):
    if mode == "predict" and device_resident:
        return _device_predict(model, x, steps)
    return step_runner(model, mode, x, y, steps)


def _device_predict(model, x, steps):
    """JAX: `steps` compiled forward passes, outputs left on the device.

    The same program `predict_on_batch` compiles (the model's call under
    `jax.jit`, its weights as arguments), without its copy of the outputs
    to NumPy; waits for the last step.
    """
    import jax

    from benchmarks.timing import jax_stateless

    forward = jax.jit(jax_stateless(model, model.variables))
    values = [v.value for v in model.variables]

    def predict():
        for _ in range(steps):
            outputs = forward(values, x)
        jax.block_until_ready(outputs)

    predict()  # compiles
    return predict
