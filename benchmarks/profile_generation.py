"""Where the time of one cached generation step goes, ours and keras_hub's.

Times the benchmark's cached greedy generation (`benchmarks.generation`)
with 0, 1, ... decoder blocks, so the cost of one block per token is the
difference, and beside it the ceiling of that step: the same matrices as
one block's projections and feed-forward network (`width x 3 width`,
`width x width`, `width x ffn`, `ffn x width`) multiplied by one token's
vector, 256 times in an XLA-compiled loop. Interleaved rounds, fastest of
each. This is the profile behind the generation notes of
docs/performance.md. TensorFlow backend.

    python -m benchmarks.profile_generation
"""

import argparse
import json

import numpy as np

from benchmarks import generation
from benchmarks.timing import fastest_of_interleaved
from benchmarks.timing import log
from benchmarks.timing import matmul_flops_per_second


def matvec_loop(width, intermediate_dim, steps):
    """An XLA-compiled loop of `steps` one-token passes through one block's
    matrices; returns `(function, matmul FLOPs of one pass)`."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    shapes = [
        (width, 3 * width),
        (width, width),
        (width, intermediate_dim),
        (intermediate_dim, width),
    ]
    kernels = [
        tf.constant(rng.standard_normal(s, dtype="float32") * 0.05)
        for s in shapes
    ]

    @tf.function(jit_compile=True)
    def loop(x):
        def body(i, x):
            qkv = tf.matmul(x, kernels[0])
            y = x + tf.matmul(qkv[:, :width], kernels[1])
            hidden = tf.nn.relu(tf.matmul(y, kernels[2]))
            return i + 1, y + tf.matmul(hidden, kernels[3])

        return tf.while_loop(lambda i, x: i < steps, body, (0, x))[1]

    flops = sum(2 * a * b for a, b in shapes)
    return loop, flops


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", default="0,1,4")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--num-heads", type=int, default=8)
    parser.add_argument("--intermediate-dim", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=1000)
    parser.add_argument("--prompt-length", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    import keras

    keras.utils.set_random_seed(0)
    blocks = [int(b) for b in args.blocks.split(",")]
    max_length = args.prompt_length + args.new_tokens
    token_ids = np.zeros((1, max_length), dtype="int32")
    token_ids[:, : args.prompt_length] = np.arange(args.prompt_length) + 1
    padding_mask = token_ids != 0
    runners = {}
    for num_blocks in blocks:
        cfg = {
            "num_blocks": num_blocks,
            "width": args.width,
            "num_heads": args.num_heads,
            "intermediate_dim": args.intermediate_dim,
            "vocab": args.vocab,
            "max_length": max_length,
        }
        for impl in ("keras_mha", "keras_hub"):
            stack = generation.make_stack(impl, cfg)
            stack(token_ids[:, : args.prompt_length])  # builds the layers
            generate = generation.make_generate(
                stack, 1, args.prompt_length, cached=True
            )
            generate(token_ids, padding_mask).numpy()  # compiles
            runners[f"{impl} {num_blocks}"] = lambda g=generate: g(
                token_ids, padding_mask
            ).numpy()
    loop, matvec_flops = matvec_loop(
        args.width, args.intermediate_dim, args.new_tokens
    )
    x = np.ones((1, args.width), dtype="float32")
    loop(x).numpy()
    runners["matvec"] = lambda: loop(x).numpy()
    peak = matmul_flops_per_second()
    best = fastest_of_interleaved(runners, args.rounds, "profile")

    per_token = {k: v / args.new_tokens * 1e3 for k, v in best.items()}
    result = {
        "ms_per_token": per_token,
        "matvec_ms_per_block_per_token": per_token["matvec"],
        "matvec_fraction_of_matmul_peak": matvec_flops
        / (per_token["matvec"] / 1e3)
        / peak,
        "matmul_flops_per_second": peak,
    }
    # One block's cost: the slope between the fewest and most blocks.
    low, high = min(blocks), max(blocks)
    if high > low:
        for impl in ("keras_mha", "keras_hub"):
            slope = (
                per_token[f"{impl} {high}"] - per_token[f"{impl} {low}"]
            ) / (high - low)
            result[f"{impl}_ms_per_block_per_token"] = slope
    for name, ms in per_token.items():
        log(f"{name:14} {ms:7.3f} ms per new token")
    for key, value in result.items():
        if not isinstance(value, dict):
            log(f"{key}: {value:.4g}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
