"""The encoder part: `benchmarks.encoder` under mixed_bfloat16 (JAX)."""


def run(recorder, sizes, rounds):
    """Ours vs keras_hub's vs a Keras block, compiled, on the device."""
    import keras

    from benchmarks import encoder

    keras.config.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    recorder.update(dtype_policy="mixed_bfloat16", impls=encoder.IMPLS)
    for shape in sizes["shapes"]:
        # With a peak of 1 FLOP/s, the fraction of it is the FLOP/s; the
        # parent divides by the bf16 peak of the device part.
        rows = encoder.run(
            **{**sizes, "shapes": (shape,)},
            rounds=rounds,
            peak=1.0,
            jits=(True,),
            device_resident=True,
        )
        for row in rows:
            row["flops_per_second"] = row.pop("fraction_of_matmul_peak")
            recorder.add_row(row)
