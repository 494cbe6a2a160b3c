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


def matmul_flops_per_second(size=1024, repeats=8, rounds=5):
    """The machine's float32 matmul throughput (FLOP/s) through TensorFlow.

    A `size x size` by `size x size` product repeated `repeats` times in one
    graph, the fastest of `rounds` rounds: the ceiling the models' own dense
    layers can reach here, measured in the same process and the same run.
    """
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))

    @tf.function
    def products(a, b):
        total = tf.zeros((size, size))
        for _ in range(repeats):
            # Feeding each product into the next keeps the graph from
            # running them in parallel or folding them away.
            total = tf.matmul(a + total * 1e-9, b)
        return tf.reduce_sum(total)

    products(a, b).numpy()
    seconds = fastest_of_interleaved(
        {"matmul": lambda: products(a, b).numpy()}, rounds, "matmul"
    )["matmul"]
    return 2 * size**3 * repeats / seconds


def machine():
    """CPU model and core count from /proc/cpuinfo, and the software."""
    import keras
    import keras_hub
    import tensorflow as tf

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
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "cpu": model,
        "cores": cores,
        "gpu": [gpu.name for gpu in gpus] or None,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_hub": keras_hub.__version__,
        "backend": keras.backend.backend(),
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
