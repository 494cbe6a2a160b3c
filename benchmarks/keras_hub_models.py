"""keras_hub backbones vs the same backbones converted to keras_mha's blocks.

    python -m benchmarks.keras_hub_models --out runs/keras_hub.json
    KERAS_BACKEND=jax python -m benchmarks.keras_hub_models ...
    python -m benchmarks.keras_hub_models --parts long --long-length 16384

A keras_hub backbone built at random (offline) and `keras_mha.
from_keras_hub` of it, the same weights, timed in interleaved rounds
(`benchmarks.timing.fastest_of_interleaved`), each keeping its fastest:

- `models`: a training step (`train_on_batch`, MSE on the sequence
  output) and a forward pass (`predict_on_batch`) of a Llama-shaped
  backbone (4 layers, width 256, 8 query and 2 key/value heads) and a
  BERT-shaped one (4 layers, width 256, 8 heads), batch 8 at sequence
  128; on TensorFlow with `jit_compile` off and on, on JAX compiled, on
  PyTorch eager (as `benchmarks.encoder`). A GPT-2-shaped backbone (4
  layers, width 256, 8 heads) can be added with `--models`.
- `generation`: greedy generation of 8 prompts of 16 tokens to 64 by the
  converted causal LM (`keras_mha.generate`, cached) and by
  `causal_lm.generate` (keras_hub's cache), tokens per second.
- `long`: the converted Llama's forward pass at `--long-length` tokens
  (batch 1, attention in chunks of 1,024) beside keras_hub's, each in its
  own process, with its peak resident memory.

A model that cannot be converted (a block option missing) is a row with
`status` "error" and the message. Prints one JSON summary line and writes
it to `--out`.
"""

import argparse
import json
import sys
import time

import numpy as np

from benchmarks.child import Child
from benchmarks.child import last_json
from benchmarks.child import peak_rss_bytes
from benchmarks.encoder import default_jits
from benchmarks.sizes import SIZES
from benchmarks.timing import fastest_of_interleaved
from benchmarks.timing import log
from benchmarks.timing import machine
from benchmarks.timing import step_runner

SHAPES = {
    "llama": dict(
        cls="LlamaBackbone",
        causal_lm="LlamaCausalLM",
        num_layers=4,
        hidden_dim=256,
        num_query_heads=8,
        num_key_value_heads=2,
        intermediate_dim=512,
    ),
    "bert": dict(
        cls="BertBackbone",
        num_layers=4,
        hidden_dim=256,
        num_heads=8,
        intermediate_dim=1024,
        max_sequence_length=512,
    ),
    "gpt2": dict(
        cls="GPT2Backbone",
        causal_lm="GPT2CausalLM",
        num_layers=4,
        hidden_dim=256,
        num_heads=8,
        intermediate_dim=1024,
        max_sequence_length=512,
    ),
}
VOCAB = 1000
IMPLS = ("keras_mha", "keras_hub")


def make_backbone(kind, **overrides):
    """A random keras_hub backbone of `kind` (a key of `SHAPES`)."""
    import keras_hub

    sizes = {**SHAPES[kind], **overrides}
    sizes.pop("causal_lm", None)
    cls = getattr(keras_hub.models, sizes.pop("cls"))
    return cls(vocabulary_size=VOCAB, dropout=0.0, **sizes)


def make_inputs(backbone, batch, length, seed=0):
    rng = np.random.default_rng(seed)
    inputs = {
        "token_ids": rng.integers(1, VOCAB, (batch, length)).astype("int32"),
        "padding_mask": np.ones((batch, length), "int32"),
    }
    if "segment_ids" in backbone.input:
        inputs["segment_ids"] = np.zeros((batch, length), "int32")
    return inputs


def sequence_model(backbone, jit):
    """`backbone`'s sequence output as a compiled model, MSE loss."""
    import keras

    outputs = backbone(backbone.input)
    if isinstance(outputs, dict):
        outputs = outputs["sequence_output"]
    model = keras.Model(backbone.input, outputs)
    model.compile("adam", "mse", jit_compile=jit)
    return model


def models_part(kinds, batch, length, steps, rounds):
    """Train and forward rows of each backbone kind, both impls."""
    import keras

    import keras_mha

    backend = keras.backend.backend()
    rows = []
    for kind in kinds:
        theirs = make_backbone(kind)
        try:
            ours = keras_mha.from_keras_hub(theirs)
        except Exception as error:  # A block option missing: say which.
            rows.append(_error_row(kind, "models", error))
            continue
        inputs = make_inputs(theirs, batch, length)
        target = np.random.default_rng(1).standard_normal(
            (batch, length, SHAPES[kind]["hidden_dim"]), dtype="float32"
        )
        for jit in default_jits():
            label = f"{kind} {backend} jit={'on' if jit else 'off'}"
            log(f"{label}: compiling")
            models = {
                "keras_mha": sequence_model(ours, jit),
                "keras_hub": sequence_model(theirs, jit),
            }
            for model in models.values():
                for _ in range(2):  # trace and compile, then a warm step
                    model.train_on_batch(inputs, target)
                    model.predict_on_batch(inputs)
            for mode in ("train", "predict"):
                runners = {
                    impl: step_runner(model, mode, inputs, target, steps)
                    for impl, model in models.items()
                }
                best = fastest_of_interleaved(
                    runners, rounds, f"{label} {mode}"
                )
                for impl in IMPLS:
                    seconds = best[impl] / steps
                    rows.append(
                        {
                            "part": "models",
                            "model": kind,
                            "backend": backend,
                            "jit_compile": jit,
                            "mode": mode,
                            "impl": impl,
                            "status": "ok",
                            "batch": batch,
                            "seq_length": length,
                            "seconds_per_step": seconds,
                            "tokens_per_second": batch * length / seconds,
                        }
                    )
    return rows


def _error_row(kind, part, error):
    import keras

    return {
        "part": part,
        "model": kind,
        "backend": keras.backend.backend(),
        "status": "error",
        "error": f"{type(error).__name__}: {str(error)[:300]}",
    }


def generation_part(kinds, batch, prompt_length, max_length, rounds):
    """Cached greedy generation: ours through `generate`, keras_hub's."""
    import keras_hub

    import keras_mha

    rows = []
    for kind in kinds:
        if "causal_lm" not in SHAPES[kind]:
            continue
        backbone = make_backbone(kind)
        causal_lm = getattr(keras_hub.models, SHAPES[kind]["causal_lm"])(
            backbone=backbone, preprocessor=None
        )
        causal_lm.compile(sampler="greedy")
        try:
            ours = keras_mha.from_keras_hub(causal_lm)
        except Exception as error:
            rows.append(_error_row(kind, "generation", error))
            continue
        rows += generation_rows(
            kind, ours, causal_lm, batch, prompt_length, max_length, rounds
        )
    return rows


def generation_rows(
    kind, ours, causal_lm, batch, prompt_length, max_length, rounds
):
    """Rows of `ours` (converted) and `causal_lm` generating greedily."""
    import keras

    from keras_mha import generate

    backend = keras.backend.backend()
    rows = []
    rng = np.random.default_rng(2)
    ids = np.zeros((batch, max_length), "int32")
    ids[:, :prompt_length] = rng.integers(1, VOCAB, (batch, prompt_length))
    mask = np.zeros((batch, max_length), bool)
    mask[:, :prompt_length] = True
    inputs = {"token_ids": ids, "padding_mask": mask}

    def run_ours():
        return keras.ops.convert_to_numpy(
            generate(
                ours,
                ids[:, :prompt_length],
                max_length,
                padding_mask=mask[:, :prompt_length],
            )
        )

    def run_theirs():
        return causal_lm.generate(inputs, stop_token_ids=None)["token_ids"]

    same = bool((run_ours() == np.asarray(run_theirs())).all())
    best = fastest_of_interleaved(
        {"keras_mha": run_ours, "keras_hub": run_theirs},
        rounds,
        f"{kind} {backend} generation",
    )
    new_tokens = batch * (max_length - prompt_length)
    for impl in IMPLS:
        rows.append(
            {
                "part": "generation",
                "model": kind,
                "backend": backend,
                "impl": impl,
                "status": "ok",
                "batch": batch,
                "prompt_length": prompt_length,
                "max_length": max_length,
                "seconds": best[impl],
                "tokens_per_second": new_tokens / best[impl],
                "same_tokens": same,
            }
        )
    return rows


def long_child(impl, length, chunk):
    """One forward pass of a Llama-shaped backbone at `length` tokens;
    prints its time and the process's peak resident memory."""
    import keras

    import keras_mha

    backbone = make_backbone("llama")
    model = backbone
    if impl == "keras_mha":
        model = keras_mha.from_keras_hub(backbone)
        for block in model.blocks:
            block.self_attention.attention_chunk_size = chunk
    inputs = make_inputs(backbone, 1, length)
    start = time.perf_counter()
    keras.ops.convert_to_numpy(model(inputs))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_bytes": peak_rss_bytes()}))


def long_part(length, chunk, timeout_s, memory_gib=None):
    """Each impl's long forward pass in its own process, stopped past
    `timeout_s` or `memory_gib` GiB of resident memory."""
    import keras

    rows = []
    for impl in IMPLS:
        args = ["--long-child", impl, "--long-length", str(length)]
        args += ["--long-chunk", str(chunk)]
        row = {
            "part": "long",
            "model": "llama",
            "backend": keras.backend.backend(),
            "impl": impl,
            "seq_length": length,
        }
        log(f"long {impl} {length}: running")
        child = Child(
            "benchmarks.keras_hub_models",
            args,
            time_limit_s=timeout_s,
            memory_limit_bytes=memory_gib and int(memory_gib * 2**30),
        ).wait()
        if child["status"] != "ok":
            rows.append({**row, "status": child["status"]})
            rows[-1]["error"] = child["reason"]
            continue
        rows.append({**row, "status": "ok", **last_json(child["output"])})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="models,generation")
    parser.add_argument("--models", default="llama,bert")
    full = SIZES["keras_hub"]["full"]  # the defaults: the table's full run
    add = parser.add_argument
    add("--batch", type=int, default=full["batch"])
    add("--seq-length", type=int, default=full["seq_length"])
    add("--steps", type=int, default=full["steps"])
    add("--rounds", type=int, default=SIZES["rounds"]["full"])
    add("--prompt-length", type=int, default=full["prompt_length"])
    add("--max-length", type=int, default=full["max_length"])
    parser.add_argument("--long-length", type=int, default=16384)
    parser.add_argument("--long-chunk", type=int, default=1024)
    parser.add_argument("--long-timeout-s", type=float, default=300)
    parser.add_argument("--long-memory-gib", type=float)
    parser.add_argument("--long-child", choices=IMPLS)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.long_child:
        return long_child(args.long_child, args.long_length, args.long_chunk)
    kinds = args.models.split(",")
    parts = args.parts.split(",")
    rows = []
    if "models" in parts:
        rows += models_part(
            kinds, args.batch, args.seq_length, args.steps, args.rounds
        )
    if "generation" in parts:
        rows += generation_part(
            kinds, args.batch, args.prompt_length, args.max_length, args.rounds
        )
    if "long" in parts:
        rows += long_part(
            args.long_length,
            args.long_chunk,
            args.long_timeout_s,
            args.long_memory_gib,
        )
    summary = {
        "benchmark": "keras_hub_models",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "command": " ".join(sys.argv),
        "rows": rows,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
