"""The generation part: cached greedy generation, ours vs keras_hub's."""


def run(recorder, sizes, rounds):
    """Tokens/s at each batch. Both stacks run through `keras_mha.generate`,
    the package's one compiled (`jax.jit`) cached loop, with keras_hub's
    greedy sampler."""
    import keras
    import numpy as np

    import keras_mha
    from benchmarks import generation
    from benchmarks.timing import fastest_of_interleaved

    keras.config.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    cfg, prompt_length = sizes["cfg"], sizes["prompt_length"]
    recorder.update(dtype_policy="mixed_bfloat16", cfg=cfg)
    stacks = {
        impl: generation.make_stack(impl, cfg)
        for impl in ("keras_mha", "keras_hub")
    }
    rng = np.random.default_rng(0)
    for batch in sizes["batches"]:
        prompts = rng.integers(1, cfg["vocab"], (batch, prompt_length))
        prompts = prompts.astype("int32")
        runners = {}
        for impl, stack in stacks.items():
            stack(prompts)  # builds the layers

            def run(stack=stack, prompts=prompts):
                ids = keras_mha.generate(stack, prompts, cfg["max_length"])
                return np.asarray(ids)

            run()  # compiles
            runners[impl] = run
        best = fastest_of_interleaved(
            runners, rounds, f"generation batch {batch}"
        )
        new_tokens = cfg["max_length"] - prompt_length
        flops = generation.generated_flops(cfg, batch, prompt_length, True)
        for impl, seconds in best.items():
            recorder.add_row(
                {
                    "impl": impl,
                    "batch": batch,
                    "prompt_length": prompt_length,
                    "new_tokens": new_tokens,
                    "status": "ok",
                    "seconds": seconds,
                    "tokens_per_second": batch * new_tokens / seconds,
                    "flops_per_second": flops / seconds,
                }
            )
