"""The keras_hub part: a Llama-shaped keras_hub causal LM converted by
`keras_mha.from_keras_hub` vs keras_hub's own, in `mixed_bfloat16`."""


def run(recorder, sizes, rounds):
    """The backbone's compiled training step and cached greedy generation
    (`keras_mha.generate` vs `causal_lm.generate`), timed by
    `benchmarks.keras_hub_models`."""
    import keras
    import keras_hub
    import numpy as np

    import keras_mha
    from benchmarks import keras_hub_models as hub
    from benchmarks.timing import fastest_of_interleaved
    from benchmarks.timing import step_runner

    keras.config.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    recorder.update(dtype_policy="mixed_bfloat16", shape=sizes["shape"])
    backbone = hub.make_backbone("llama", **sizes["shape"])
    causal_lm = keras_hub.models.LlamaCausalLM(
        backbone=backbone, preprocessor=None
    )
    causal_lm.compile(sampler="greedy")
    ours = keras_mha.from_keras_hub(causal_lm)
    batch, length, steps = sizes["batch"], sizes["seq_length"], sizes["steps"]
    inputs = hub.make_inputs(backbone, batch, length)
    target = np.zeros((batch, length, backbone.hidden_dim), "float32")
    models = {
        "keras_mha": hub.sequence_model(ours.backbone, jit=True),
        "keras_hub": hub.sequence_model(backbone, jit=True),
    }
    for model in models.values():
        model.train_on_batch(inputs, target)  # compiles
    best = fastest_of_interleaved(
        {
            impl: step_runner(model, "train", inputs, target, steps)
            for impl, model in models.items()
        },
        rounds,
        "keras_hub train",
    )
    for impl, seconds in best.items():
        seconds /= steps
        recorder.add_row(
            {
                "mode": "train",
                "impl": impl,
                "batch": batch,
                "seq_length": length,
                "status": "ok",
                "seconds": seconds,
                "tokens_per_second": batch * length / seconds,
            }
        )
    for row in hub.generation_rows(
        "llama",
        ours,
        causal_lm,
        batch,
        sizes["prompt_length"],
        sizes["max_length"],
        rounds,
    ):
        recorder.add_row({**row, "mode": "generate"})
