"""The GPU check: the package measured on one GPU, in one command.

    benchmarks/gpu_check.sh                    # on the GPU machine, docs/gpu.md
    python -m benchmarks.gpu --out DIR         # the same, wheels installed
    python -m benchmarks.gpu --smoke --out DIR # CPU, tiny shapes (the tests)

Runs each part in its own child process under a hard time limit, so the
whole check ends within `--budget-s` seconds (default 450) and a part that
overruns is recorded as "timed out" with the rows it finished, while the
other parts still run. Everything runs on the JAX backend except the
PyTorch layer tests. The parts, in order:

- `device`: the software, the GPU, and its bf16 matmul throughput (the
  ceiling every "fraction of peak" below is measured against);
- `tests_jax`, `tests_torch`: the default suite's layer tests on the GPU,
  both at once (correctness, not timing); pass, fail, skip counts;
- `encoder`: one encoder block, ours vs keras_hub's `TransformerEncoder`
  vs a `keras.layers.MultiHeadAttention` block, `mixed_bfloat16`, train
  and inference tokens/s and the fraction of the bf16 matmul peak;
- `long_fused`, `long_explicit`: self-attention forward + backward time and
  peak GPU memory against the sequence length, fused path vs explicit
  softmax, with the kernel XLA compiled (cuDNN flash attention or not);
- `generation`: cached greedy generation tokens/s at two batch sizes,
  ours vs keras_hub's cached `TransformerDecoder`;
- `keras_hub`: a Llama-shaped keras_hub causal LM converted by
  `keras_mha.from_keras_hub` vs keras_hub's own, `mixed_bfloat16`: the
  backbone's compiled training step and cached greedy generation;
- `translator`: `examples/translate.py` under `mixed_bfloat16`: epoch time,
  training tokens/s and the held-out exact match and BLEU.

Writes `gpu_check.json` (schema `SCHEMA`), `gpu_check.png` and
`gpu_check.log` (each child's output) into `--out`. With `--smoke`, the
parts run on the CPU with tiny shapes and without TensorFlow (imports of
it fail, as on the GPU machine), except the translator, which needs it.
"""

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

SCHEMA = "keras_mha.gpu_check/1"
PARTS = (
    "device",
    "tests_jax",
    "tests_torch",
    "encoder",
    "long_fused",
    "long_explicit",
    "generation",
    "keras_hub",
    "translator",
)
# A part's result: how it ended.
STATUSES = ("ok", "failed", "error", "timed out", "skipped")
# Seconds each part may take; the tests run side by side. Together with
# the device's start and the wheels' install, under 8 minutes.
BUDGET_S = {
    "device": 40,
    "tests": 110,
    "encoder": 100,
    "long_fused": 35,
    "long_explicit": 35,
    "generation": 50,
    "keras_hub": 60,
    "translator": 45,
}
TOTAL_BUDGET_S = 450
# The smoke run compiles the same programs on a shared CPU: more time.
SMOKE_BUDGET_S = 3 * TOTAL_BUDGET_S

# The layer tests of the default suite.
LAYER_TESTS = (
    "tests/test_attention.py",
    "tests/test_multi_head_attention.py",
    "tests/test_multi_head_self_attention.py",
    "tests/test_sinusoidal_position_encoding.py",
    "tests/test_transformer_encoder_block.py",
    "tests/test_transformer_decoder_block.py",
)

FULL = {
    "matmul_size": 8192,
    "tests": {"files": LAYER_TESTS, "select": None, "workers": 4},
    "encoder": {
        "shapes": ((16, 2048), (64, 512)),
        "width": 1024,
        "num_heads": 16,
        "intermediate_dim": 4096,
        "steps": {"train": 10, "predict": 10},
        "rounds": 3,
    },
    "long": {
        "seq_lengths": (2048, 4096, 8192, 16384, 32768),
        "width": 1024,
        "num_heads": 16,
        "repeats": 3,
    },
    "generation": {
        "cfg": {
            "num_blocks": 4,
            "width": 1024,
            "num_heads": 16,
            "intermediate_dim": 4096,
            "vocab": 1000,
            "max_length": 32 + 256,
        },
        "batches": (1, 32),
        "prompt_length": 32,
        "rounds": 3,
    },
    "keras_hub": {
        "shape": {
            "num_layers": 4,
            "hidden_dim": 1024,
            "intermediate_dim": 2816,
            "num_query_heads": 16,
            "num_key_value_heads": 4,
        },
        "batch": 16,
        "seq_length": 1024,
        "steps": 5,
        "prompt_length": 32,
        "max_length": 32 + 256,
        "rounds": 3,
    },
    "translator": {
        "num_pairs": 4000,
        "epochs": 3,
        "batch_size": 64,
        "hidden_dim": 256,
        "num_heads": 8,
        "intermediate_dim": 1024,
        "num_layers": 2,
        "max_length": 24,
    },
}
SMOKE = {
    "matmul_size": 128,
    "tests": {
        "files": ("tests/test_sinusoidal_position_encoding.py",),
        "select": "golden or bad_arguments",
        "workers": 0,
    },
    "encoder": {
        "shapes": ((2, 8),),
        "width": 16,
        "num_heads": 2,
        "intermediate_dim": 32,
        "steps": {"train": 1, "predict": 1},
        "rounds": 1,
    },
    "long": {
        "seq_lengths": (16, 32),
        "width": 16,
        "num_heads": 2,
        "repeats": 1,
    },
    "generation": {
        "cfg": {
            "num_blocks": 1,
            "width": 16,
            "num_heads": 2,
            "intermediate_dim": 32,
            "vocab": 20,
            "max_length": 8,
        },
        "batches": (1, 2),
        "prompt_length": 4,
        "rounds": 1,
    },
    "keras_hub": {
        "shape": {
            "num_layers": 1,
            "hidden_dim": 16,
            "intermediate_dim": 24,
            "num_query_heads": 4,
            "num_key_value_heads": 2,
        },
        "batch": 2,
        "seq_length": 8,
        "steps": 1,
        "prompt_length": 4,
        "max_length": 8,
        "rounds": 1,
    },
    "translator": {
        "num_pairs": 60,
        "epochs": 1,
        "batch_size": 32,
        "hidden_dim": 16,
        "num_heads": 2,
        "intermediate_dim": 32,
        "num_layers": 1,
        "max_length": 6,
    },
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------
# The parent: runs the parts in children under their time limits.


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--out",
        default=os.environ.get("OUT") or os.path.join("runs", "gpu-check"),
        help="folder of gpu_check.json, .png and .log (default $OUT)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny shapes on the CPU without TensorFlow: checks that every "
        "part runs; its numbers mean nothing",
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated parts, of {', '.join(PARTS)}",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help=f"the whole check ends within this many seconds (default "
        f"{TOTAL_BUDGET_S}; with --smoke, on a CPU, {SMOKE_BUDGET_S}); each "
        "part's share is scaled to it",
    )
    # In a child: the part to run and the file to write its result to.
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument(
        "--block-tensorflow", action="store_true", help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        parser.error(
            f"--parts expected some of {', '.join(PARTS)}. "
            f"Received: --parts={args.parts}"
        )
    args.parts = [p for p in PARTS if p in parts]
    if args.budget_s is None:
        args.budget_s = SMOKE_BUDGET_S if args.smoke else TOTAL_BUDGET_S
    if args.budget_s <= 0:
        parser.error(
            "--budget-s expected a positive number of seconds. "
            f"Received: --budget-s={args.budget_s}"
        )
    return args


def _child_command(part, result, smoke):
    command = [sys.executable, "-m", "benchmarks.gpu", "--part", part]
    command += ["--result", result]
    if smoke:
        command.append("--smoke")
        # As on the GPU machine, which has no TensorFlow; the translator
        # example needs it (its text vectorizers are TensorFlow's).
        if part != "translator":
            command.append("--block-tensorflow")
    return command


def _child_env(part):
    env = {
        **os.environ,
        "KERAS_BACKEND": "torch" if part == "tests_torch" else "jax",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        # Several processes share the GPU (the two test runs), and peak
        # memory is read from the allocator, not from a preallocated pool.
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "PYTHONUNBUFFERED": "1",
    }
    if part == "tests_jax":
        # float32 matmuls in float32, as on a CPU and on PyTorch's GPU
        # default: JAX's GPU default rounds them to TensorFloat-32, which
        # the tests' float32 tolerances against NumPy do not allow for.
        env["JAX_DEFAULT_MATMUL_PRECISION"] = "highest"
    # The children import this tree's `benchmarks` and `keras_mha`.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH")) if p
    )
    return env


class _Child:
    """One part running in a child process, with its deadline."""

    def __init__(self, part, smoke, timeout, workdir, log):
        self.part, self.timeout = part, timeout
        self.result = os.path.join(workdir, f"{part}.json")
        # Closed in `wait`, once the child has ended.
        self.output = open(os.path.join(workdir, f"{part}.log"), "w+")  # noqa: SIM115
        self.log = log
        self.start = time.monotonic()
        self.process = subprocess.Popen(
            _child_command(part, self.result, smoke),
            cwd=ROOT,
            env=_child_env(part),
            stdout=self.output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: killed with its children
        )

    def wait(self):
        """Waits up to the deadline; returns the part's result dict."""
        timed_out = False
        try:
            # From the child's start: children run side by side.
            left = self.timeout - (time.monotonic() - self.start)
            self.process.wait(timeout=max(left, 0.1))
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(self.process.pid, 9)
            except ProcessLookupError:
                pass
            self.process.wait()
        seconds = time.monotonic() - self.start
        self.output.seek(0)
        text = self.output.read()
        self.output.close()
        self.log.write(f"\n===== {self.part} ({seconds:.1f} s) =====\n")
        self.log.write(text[-200_000:])
        self.log.flush()
        result = {}
        if os.path.exists(self.result):
            with open(self.result) as f:
                result = json.load(f)
        if timed_out:
            status, reason = "timed out", f"over its {self.timeout:.0f} s"
        elif self.process.returncode != 0:
            status = "error"
            lines = text.strip().splitlines() or ["no output"]
            reason = f"exit {self.process.returncode}: {lines[-1][-300:]}"
        else:
            status, reason = result.get("status", "error"), None
        result.update(
            status=status,
            seconds=round(seconds, 1),
            budget_s=round(self.timeout, 1),
        )
        if reason:
            result["reason"] = reason
        return result


def run_parts(args):
    """Runs the selected parts in order; returns the results dict."""
    start = time.monotonic()
    deadline = start + args.budget_s
    os.makedirs(args.out, exist_ok=True)
    results = {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        "command": shlex.join(
            ["python", "-m", "benchmarks.gpu", *sys.argv[1:]]
        ),
        "smoke": args.smoke,
        "budget_s": args.budget_s,
        "sizes": SMOKE if args.smoke else FULL,
        "parts": {},
    }
    scale = args.budget_s / TOTAL_BUDGET_S
    log_path = os.path.join(args.out, "gpu_check.log")
    with (
        tempfile.TemporaryDirectory() as workdir,
        open(log_path, "w") as log,
    ):
        # The tests run side by side; every other part alone on the GPU.
        groups, tests = [], [p for p in args.parts if p.startswith("tests")]
        for part in args.parts:
            if part in tests:
                if part == tests[0]:
                    groups.append((tests, BUDGET_S["tests"]))
            else:
                groups.append(([part], BUDGET_S[part]))
        for parts, budget in groups:
            left = deadline - time.monotonic()
            if left < 5:
                for part in parts:
                    results["parts"][part] = {
                        "status": "skipped",
                        "reason": "no time left in the budget",
                    }
                continue
            timeout = min(budget * scale, left)
            print(f"{', '.join(parts)}: running (at most {timeout:.0f} s)")
            children = [
                _Child(part, args.smoke, timeout, workdir, log)
                for part in parts
            ]
            for child in children:
                result = child.wait()
                results["parts"][child.part] = result
                print(
                    f"  {child.part}: {result['status']} "
                    f"in {result['seconds']} s"
                )
    results["seconds"] = round(time.monotonic() - start, 1)
    _add_fractions(results)
    return results


def _add_fractions(results):
    """Each throughput as a fraction of the bf16 matmul peak of the run."""
    peak = results["parts"].get("device", {}).get("bf16_flops_per_second")
    for part in results["parts"].values():
        for row in part.get("rows", []):
            if "flops_per_second" in row:
                row["fraction_of_bf16_peak"] = (
                    row["flops_per_second"] / peak if peak else None
                )


def main(argv=None):
    args = parse_args(argv)
    if args.part:
        return run_child(args)
    results = run_parts(args)
    json_path = os.path.join(args.out, "gpu_check.json")
    png_path = os.path.join(args.out, "gpu_check.png")
    with open(json_path, "w") as f:
        json.dump(results, f, indent=1)
    from benchmarks import gpu_report

    gpu_report.plot(results, png_path)
    print(gpu_report.markdown(results))
    statuses = {name: p["status"] for name, p in results["parts"].items()}
    print(
        json.dumps(
            {
                "results": json_path,
                "plot": png_path,
                "seconds": results["seconds"],
                "statuses": statuses,
            }
        )
    )
    return results


# ---------------------------------------------------------------------------
# The children: one part each, writing their result as they go.


def block_tensorflow():
    """Makes TensorFlow look absent, as on the GPU machine.

    A `None` in `sys.modules` makes `import tensorflow` raise
    `ModuleNotFoundError` and `importlib.util.find_spec` return `None`,
    which is how libraries probe for it.
    """
    for name in ("tensorflow", "tensorflow_text", "tf_keras"):
        sys.modules[name] = None


class _Recorder:
    """The part's result dict, written to its file at every update, so a
    part killed at its deadline still leaves the rows it finished."""

    def __init__(self, path):
        self.path, self.data = path, {"status": "running", "rows": []}

    def update(self, **fields):
        self.data.update(fields)
        self.save()

    def add_row(self, row):
        self.data["rows"].append(row)
        print(json.dumps(row), flush=True)
        self.save()

    def save(self):
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.data, f, indent=1)
        os.replace(self.path + ".tmp", self.path)


def run_child(args):
    if args.block_tensorflow:
        block_tensorflow()
    sizes = SMOKE if args.smoke else FULL
    recorder = _Recorder(args.result)
    part = args.part
    if part == "device":
        device_part(recorder, sizes)
    elif part.startswith("tests"):
        tests_part(recorder, sizes["tests"])
    elif part == "encoder":
        encoder_part(recorder, sizes["encoder"])
    elif part.startswith("long"):
        long_part(recorder, sizes["long"], fused=part == "long_fused")
    elif part == "generation":
        generation_part(recorder, sizes["generation"])
    elif part == "keras_hub":
        keras_hub_part(recorder, sizes["keras_hub"])
    else:
        translator_part(recorder, sizes["translator"], args.smoke)
    if recorder.data["status"] == "running":
        recorder.update(status="ok")


def _is_gpu():
    import jax

    return jax.default_backend() == "gpu"


def device_part(recorder, sizes):
    """Software versions, the accelerator, and the bf16 matmul peak."""
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
    size = sizes["matmul_size"]
    peak = matmul_flops_per_second(size, dtype="bfloat16")
    recorder.update(matmul_size=size, bf16_flops_per_second=peak)


class _Outcomes:
    """A pytest plugin counting outcomes into the recorder as they come,
    so a run stopped at its deadline still leaves its counts. Under
    pytest-xdist the workers' reports reach this hook in the controller.
    """

    def __init__(self, recorder):
        self.recorder = recorder
        self.counts = dict.fromkeys(
            ("passed", "failed", "errors", "skipped"), 0
        )
        self.failures = []

    def pytest_runtest_logreport(self, report):
        if report.skipped:
            outcome = "skipped"
        elif report.failed:
            outcome = "failed" if report.when == "call" else "errors"
            message = str(report.longrepr).strip().splitlines()[-1:]
            self.failures.append(f"{report.nodeid}: {' '.join(message)[:300]}")
        elif report.when == "call":
            outcome = "passed"
        else:
            return  # a passing setup or teardown
        self.counts[outcome] += 1
        self.recorder.update(**self.counts, failures=self.failures[:30])


def tests_part(recorder, sizes):
    """The layer tests through pytest, in this process."""
    import pytest

    command = [*sizes["files"], "-m", "not slow", "-q", "-rs"]
    command += ["-p", "no:cacheprovider"]
    if sizes["select"]:
        command += ["-k", sizes["select"]]
    if sizes["workers"]:
        command += ["-n", str(sizes["workers"]), "--dist", "loadfile"]
    recorder.update(
        backend=os.environ["KERAS_BACKEND"],
        pytest_args=command,
        jax_default_matmul_precision=os.environ.get(
            "JAX_DEFAULT_MATMUL_PRECISION"
        ),
    )
    outcomes = _Outcomes(recorder)
    recorder.update(**outcomes.counts, failures=[])
    exit_code = pytest.main(command, plugins=[outcomes])
    recorder.update(
        status="ok" if exit_code == 0 else "failed", exit_code=int(exit_code)
    )


def encoder_part(recorder, sizes):
    """`benchmarks.encoder` under mixed_bfloat16, compiled (JAX)."""
    import keras

    from benchmarks import encoder

    keras.config.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    recorder.update(dtype_policy="mixed_bfloat16", impls=encoder.IMPLS)
    for batch, seq_length in sizes["shapes"]:
        # With a peak of 1 FLOP/s, the fraction of it is the FLOP/s; the
        # parent divides by the bf16 peak of the device part.
        rows = encoder.run(
            shapes=((batch, seq_length),),
            width=sizes["width"],
            num_heads=sizes["num_heads"],
            intermediate_dim=sizes["intermediate_dim"],
            steps=sizes["steps"],
            rounds=sizes["rounds"],
            peak=1.0,
            jits=(True,),
            device_resident=True,
        )
        for row in rows:
            row["flops_per_second"] = row.pop("fraction_of_matmul_peak")
            recorder.add_row(row)


def _peak_memory():
    """`(bytes, what)`: the GPU allocator's peak, or the process's RSS."""
    import jax

    from benchmarks.long_sequence import peak_rss_bytes

    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"], "device peak_bytes_in_use"
    return peak_rss_bytes(), "process peak RSS"


def attention_kernel(compiled_text):
    """Which attention kernel an XLA program runs, from its HLO text."""
    if "__cudnn$fmha" in compiled_text or "cudnn$fmha" in compiled_text:
        return "cuDNN flash attention (jax.nn.dot_product_attention)"
    return "XLA (no fused attention kernel)"


def long_part(recorder, sizes, fused):
    """Self-attention forward + backward at growing lengths, bf16.

    Lengths run shortest first in this one process, so the allocator's
    peak after each is that length's own. A length that runs out of
    memory ends the part: longer ones need more.
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
            row.update(
                status="ok",
                seconds=seconds,
                peak_memory_bytes=memory,
                memory_measure=measure,
                flops_per_second=3
                * attention_layer_flops(seq_length, width)
                / seconds,
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


def generation_part(recorder, sizes):
    """Cached greedy generation, ours vs keras_hub's, at each batch.

    Both stacks run through `keras_mha.generate`, the package's one
    compiled (`jax.jit`) cached loop, with keras_hub's greedy sampler.
    """
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
            runners, sizes["rounds"], f"generation batch {batch}"
        )
        new_tokens = batch * (cfg["max_length"] - prompt_length)
        for impl, seconds in best.items():
            flops = generation.generated_flops(cfg, batch, prompt_length, True)
            recorder.add_row(
                {
                    "impl": impl,
                    "batch": batch,
                    "prompt_length": prompt_length,
                    "new_tokens": cfg["max_length"] - prompt_length,
                    "status": "ok",
                    "seconds": seconds,
                    "tokens_per_second": new_tokens / seconds,
                    "flops_per_second": flops / seconds,
                }
            )


def keras_hub_part(recorder, sizes):
    """A Llama-shaped keras_hub causal LM, converted by `from_keras_hub`
    vs keras_hub's own, in `mixed_bfloat16`: the backbone's training step
    (compiled) and cached greedy generation (`keras_mha.generate` vs
    `causal_lm.generate`), timed by `benchmarks.keras_hub_models`."""
    import keras
    import keras_hub
    import numpy as np

    import keras_mha
    from benchmarks import keras_hub_models as hub
    from benchmarks.timing import fastest_of_interleaved

    keras.config.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    recorder.update(dtype_policy="mixed_bfloat16", shape=sizes["shape"])
    backbone = hub.make_backbone("llama", **sizes["shape"])
    causal_lm = keras_hub.models.LlamaCausalLM(
        backbone=backbone, preprocessor=None
    )
    causal_lm.compile(sampler="greedy")
    ours = keras_mha.from_keras_hub(causal_lm)
    batch, length = sizes["batch"], sizes["seq_length"]
    inputs = hub.make_inputs(backbone, batch, length)
    target = np.zeros((batch, length, sizes["shape"]["hidden_dim"]), "float32")
    models = {
        "keras_mha": hub.sequence_model(ours.backbone, jit=True),
        "keras_hub": hub.sequence_model(backbone, jit=True),
    }
    for model in models.values():
        model.train_on_batch(inputs, target)  # compiles
    best = fastest_of_interleaved(
        {
            impl: hub.train_runner(model, inputs, target, sizes["steps"])
            for impl, model in models.items()
        },
        sizes["rounds"],
        "keras_hub train",
    )
    for impl, seconds in best.items():
        seconds /= sizes["steps"]
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
        sizes["rounds"],
    ):
        recorder.add_row({**row, "mode": "generate"})


# The translator, through its command line. This is its one entry point in
# the GPU check: switch it here when the package has one.
TRANSLATOR_SCRIPT = os.path.join(ROOT, "examples", "translate.py")


def translator_argv(sizes, output_dir):
    return [
        TRANSLATOR_SCRIPT,
        *("--num-pairs", str(sizes["num_pairs"])),
        *("--epochs", str(sizes["epochs"])),
        *("--batch-size", str(sizes["batch_size"])),
        *("--hidden-dim", str(sizes["hidden_dim"])),
        *("--num-heads", str(sizes["num_heads"])),
        *("--intermediate-dim", str(sizes["intermediate_dim"])),
        *("--num-layers", str(sizes["num_layers"])),
        *("--max-length", str(sizes["max_length"])),
        *("--patience", str(sizes["epochs"])),
        *("--output-dir", output_dir),
        *("--verbose", "2"),
    ]


class _EpochTimes:
    """Appended to `fit`'s callbacks: each epoch's wall time."""

    def __init__(self):
        import keras

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(inner, epoch, logs=None):
                inner.start = time.perf_counter()

            def on_epoch_end(inner, epoch, logs=None):
                self.seconds.append(time.perf_counter() - inner.start)

        self.seconds, self.callback = [], Callback()


def _target_tokens(labels):
    """Non-padding label tokens: `labels` as `fit` takes it (an array of
    ids, or a dataset of `(inputs, labels)` batches), in one pass."""
    import numpy as np

    if hasattr(labels, "shape"):
        return int(np.count_nonzero(np.asarray(labels)))
    return sum(int(np.count_nonzero(np.asarray(b[1]))) for b in labels)


def translator_part(recorder, sizes, smoke):
    """Runs examples/translate.py under mixed_bfloat16 in this process.

    `fit` is wrapped to time each epoch and to count the dataset's target
    tokens once before training (outside the timed epochs).
    """
    import runpy

    import keras

    keras.config.set_dtype_policy("mixed_bfloat16")
    epochs = _EpochTimes()
    counted = {}
    fit = keras.Model.fit

    def timed_fit(model, x=None, y=None, *args, callbacks=None, **kwargs):
        try:
            counted["tokens_per_epoch"] = _target_tokens(x if y is None else y)
        except Exception as error:  # a count, not the result
            counted["tokens_error"] = f"{type(error).__name__}: {error}"
        callbacks = [*(callbacks or []), epochs.callback]
        return fit(model, x, y, *args, callbacks=callbacks, **kwargs)

    keras.Model.fit = timed_fit
    summary_lines = []
    with tempfile.TemporaryDirectory() as output_dir:
        argv = translator_argv(sizes, output_dir)
        recorder.update(
            dtype_policy="mixed_bfloat16",
            argv=[os.path.relpath(argv[0], ROOT), *argv[1:]],
        )
        sys.argv = argv
        sys.path.insert(0, os.path.dirname(TRANSLATOR_SCRIPT))
        printed = _Tee(summary_lines)
        stdout, sys.stdout = sys.stdout, printed
        try:
            runpy.run_path(TRANSLATOR_SCRIPT, run_name="__main__")
        finally:
            sys.stdout = stdout
    summary = json.loads(summary_lines[-1]) if summary_lines else {}
    # The first epoch includes compiling; the fastest of the rest is the
    # steady epoch time (the first, if there is only one).
    steady = min(epochs.seconds[1:] or epochs.seconds or [None])
    tokens = counted.get("tokens_per_epoch")
    recorder.update(
        summary=summary,
        epoch_seconds=epochs.seconds,
        steady_epoch_seconds=steady,
        tokens_per_epoch=tokens,
        training_tokens_per_second=tokens / steady
        if tokens and steady
        else None,
        exact_match=summary.get("exact_match"),
        bleu=summary.get("bleu"),
        **({"tokens_error": counted["tokens_error"]} if not tokens else {}),
    )


class _Tee:
    """stdout that also keeps the lines that look like JSON objects."""

    def __init__(self, lines):
        self.lines, self.stream = lines, sys.stdout

    def write(self, text):
        for line in text.splitlines():
            if line.startswith("{") and line.endswith("}"):
                self.lines.append(line)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()


if __name__ == "__main__":
    main()
