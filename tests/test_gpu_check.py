"""The GPU check, `python -m benchmarks.gpu --smoke`, on the CPU.

The smoke run takes the code paths of a GPU run (the same parts, children
and time limits, on tiny shapes, with TensorFlow made unimportable as on
the GPU machine), so the check keeps working while no GPU is at hand. Its
JSON is checked against the schema docs/gpu.md's results come from.

The check runs on JAX whatever the suite's backend, so these tests run in
the JAX run of the suite only; the translator part (a minute or more of
`fit` on a CPU) is a slow test.
"""

import json
import os
import subprocess
import sys

import keras
import pytest

from benchmarks import report
from benchmarks.gpu import check
from benchmarks.sizes import sizes

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="the GPU check runs on JAX: tested in the JAX run of the suite",
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Fields every row of a part has, by part.
ROW_FIELDS = {
    "encoder": {
        "backend",
        "dtype_policy",
        "batch",
        "seq_length",
        "jit_compile",
        "mode",
        "impl",
        "status",
        "seconds_per_step",
        "tokens_per_second",
        "flops_per_second",
        "fraction_of_bf16_peak",
    },
    "long_fused": {"seq_length", "status", "kernel", "seconds"},
    "long_explicit": {"seq_length", "status", "kernel", "seconds"},
    "generation": {
        "impl",
        "batch",
        "status",
        "seconds",
        "tokens_per_second",
        "flops_per_second",
        "fraction_of_bf16_peak",
    },
    "keras_hub": {
        "mode",
        "impl",
        "batch",
        "status",
        "seconds",
        "tokens_per_second",
    },
}


FAST_PARTS = [part for part in check.PARTS if part != "translator"]
SMOKE = sizes("smoke")


def _run(out, *args):
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--out", str(out), *args],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    with open(summary["results"]) as f:
        return summary, json.load(f)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Runs the whole smoke check once; returns (summary, results, out)."""
    out = tmp_path_factory.mktemp("gpu")
    summary, results = _run(out, "--smoke", "--parts", ",".join(FAST_PARTS))
    return summary, results, out


def test_every_part_ran_and_wrote_its_files(smoke):
    summary, results, out = smoke
    assert results["schema"] == check.SCHEMA
    assert results["smoke"] is True
    assert list(results["parts"]) == FAST_PARTS
    assert summary["statuses"] == dict.fromkeys(FAST_PARTS, "ok")
    assert 0 < results["seconds"] <= results["budget_s"]
    for name in ("gpu_check.json", "gpu_check.png", "gpu_check.log"):
        assert os.path.getsize(out / name) > 0
    for part in results["parts"].values():
        assert part["status"] in check.STATUSES
        assert 0 < part["seconds"] <= part["budget_s"] + 5


def test_device_part_runs_without_tensorflow(smoke):
    _, results, _ = smoke
    device = results["parts"]["device"]
    assert device["tensorflow_importable"] is False
    assert device["backend"] == "jax"
    assert device["bf16_flops_per_second"] > 0
    # The children import this tree's package.
    assert device["keras_mha_path"] == os.path.join(ROOT, "keras_mha")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_layer_tests_are_counted_per_backend(smoke, backend):
    _, results, _ = smoke
    part = results["parts"][f"tests_{backend}"]
    assert part["backend"] == backend
    # JAX's float32 matmuls at full precision, as PyTorch's by default.
    precision = "highest" if backend == "jax" else None
    assert part["jax_default_matmul_precision"] == precision
    assert part["passed"] == 2  # the two tests the smoke run selects
    assert part["failed"] == part["errors"] == 0
    assert part["failures"] == []


@pytest.mark.parametrize("name", sorted(ROW_FIELDS))
def test_rows_have_the_schema(smoke, name):
    _, results, _ = smoke
    rows = results["parts"][name]["rows"]
    assert rows
    for row in rows:
        assert ROW_FIELDS[name] <= set(row), row
        assert row["status"] == "ok"
        assert row["seconds" if "seconds" in row else "seconds_per_step"] > 0


def test_encoder_compares_the_three_blocks_in_bfloat16(smoke):
    _, results, _ = smoke
    rows = results["parts"]["encoder"]["rows"]
    assert {(r["impl"], r["mode"]) for r in rows} == {
        (impl, mode)
        for impl in ("keras_mha", "keras_hub", "keras")
        for mode in ("train", "predict")
    }
    assert {r["dtype_policy"] for r in rows} == {"mixed_bfloat16"}
    peak = results["parts"]["device"]["bf16_flops_per_second"]
    for row in rows:
        assert row["fraction_of_bf16_peak"] == pytest.approx(
            row["flops_per_second"] / peak
        )


def test_long_sequences_run_both_paths_at_every_length(smoke):
    _, results, _ = smoke
    lengths = list(SMOKE["long"]["seq_lengths"])
    for name, flash in (("long_fused", None), ("long_explicit", False)):
        part = results["parts"][name]
        assert part["flash_attention"] is flash
        assert [r["seq_length"] for r in part["rows"]] == lengths
        for row in part["rows"]:
            assert row["peak_memory_bytes"] > 0
            # No GPU here: XLA's own attention, never cuDNN's.
            assert row["kernel"].startswith("XLA")


def test_generation_times_both_caches_at_every_batch(smoke):
    _, results, _ = smoke
    rows = results["parts"]["generation"]["rows"]
    assert {(r["impl"], r["batch"]) for r in rows} == {
        (impl, batch)
        for impl in ("keras_mha", "keras_hub")
        for batch in SMOKE["generation"]["batches"]
    }


def test_keras_hub_part_trains_and_generates_both_models(smoke):
    _, results, _ = smoke
    rows = results["parts"]["keras_hub"]["rows"]
    assert {(r["impl"], r["mode"]) for r in rows} == {
        (impl, mode)
        for impl in ("keras_mha", "keras_hub")
        for mode in ("train", "generate")
    }
    assert all(r["same_tokens"] for r in rows if r["mode"] == "generate")


@pytest.mark.slow
def test_translator_reports_epochs_tokens_and_held_out_scores(tmp_path):
    summary, results = _run(tmp_path, "--smoke", "--parts", "translator")
    assert summary["statuses"] == {"translator": "ok"}
    part = results["parts"]["translator"]
    assert part["dtype_policy"] == "mixed_bfloat16"
    assert len(part["epoch_seconds"]) == SMOKE["translator"]["epochs"]
    assert part["tokens_per_epoch"] > 0
    assert part["training_tokens_per_second"] == pytest.approx(
        part["tokens_per_epoch"] / part["steady_epoch_seconds"]
    )
    assert 0 <= part["exact_match"] <= 1
    assert 0 <= part["bleu"] <= 100  # sacrebleu's scale


def test_markdown_has_a_table_per_part(smoke):
    _, results, _ = smoke
    text = report.gpu_markdown(results)
    for header in (
        "| layer tests |",
        "| batch × seq |",
        "| seq |",
        "| batch |",
        "| converted Llama |",
        "| translator |",  # "not run" here: a table all the same
    ):
        assert header in text


def test_a_part_past_its_time_is_recorded_and_the_next_still_runs(
    tmp_path, monkeypatch
):
    # The device part has 1 s (it imports Keras and JAX: longer), the
    # long-sequence part its usual share.
    monkeypatch.setattr(check, "BUDGET_S", {**check.BUDGET_S, "device": 1})
    args = check.parse_args(
        ["--smoke", "--out", str(tmp_path), "--parts", "device,long_fused"]
    )
    results = check.run_parts(args)
    assert results["parts"]["device"]["status"] == "timed out"
    # 1 s scaled to the smoke run's budget.
    scale = check.SMOKE_BUDGET_S / check.TOTAL_BUDGET_S
    assert results["parts"]["device"]["reason"] == f"over its {scale:.0f} s"
    assert results["parts"]["long_fused"]["status"] == "ok"
    assert "===== device" in (tmp_path / "gpu_check.log").read_text()


def test_no_time_left_skips_the_remaining_parts(tmp_path):
    args = check.parse_args(
        ["--smoke", "--out", str(tmp_path), "--parts", "device,encoder"]
    )
    args.budget_s = 4  # under the 5 s a part needs to start
    results = check.run_parts(args)
    assert {p["status"] for p in results["parts"].values()} == {"skipped"}


@pytest.mark.parametrize(
    "argv",
    [["--parts", "device,decoder"], ["--parts", ","], ["--budget-s", "0"]],
    ids=["unknown_part", "no_part", "no_budget"],
)
def test_bad_arguments_are_refused(argv):
    with pytest.raises(SystemExit):
        check.parse_args(argv)


def test_gpu_wheels_target_names_no_tensorflow():
    with open(os.path.join(ROOT, "Makefile")) as f:
        makefile = f.read()
    wheels = makefile.split("GPU_WHEELS :=", 1)[1].split("GPU_PLATFORMS", 1)[0]
    for name in ("keras==", "keras-hub==", "optree==", "namex=="):
        assert name in wheels
    assert "tensorflow" not in wheels
