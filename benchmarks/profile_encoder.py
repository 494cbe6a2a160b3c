"""Times the sub-layers of our encoder block and keras_hub's, side by side.

Forward and forward + backward of: each whole block, each self-attention
layer, the feed-forward network (two `Dense` layers, the same in both
blocks; also on 2D tokens) and a layer norm, each compiled as the backend
compiles a `fit` step (`tf.function` on TensorFlow, `jax.jit` on JAX,
eager on PyTorch),
interleaved rounds, fastest of each. This is the profile behind the
encoder notes of docs/performance.md. Runs on the backend
`KERAS_BACKEND` names.

    python -m benchmarks.profile_encoder --batch 32 --seq 128
    KERAS_BACKEND=jax python -m benchmarks.profile_encoder
"""

import argparse
import json
import os
import time

import keras
import keras_hub
import numpy as np
from keras import ops

import keras_mha


def sublayers(x, num_heads, intermediate_dim):
    """`{name: (function of x, layers whose weights get gradients)}`."""
    ours = keras_mha.TransformerEncoderBlock(
        num_heads, intermediate_dim=intermediate_dim
    )
    hub = keras_hub.layers.TransformerEncoder(intermediate_dim, num_heads)
    ours(x), hub(x)
    hub_attention = hub._self_attention_layer
    ffn_in = keras.layers.Dense(intermediate_dim, activation="relu")
    ffn_out = keras.layers.Dense(x.shape[-1])
    norm = keras.layers.LayerNormalization(epsilon=1e-5)
    return {
        "keras_mha block": (ours, [ours]),
        "keras_hub block": (hub, [hub]),
        "keras_mha attention": (ours.self_attention, [ours.self_attention]),
        "keras_hub attention": (
            lambda x: hub_attention(x, x),
            [hub_attention],
        ),
        "feed-forward": (lambda x: ffn_out(ffn_in(x)), [ffn_in, ffn_out]),
        # The same layers on `(tokens, width)`: how our blocks run it on JAX.
        "feed-forward 2D": (
            lambda x: ops.reshape(
                ffn_out(ffn_in(ops.reshape(x, (-1, x.shape[-1])))), x.shape
            ),
            [ffn_in, ffn_out],
        ),
        "layer norm": (norm, [norm]),
    }


def compiled(call, layers, x, jit_compile):
    """Forward and forward + backward functions of `call`, each `x -> float`.

    Each returns a Python float, so a call returns once the work is done.
    """
    for layer in layers:
        if not layer.built:
            call(x)
    variables = [v for layer in layers for v in layer.trainable_variables]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _compiled_tensorflow(call, variables, jit_compile)
    if backend == "jax":
        return _compiled_jax(call, variables)
    return _eager_torch(call, variables)


def _compiled_tensorflow(call, variables, jit_compile):
    import tensorflow as tf

    @tf.function(jit_compile=jit_compile)
    def forward(x):
        return tf.reduce_sum(call(x))

    @tf.function(jit_compile=jit_compile)
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_mean(tf.square(call(x)))
        grads = tape.gradient(loss, [x, *variables])
        return tf.add_n([tf.reduce_sum(g) for g in grads if g is not None])

    return (
        lambda x: float(forward(x)),
        lambda x: float(forward_backward(x)),
    )


def _compiled_jax(call, variables):
    """`jax.jit` of stateless calls: the weights are arguments, as in fit."""
    import jax
    import jax.numpy as jnp

    from benchmarks.timing import jax_forward_backward
    from benchmarks.timing import jax_stateless

    stateless = jax_stateless(call, variables)
    forward = jax.jit(lambda values, x: jnp.sum(stateless(values, x)))
    forward_backward, values = jax_forward_backward(call, variables)
    return (
        lambda x: float(forward(values, x)),
        lambda x: float(forward_backward(values, x)),
    )


def _eager_torch(call, variables):
    import torch

    def forward(x):
        with torch.no_grad():
            return float(call(x).sum())

    def forward_backward(x):
        x = x.detach().requires_grad_(True)
        loss = call(x).square().mean()
        params = [v.value for v in variables]
        grads = torch.autograd.grad(loss, [x, *params], allow_unused=True)
        return float(sum(g.sum() for g in grads if g is not None))

    return forward, forward_backward


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--num-heads", type=int, default=8)
    parser.add_argument("--intermediate-dim", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--jit-compile",
        action="store_true",
        help="XLA on TensorFlow (JAX always compiles, PyTorch runs eager)",
    )
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    x = keras.ops.convert_to_tensor(
        np.random.default_rng(0).standard_normal(
            (args.batch, args.seq, args.width), dtype="float32"
        )
    )
    functions = {
        name: compiled(call, layers, x, args.jit_compile)
        for name, (call, layers) in sublayers(
            x, args.num_heads, args.intermediate_dim
        ).items()
    }
    for forward, forward_backward in functions.values():
        for _ in range(2):  # Trace, then warm up.
            forward(x), forward_backward(x)
    best = {name: [float("inf"), float("inf")] for name in functions}
    for _ in range(args.rounds):
        for name, (forward, forward_backward) in functions.items():
            for i, function in enumerate((forward, forward_backward)):
                start = time.perf_counter()
                function(x)
                best[name][i] = min(best[name][i], time.perf_counter() - start)
    print(f"backend {keras.backend.backend()}, pid {os.getpid()}")
    for name, (forward, both) in best.items():
        print(
            f"{name:20} forward {forward * 1e3:7.1f} ms   "
            f"forward+backward {both * 1e3:7.1f} ms"
        )
    print(
        json.dumps(
            {
                name: {"forward_ms": f * 1e3, "forward_backward_ms": b * 1e3}
                for name, (f, b) in best.items()
            }
        )
    )


if __name__ == "__main__":
    main()
