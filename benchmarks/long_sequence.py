"""Case 3: self-attention forward and backward on long sequences.

`keras_mha.MultiHeadSelfAttention` (chunked attention with a running
softmax on TensorFlow, `(chunk, chunk)` logits at a time) against
`keras.layers.MultiHeadAttention` (the whole `(heads, seq, seq)` logits).
Each (layer, length) runs in its own process, so its peak resident set
size is its own: the child reports its high-water mark, and the parent
watches the child's RSS and kills it past a memory cap or a time cap,
which is where that layer fails.

Run as a module, it is the child: `python -m benchmarks.long_sequence
--impl keras_mha --seq-length 4096` prints one JSON line.
"""

import argparse
import json
import time

from benchmarks.child import Child
from benchmarks.child import last_json
from benchmarks.child import peak_rss_bytes
from benchmarks.timing import log

IMPLS = ("keras_mha", "keras")
_GIB = 1024**3


def attention_layer_flops(seq_length, width):
    """Forward matmul FLOPs of self-attention: projections and attention."""
    return 2 * seq_length * 4 * width**2 + 4 * seq_length**2 * width


def run_child(
    impl, seq_length, width, num_heads, repeats, memory_cap, time_cap
):
    """Runs one (impl, length) in a child process under the caps.

    Returns:
        A dict with `status` ("ok", "memory cap", "timed out" or "error"),
        and with "ok" the fastest `seconds` and `peak_rss_bytes`.
    """
    args = ["--impl", impl, "--seq-length", str(seq_length)]
    args += ["--width", str(width), "--num-heads", str(num_heads)]
    args += ["--repeats", str(repeats)]
    result = Child(
        "benchmarks.long_sequence",
        args,
        env={"KERAS_BACKEND": "tensorflow"},
        time_limit_s=time_cap,
        memory_limit_bytes=memory_cap,
    ).wait()
    output = result.pop("output")
    result["wall_seconds"] = result.pop("seconds")
    if result["status"] != "ok":
        return result
    return {**result, **last_json(output)}


def run(seq_lengths, width, num_heads, repeats, memory_cap, time_cap, peak):
    """Every impl at every length, shortest first; returns rows.

    Each length runs `repeats` times (once past 4,096 tokens, where one
    forward + backward takes seconds to minutes) and keeps its fastest.
    Once an impl fails at a length it is not run at longer ones: they
    need more memory and time still.
    """
    rows, failed = [], {}
    for seq_length in seq_lengths:
        for impl in IMPLS:
            row = {"impl": impl, "seq_length": seq_length}
            if impl in failed:
                rows.append(
                    {
                        **row,
                        "status": "skipped",
                        "reason": f"failed at {failed[impl]}",
                    }
                )
                continue
            log(f"long seq={seq_length} {impl}: running")
            result = run_child(
                impl,
                seq_length,
                width,
                num_heads,
                repeats if seq_length <= 4096 else 1,
                memory_cap,
                time_cap,
            )
            row.update(result)
            if result["status"] == "ok":
                flops = 3 * attention_layer_flops(seq_length, width)
                row["fraction_of_matmul_peak"] = flops / row["seconds"] / peak
                log(
                    f"  {row['seconds']:.2f}s, peak RSS "
                    f"{row['peak_rss_bytes'] / _GIB:.2f} GiB"
                )
            else:
                failed[impl] = seq_length
                log(f"  {result['status']} {result.get('reason', '')}")
            rows.append(row)
    return rows


def _measure(impl, seq_length, width, num_heads, repeats):
    """In the child: times forward + backward; returns the JSON fields."""
    import keras
    import tensorflow as tf

    import keras_mha

    x = tf.random.normal((1, seq_length, width))
    if impl == "keras_mha":
        layer = keras_mha.MultiHeadSelfAttention(num_heads)
        call = layer
    else:
        layer = keras.layers.MultiHeadAttention(num_heads, width // num_heads)

        def call(x):
            return layer(x, x)

    call(x[:, :8])  # builds the weights

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_mean(tf.square(call(x)))
        grads = tape.gradient(loss, [x, *layer.trainable_variables])
        # One scalar out: the gradients are computed, not copied back.
        return tf.add_n([tf.reduce_sum(g) for g in grads])

    forward_backward.get_concrete_function(x)  # traced before the clock
    baseline = peak_rss_bytes()  # TensorFlow, the layer and its graph
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward_backward(x).numpy()
        times.append(time.perf_counter() - start)
    return {
        "status": "ok",
        "seconds": min(times),
        "repeats": repeats,
        "peak_rss_bytes": peak_rss_bytes(),
        "baseline_rss_bytes": baseline,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=IMPLS, required=True)
    parser.add_argument("--seq-length", type=int, required=True)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--num-heads", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    result = _measure(
        args.impl, args.seq_length, args.width, args.num_heads, args.repeats
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
