"""Benchmarks keras_mha's layers side by side with their peers.

    python -m benchmarks.run                       # the full run (make bench)
    python -m benchmarks.run --smoke               # tiny shapes, seconds
    python -m benchmarks.run --cases encoder,long  # some cases only
    python -m benchmarks.run --cases encoder --backends jax  # one backend

Each case runs our layer and its peers on the same inputs in one process,
in interleaved rounds, and keeps each one's fastest round; long sequences
run one child process per (layer, length) so their peak memory is their
own. The encoder case runs on every backend of `--backends` (default all
three), each other backend in a child process of its own with its own
matmul peak; generation and long sequences run on TensorFlow. Prints the
table (ratios ours / peer, then the absolute figures), the targets met or
missed, and a JSON summary as the last line; writes the
results as JSON and a PNG plot.
"""

import argparse
import datetime
import json
import os
import shlex
import sys
import time

from benchmarks import report
from benchmarks.sizes import sizes
from benchmarks.timing import comma_list
from benchmarks.timing import log

CASES = ("encoder", "generation", "long")
BACKENDS = ("tensorflow", "jax", "torch")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Benchmarks keras_mha's layers against their peers."
    )
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"comma-separated cases to run, of {', '.join(CASES)} "
        "(default: all)",
    )
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated Keras backends of the encoder case "
        "(default: all three)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny shapes and one step a round: checks that every case "
        "runs, in seconds; its numbers mean nothing",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="interleaved rounds per measurement (default 3, smoke 2)",
    )
    parser.add_argument(
        "--results-dir",
        default=None,
        help="where to write the JSON and PNG (default benchmarks/results, "
        "or runs/bench-smoke with --smoke, so a smoke run never "
        "replaces the committed results)",
    )
    parser.add_argument(
        "--memory-cap-gib",
        type=float,
        default=16.0,
        help="long case: kill a child past this RSS",
    )
    parser.add_argument(
        "--time-cap-s",
        type=float,
        default=300.0,
        help="long case: kill a child running longer",
    )
    args = parser.parse_args(argv)
    args.cases = comma_list(parser, "--cases", args.cases, CASES)
    args.backends = comma_list(parser, "--backends", args.backends, BACKENDS)
    if args.results_dir is None:
        args.results_dir = (
            os.path.join("runs", "bench-smoke")
            if args.smoke
            else os.path.join("benchmarks", "results")
        )
    return args


def run_cases(args):
    """Measures the selected cases; returns the results dict."""
    import keras

    from benchmarks import encoder
    from benchmarks import generation
    from benchmarks import long_sequence
    from benchmarks.timing import machine
    from benchmarks.timing import matmul_flops_per_second

    # Fixed weights: runs repeat, and cached and recomputed tokens compare.
    keras.utils.set_random_seed(0)
    table = sizes("smoke" if args.smoke else "full")
    rounds = args.rounds or table["rounds"]
    log("matmul throughput: measuring")
    peak = matmul_flops_per_second(table["matmul_size"])
    log(f"  {peak / 1e9:.1f} GFLOP/s float32")
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        "command": shlex.join(
            [
                os.path.basename(sys.executable),
                "-m",
                "benchmarks.run",
                *sys.argv[1:],
            ]
        ),
        "smoke": args.smoke,
        "rounds": rounds,
        "machine": machine(),
        "matmul_flops_per_second": peak,
        # Other processes share the cores: the 1-minute load average
        # before and after says how much.
        "load_average_start": os.getloadavg()[0],
        "sizes": {case: table[case] for case in args.cases},
        "cases": {},
    }
    here = keras.backend.backend()
    results["matmul_flops_per_second_by_backend"] = {here: peak}
    for case in args.cases:
        if case == "encoder":
            rows = []
            for backend in args.backends:
                if backend == here:
                    rows += encoder.run(
                        **table["encoder"], rounds=rounds, peak=peak
                    )
                else:
                    child = encoder_on_backend(backend, args)
                    rows += child["cases"]["encoder"]
                    results["matmul_flops_per_second_by_backend"][backend] = (
                        child["matmul_flops_per_second"]
                    )
        elif case == "generation":
            rows = generation.run(
                **table["generation"], rounds=rounds, peak=peak
            )
        else:
            cap = (4.0 if args.smoke else args.memory_cap_gib) * 1024**3
            rows = long_sequence.run(
                **table["long"],
                memory_cap=cap,
                time_cap=args.time_cap_s,
                peak=peak,
            )
        results["cases"][case] = rows
    return results


def encoder_on_backend(backend, args):
    """The encoder case on `backend`, in a child process; its results."""
    import tempfile

    from benchmarks.child import Child

    with tempfile.TemporaryDirectory() as results_dir:
        command = ["--cases", "encoder", "--backends", backend]
        command += ["--results-dir", results_dir]
        if args.smoke:
            command.append("--smoke")
        if args.rounds:
            command += ["--rounds", str(args.rounds)]
        log(f"encoder on {backend}: a child process")
        env = {"KERAS_BACKEND": backend}
        child = Child("benchmarks.run", command, env=env).wait()
        log(child["output"].rstrip())
        if child["status"] != "ok":
            raise RuntimeError(f"The encoder on {backend}: {child['reason']}")
        with open(os.path.join(results_dir, "latest.json")) as f:
            return json.load(f)


def main(argv=None):
    args = parse_args(argv)
    # Before anything imports Keras (the cases import it lazily): TensorFlow
    # unless the backend is set (a child of `encoder_on_backend`).
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.monotonic()
    results = run_cases(args)
    results["load_average_end"] = os.getloadavg()[0]
    results["targets"] = report.targets(results)
    results["seconds"] = time.monotonic() - start
    os.makedirs(args.results_dir, exist_ok=True)
    json_path = os.path.join(args.results_dir, "latest.json")
    png_path = os.path.join(args.results_dir, "latest.png")
    with open(json_path, "w") as f:
        json.dump(results, f, indent=1)
    report.plot(results, png_path)
    machine = results["machine"]
    print(
        f"\n{results['date']}, {machine['cpu']} × {machine['cores']} cores, "
        f"{machine['backend']} {machine['backend_version']}, matmul peak "
        f"{results['matmul_flops_per_second'] / 1e9:.1f} GFLOP/s, load "
        f"average {results['load_average_start']:.1f} at the start and "
        f"{results['load_average_end']:.1f} at the end\n"
    )
    print(report.markdown(results))
    print()
    print(report.targets_markdown(results["targets"]))
    print(
        json.dumps(
            {
                "results": json_path,
                "plot": png_path,
                "cases": args.cases,
                "targets_met": sum(t["met"] for t in results["targets"]),
                "targets": len(results["targets"]),
                "seconds": round(results["seconds"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
