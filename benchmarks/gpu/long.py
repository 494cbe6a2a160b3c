"""The long-sequence part: self-attention forward + backward, bf16, at
growing lengths, the fused path or the explicit softmax (JAX)."""

import time


def _peak_memory():
    """`(bytes, what)`: the GPU allocator's peak, or the process's RSS."""
    import jax

    from benchmarks.child import peak_rss_bytes

    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"], "device peak_bytes_in_use"
    return peak_rss_bytes(), "process peak RSS"


def attention_kernel(compiled_text):
    """Which attention kernel an XLA program runs, from its HLO text."""
    if "cudnn$fmha" in compiled_text:
        return "cuDNN flash attention (jax.nn.dot_product_attention)"
    return "XLA (no fused attention kernel)"


def run(recorder, sizes, fused):
    """Times each length, shortest first, in this one process, so the
    allocator's peak after each is that length's own. A length that runs
    out of memory ends the part: longer ones need more.
    """
    import jax
    import keras
    import numpy as np

    import keras_mha
    from benchmarks.long_sequence import attention_layer_flops
    from benchmarks.timing import jax_forward_backward

    keras.config.set_dtype_policy("mixed_bfloat16")
    width, num_heads = sizes["width"], sizes["num_heads"]
    # `None` is the default choice of the layer: the fused kernel where
    # the backend has one (a GPU); `False` forces the explicit softmax.
    flash = None if fused else False
    recorder.update(
        impl="fused" if fused else "explicit",
        flash_attention=flash,
        dtype_policy="mixed_bfloat16",
        batch=1,
        width=width,
        num_heads=num_heads,
    )
    layer = keras_mha.MultiHeadSelfAttention(num_heads, flash_attention=flash)
    layer.build((1, None, width))
    rng = np.random.default_rng(0)
    for seq_length in sizes["seq_lengths"]:
        row = {"seq_length": seq_length}
        x = rng.standard_normal((1, seq_length, width), dtype="float32")
        x = jax.numpy.asarray(x, dtype="bfloat16")
        try:
            step, values = jax_forward_backward(
                layer, layer.trainable_variables
            )
            compiled = step.lower(values, x).compile()
            row["kernel"] = attention_kernel(compiled.as_text())
            times = []
            for _ in range(sizes["repeats"] + 1):  # the first warms up
                start = time.perf_counter()
                float(compiled(values, x))
                times.append(time.perf_counter() - start)
            seconds = min(times[1:])
            memory, measure = _peak_memory()
            flops = 3 * attention_layer_flops(seq_length, width)
            row.update(
                status="ok",
                seconds=seconds,
                peak_memory_bytes=memory,
                memory_measure=measure,
                flops_per_second=flops / seconds,
            )
        except Exception as error:  # recorded in the row, not hidden
            text = f"{type(error).__name__}: {error}"
            memory = "RESOURCE_EXHAUSTED" in text or "out of memory" in text
            row.update(
                status="out of memory" if memory else "error",
                reason=text[:300],
            )
        recorder.add_row(row)
        if row["status"] != "ok":
            break
