"""The device part: software versions, the accelerator, the bf16 peak."""

import os


def run(recorder, matmul_size):
    """Records the machine and the bf16 matmul throughput of the backend."""
    import keras

    import keras_mha
    from benchmarks.timing import machine
    from benchmarks.timing import matmul_flops_per_second

    try:
        import tensorflow  # noqa: F401

        tensorflow_importable = True
    except ImportError:
        tensorflow_importable = False
    recorder.update(
        machine=machine(),
        backend=keras.backend.backend(),
        keras_mha_path=os.path.dirname(keras_mha.__file__),
        tensorflow_importable=tensorflow_importable,
    )
    peak = matmul_flops_per_second(matmul_size, dtype="bfloat16")
    recorder.update(matmul_size=matmul_size, bf16_flops_per_second=peak)
