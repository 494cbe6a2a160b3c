"""What every benchmark case shares: timing, matmul throughput, the machine.

Peers are timed in interleaved rounds (ours, peer, peer, ours, ...) and each
keeps its fastest round, so a burst of load from other processes on a shared
machine slows one round of everyone rather than all rounds of one model.
"""

import math
import os
import platform
import time


def log(message):
    """Progress on stdout, flushed: a long run shows where it is."""
    print(message, flush=True)


def fastest_of_interleaved(runners, rounds, label):
    """Times each runner once per round, rounds interleaved; keeps the best.

    Args:
        runners: dict of name to a callable that does one round of work and
            returns only when the work is done (results fetched to NumPy).
        rounds: int, rounds per runner.
        label: str, printed with the progress of each round.

    Returns:
        dict of name to the fastest round in seconds.
    """
    best = {name: math.inf for name in runners}
    for round_index in range(rounds):
        for name, runner in runners.items():
            start = time.perf_counter()
            runner()
            best[name] = min(best[name], time.perf_counter() - start)
        times = ", ".join(f"{name} {best[name]:.3f}s" for name in runners)
        log(f"  {label} round {round_index + 1}/{rounds}: {times}")
    return best


def comma_list(parser, flag, text, allowed):
    """The names of `allowed` that `text` (comma-separated) lists, in the
    order of `allowed`; refuses, through `parser`, an unknown or no name."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if set(names) - set(allowed) or not names:
        parser.error(
            f"{flag} expected some of {', '.join(allowed)}. "
            f"Received: {flag}={text}"
        )
    return [name for name in allowed if name in names]


def step_runner(model, mode, x, y, steps):
    """One round: `steps` steps of `model`, `"train"` (`train_on_batch`)
    or `"predict"` (`predict_on_batch`)."""
    if mode == "train":
        return lambda: [model.train_on_batch(x, y) for _ in range(steps)]
    return lambda: [model.predict_on_batch(x) for _ in range(steps)]


def matmul_flops_per_second(size=1024, repeats=8, rounds=5, dtype="float32"):
    """The machine's matmul throughput (FLOP/s) on the Keras backend.

    A `size x size` by `size x size` product repeated `repeats` times in one
    compiled function (`tf.function`, `jax.jit`; eager on PyTorch), the
    fastest of `rounds` rounds: the ceiling the models' own dense layers
    can reach here, measured in the same process and the same run. On a
    GPU pass `dtype="bfloat16"` for the ceiling of mixed-precision models.
    """
    import keras

    products = {
        "tensorflow": _products_tensorflow,
        "jax": _products_jax,
        "torch": _products_torch,
    }[keras.backend.backend()](size, repeats, dtype)
    products()
    seconds = fastest_of_interleaved({"matmul": products}, rounds, "matmul")
    return 2 * size**3 * repeats / seconds["matmul"]


# Each returns a callable that runs the chained products and waits for
# them: feeding each product into the next keeps the compiler from running
# them in parallel or folding them away.


def _products_tensorflow(size, repeats, dtype):
    import tensorflow as tf

    a = tf.cast(tf.random.normal((size, size)), dtype)
    b = tf.cast(tf.random.normal((size, size)), dtype)

    @tf.function
    def products(a, b):
        total = tf.zeros((size, size), dtype)
        for _ in range(repeats):
            total = tf.matmul(a + total * 1e-9, b)
        return tf.reduce_sum(tf.cast(total, "float32"))

    return lambda: products(a, b).numpy()


def _products_jax(size, repeats, dtype):
    import jax
    import jax.numpy as jnp

    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (size, size)).astype(dtype)
    b = jax.random.normal(key_b, (size, size)).astype(dtype)

    @jax.jit
    def products(a, b):
        total = jnp.zeros((size, size), dtype)
        for _ in range(repeats):
            total = (a + total * 1e-9) @ b
        return jnp.sum(total.astype("float32"))

    return lambda: float(products(a, b))


def _products_torch(size, repeats, dtype):
    import torch
    from keras.src.backend.torch.core import get_device

    dtype = getattr(torch, dtype)
    a = torch.randn((size, size), device=get_device()).to(dtype)
    b = torch.randn((size, size), device=get_device()).to(dtype)

    def products():
        with torch.no_grad():
            total = torch.zeros_like(a)
            for _ in range(repeats):
                total = (a + total * 1e-9) @ b
            return float(total.float().sum())

    return products


def jax_stateless(call, variables):
    """`call(x)` as a pure `(values, x) -> outputs` of the variables' values.

    The weights become arguments of the compiled function, as in a JAX
    `fit` step, rather than constants folded into it.
    """
    import keras

    def stateless(values, x):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return call(x)

    return stateless


def jax_forward_backward(call, variables):
    """A `jax.jit` forward + backward of `call`, and the variables' values.

    The function maps `(values, x)` to a float32 scalar that depends on
    every gradient (of the mean square of the outputs, with respect to the
    weights and `x`), so calling it runs the whole backward pass.
    """
    import jax
    import jax.numpy as jnp

    stateless = jax_stateless(call, variables)

    def loss(values, x):
        return jnp.mean(jnp.square(stateless(values, x).astype("float32")))

    @jax.jit
    def forward_backward(values, x):
        grads = jax.grad(loss, argnums=(0, 1))(values, x)
        leaves = jax.tree_util.tree_leaves(grads)
        return sum(jnp.sum(g.astype("float32")) for g in leaves)

    return forward_backward, [v.value for v in variables]


def accelerators():
    """Names of the backend's GPUs, or `None` when it runs on the CPU."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        if jax.default_backend() == "cpu":
            return None
        return [device.device_kind for device in jax.devices()]
    if backend == "torch":
        import torch

        if not torch.cuda.is_available():
            return None
        count = torch.cuda.device_count()
        return [torch.cuda.get_device_name(i) for i in range(count)]
    import tensorflow as tf

    return [gpu.name for gpu in tf.config.list_physical_devices("GPU")] or None


def machine():
    """CPU model and core count from /proc/cpuinfo, and the software."""
    import importlib.metadata

    import keras
    import keras_hub

    model, cores = platform.processor() or "unknown", os.cpu_count()
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        names = [
            line.split(":", 1)[1].strip()
            for line in lines
            if line.startswith("model name")
        ]
        if names:
            model, cores = names[0], len(names)
    except OSError:
        pass
    backend = keras.backend.backend()
    versions = {}
    for package in ("tensorflow", "jax", "torch"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": model,
        "cores": cores,
        "gpu": accelerators(),
        "python": platform.python_version(),
        **versions,
        "keras": keras.__version__,
        "keras_hub": keras_hub.__version__,
        "backend": backend,
        "backend_version": versions.get(backend),
    }


def attention_block_flops(tokens, width, intermediate_dim, key_length):
    """Forward matmul FLOPs of one Transformer block for `tokens` queries.

    The q, k, v and output projections (4 d^2 multiply-adds a token), the
    feed-forward network (2 d f) and the attention itself (q k^T and p v,
    2 s d) with `key_length` keys per query. Layer norms, softmax and
    biases are left out: they are not matmuls.
    """
    per_token = 2 * (4 * width**2 + 2 * width * intermediate_dim)
    return tokens * (per_token + 4 * key_length * width)
