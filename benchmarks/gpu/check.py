"""The GPU check's orchestrator: each part in a child under its limit.

The parent (`python -m benchmarks.gpu`) runs the parts in order, each in
a `benchmarks.child.Child`; the child (`--part NAME --result FILE`) runs
one part's module of `benchmarks.gpu` and writes its result as it goes.
"""

import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile
import time

from benchmarks import report
from benchmarks.child import Child
from benchmarks.sizes import sizes
from benchmarks.timing import comma_list

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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="The GPU check: the package measured on one GPU.",
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
    args.parts = comma_list(parser, "--parts", args.parts, PARTS)
    if args.budget_s is None:
        args.budget_s = SMOKE_BUDGET_S if args.smoke else TOTAL_BUDGET_S
    if args.budget_s <= 0:
        parser.error(
            "--budget-s expected a positive number of seconds. "
            f"Received: --budget-s={args.budget_s}"
        )
    return args


def start_part(part, smoke, timeout, workdir):
    """`part` in a child process; returns the `Child` and its result file."""
    result = os.path.join(workdir, f"{part}.json")
    args = ["--part", part, "--result", result]
    if smoke:
        args.append("--smoke")
        # As on the GPU machine, which has no TensorFlow; the translator
        # needs it (its tokenizers run TensorFlow Text ops).
        if part != "translator":
            args.append("--block-tensorflow")
    env = {
        "KERAS_BACKEND": "torch" if part == "tests_torch" else "jax",
        # Several processes share the GPU (the two test runs), and peak
        # memory is read from the allocator, not from a preallocated pool.
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
    }
    if part == "tests_jax":
        # float32 matmuls in float32, as on a CPU and on PyTorch's GPU
        # default: JAX's GPU default rounds them to TensorFloat-32, which
        # the tests' float32 tolerances against NumPy do not allow for.
        env["JAX_DEFAULT_MATMUL_PRECISION"] = "highest"
    child = Child("benchmarks.gpu", args, env=env, time_limit_s=timeout)
    return child, result


def finish_part(part, child, result_path, log):
    """Waits for `part`'s child; logs its output; returns its result."""
    ended = child.wait()
    log.write(f"\n===== {part} ({ended['seconds']:.1f} s) =====\n")
    log.write(ended["output"][-200_000:])
    log.flush()
    result = {}
    if os.path.exists(result_path):
        with open(result_path) as f:
            result = json.load(f)
    status = ended["status"]
    if status == "ok":
        status = result.get("status", "error")
    result.update(
        status=status,
        seconds=round(ended["seconds"], 1),
        budget_s=round(child.time_limit_s, 1),
    )
    if "reason" in ended:
        result["reason"] = ended["reason"]
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
        "sizes": sizes("smoke" if args.smoke else "gpu"),
        "parts": {},
    }
    scale = args.budget_s / TOTAL_BUDGET_S
    # The tests run side by side; every other part alone on the GPU.
    groups, tests = [], [p for p in args.parts if p.startswith("tests")]
    for part in args.parts:
        if part not in tests:
            groups.append(([part], BUDGET_S[part]))
        elif part == tests[0]:
            groups.append((tests, BUDGET_S["tests"]))
    log_path = os.path.join(args.out, "gpu_check.log")
    with tempfile.TemporaryDirectory() as workdir, open(log_path, "w") as log:
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
            started = {
                part: start_part(part, args.smoke, timeout, workdir)
                for part in parts
            }
            for part, (child, result_path) in started.items():
                result = finish_part(part, child, result_path, log)
                results["parts"][part] = result
                print(f"  {part}: {result['status']} in {result['seconds']} s")
    results["seconds"] = round(time.monotonic() - start, 1)
    # Each throughput as a fraction of the bf16 matmul peak of the run.
    peak = results["parts"].get("device", {}).get("bf16_flops_per_second")
    for part in results["parts"].values():
        for row in part.get("rows", []):
            if "flops_per_second" in row:
                row["fraction_of_bf16_peak"] = report.ratio(
                    row["flops_per_second"], peak
                )
    return results


def main(argv=None):
    args = parse_args(argv)
    if args.part:
        return run_part(args)
    results = run_parts(args)
    json_path = os.path.join(args.out, "gpu_check.json")
    png_path = os.path.join(args.out, "gpu_check.png")
    with open(json_path, "w") as f:
        json.dump(results, f, indent=1)
    report.gpu_plot(results, png_path)
    print(report.gpu_markdown(results))
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


# The child: one part, writing its result as it goes.


class Recorder:
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


def block_tensorflow():
    """Makes TensorFlow look absent, as on the GPU machine.

    A `None` in `sys.modules` makes `import tensorflow` raise
    `ModuleNotFoundError` and `importlib.util.find_spec` return `None`,
    which is how libraries probe for it.
    """
    for name in ("tensorflow", "tensorflow_text", "tf_keras"):
        sys.modules[name] = None


def run_part(args):
    """In the child: runs `args.part` with its sizes, in this process."""
    if args.block_tensorflow:
        block_tensorflow()
    from benchmarks.gpu import device
    from benchmarks.gpu import encoder
    from benchmarks.gpu import generation
    from benchmarks.gpu import hub
    from benchmarks.gpu import layer_tests
    from benchmarks.gpu import long
    from benchmarks.gpu import translator

    table = sizes("smoke" if args.smoke else "gpu")
    recorder, part, rounds = Recorder(args.result), args.part, table["rounds"]
    if part == "device":
        device.run(recorder, table["matmul_size"])
    elif part.startswith("tests"):
        layer_tests.run(recorder, table["tests"])
    elif part == "encoder":
        encoder.run(recorder, table["encoder"], rounds)
    elif part.startswith("long"):
        long.run(recorder, table["long"], fused=part == "long_fused")
    elif part == "generation":
        generation.run(recorder, table["generation"], rounds)
    elif part == "keras_hub":
        hub.run(recorder, table["keras_hub"], rounds)
    else:
        translator.run(recorder, table["translator"])
    if recorder.data["status"] == "running":
        recorder.update(status="ok")
