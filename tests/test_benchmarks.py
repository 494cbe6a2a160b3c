"""The benchmark runs: `python -m benchmarks.run --smoke` on tiny shapes."""

import json
import os
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The encoder case runs on the suite's backend: `make test`, `make
# test-jax` and `make test-torch` each cover one.
BACKENDS = [keras.backend.backend()]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Runs the smoke benchmark once; returns (summary line, results)."""
    results_dir = tmp_path_factory.mktemp("bench")
    env = {
        **os.environ,
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--smoke",
            "--backends",
            ",".join(BACKENDS),
            "--results-dir",
            str(results_dir),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    with open(summary["results"]) as f:
        return summary, json.load(f)


def test_summary_names_the_files(smoke):
    summary, results = smoke
    assert summary["cases"] == ["encoder", "generation", "long"]
    assert os.path.getsize(summary["plot"]) > 0
    assert summary["targets"] == len(results["targets"])
    assert summary["targets_met"] == sum(t["met"] for t in results["targets"])


def _speed_ratios(rows):
    """ours / keras_hub tokens/s of each encoder (backend, mode, shape,
    jit), from the rows themselves."""
    speed = {
        (
            r["backend"],
            r["mode"],
            r["batch"],
            r["seq_length"],
            r["jit_compile"],
            r["impl"],
        ): r["tokens_per_second"]
        for r in rows
    }
    return {
        key[:-1]: value / speed[(*key[:-1], "keras_hub")]
        for key, value in speed.items()
        if key[-1] == "keras_mha"
    }


def test_targets_are_the_ratios_of_the_measured_rows(smoke):
    _, results = smoke
    cases = results["cases"]
    targets = {t["target"]: t for t in results["targets"]}
    speed = {r["impl"]: r["tokens_per_second"] for r in cases["generation"]}
    for peer in ("recompute", "keras_hub"):
        name = {
            "recompute": "cached generation vs recompute",
            "keras_hub": "cached generation vs keras_hub cached",
        }[peer]
        assert targets[name]["measured"] == pytest.approx(
            speed["keras_mha"] / speed[peer]
        )
    ratios = _speed_ratios(cases["encoder"])
    for (backend, mode), lowest in {
        (backend, mode): min(
            ratio for key, ratio in ratios.items() if key[:2] == (backend, mode)
        )
        for backend, mode, *_ in ratios
    }.items():
        name = (
            f"encoder {mode} on {backend} never slower than keras_hub "
            "(lowest ratio, any shape)"
        )
        assert targets[name]["measured"] == pytest.approx(lowest)
    for target in results["targets"]:
        measured, goal = target["measured"], target["goal"]
        if "at most" in target["unit"]:
            assert target["met"] == (measured is not None and measured < goal)
        else:
            assert target["met"] == (measured is not None and measured >= goal)


def test_matmul_throughput_is_positive(smoke):
    _, results = smoke
    assert results["matmul_flops_per_second"] > 0
    assert results["machine"]["cores"] > 0


def test_encoder_has_every_impl_shape_mode_and_jit(smoke):
    _, results = smoke
    rows = results["cases"]["encoder"]
    keys = {
        (r["backend"], r["impl"], r["mode"], r["jit_compile"]) for r in rows
    }
    # TensorFlow with XLA off and on, JAX compiled, PyTorch eager: each
    # backend in a process of its own.
    jits = {"tensorflow": (False, True), "jax": (True,), "torch": (False,)}
    jits = {backend: jits[backend] for backend in BACKENDS}
    assert keys == {
        (backend, impl, mode, jit)
        for backend, backend_jits in jits.items()
        for impl in ("keras_mha", "keras_hub", "keras")
        for mode in ("train", "predict")
        for jit in backend_jits
    }
    # The parent process (TensorFlow) measures its own for the other cases.
    measured = set(results["matmul_flops_per_second_by_backend"])
    assert measured == {"tensorflow", *jits}
    for row in rows:
        assert row["tokens_per_second"] > 0
        assert row["fraction_of_matmul_peak"] > 0


def test_generation_has_every_impl(smoke):
    import keras_mha

    _, results = smoke
    rows = {r["impl"]: r for r in results["cases"]["generation"]}
    assert set(rows) == {"keras_mha", "keras_hub", "recompute"}
    expected = ["keras_hub", "recompute"]
    if hasattr(keras_mha.TransformerDecoderBlock, "get_initial_cache"):
        expected.append("keras_mha")
        # The cache and the recompute share weights: the same greedy tokens.
        assert rows["keras_mha"]["same_tokens_as_recompute"] == 1.0
    for impl in expected:
        assert rows[impl]["status"] == "ok"
        assert rows[impl]["tokens_per_second"] > 0


def test_long_sequences_ran_in_children(smoke):
    _, results = smoke
    rows = results["cases"]["long"]
    assert {r["impl"] for r in rows} == {"keras_mha", "keras"}
    for row in rows:
        assert row["status"] == "ok", row
        assert row["seconds"] > 0
        assert row["peak_rss_bytes"] >= row["baseline_rss_bytes"] > 0


@pytest.mark.parametrize(
    "argv",
    [["--cases", "encoder,decoder"], ["--backends", "tensorflow,mxnet"]],
    ids=["unknown_case", "unknown_backend"],
)
def test_unknown_case_or_backend_is_refused(argv):
    from benchmarks.run import parse_args

    with pytest.raises(SystemExit):
        parse_args(argv)


def _run_module(module, *args):
    """Runs `python -m module args`; returns its last line as JSON."""
    env = {
        **os.environ,
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    completed = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_encoder_profile_times_every_sublayer():
    result = _run_module(
        "benchmarks.profile_encoder",
        *("--batch", "2", "--seq", "8", "--width", "16"),
        *("--num-heads", "2", "--intermediate-dim", "32", "--rounds", "1"),
    )
    assert set(result) == {
        "keras_mha block",
        "keras_hub block",
        "keras_mha attention",
        "keras_hub attention",
        "feed-forward",
        "feed-forward 2D",
        "layer norm",
    }
    for times in result.values():
        assert times["forward_ms"] > 0
        assert times["forward_backward_ms"] > 0


def test_generation_profile_gives_the_cost_of_one_block():
    result = _run_module(
        "benchmarks.profile_generation",
        *("--blocks", "0,1", "--width", "16", "--num-heads", "2"),
        *("--intermediate-dim", "32", "--vocab", "20"),
        *("--prompt-length", "4", "--new-tokens", "4", "--rounds", "1"),
    )
    assert set(result["ms_per_token"]) == {
        "keras_mha 0",
        "keras_mha 1",
        "keras_hub 0",
        "keras_hub 1",
        "matvec",
    }
    assert all(ms > 0 for ms in result["ms_per_token"].values())
    assert result["matvec_fraction_of_matmul_peak"] > 0
    # The slope between 0 and 1 blocks is the difference of the two.
    ours = result["ms_per_token"]
    assert result["keras_mha_ms_per_block_per_token"] == pytest.approx(
        ours["keras_mha 1"] - ours["keras_mha 0"]
    )


@pytest.mark.slow  # two translators trained: `make test-slow` runs it
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the tokenizers and the word vocabulary run TensorFlow ops",
)
def test_catalog_comparison_trains_both_models_on_one_split():
    from benchmarks.studies import catalog

    summary = catalog.main(
        ["--num-pairs", "150", "--epochs", "1", "--seeds", "3"]
        + ["--examples", "4", "--hidden-dim", "16"]
        + ["--intermediate-dim", "16", "--vocabulary-size", "400"]
    )
    assert summary["split"] == [120, 15, 15]
    rows = summary["rows"]
    assert [(r["model"], r["seed"]) for r in rows] == [
        ("word-level", 3),
        ("subword", 3),
    ]
    for row in rows:
        assert 0 <= row["bleu"] <= 100 and 0 <= row["chrf"] <= 100
        # The same held-out sources and references for both models.
        assert [e[:2] for e in row["examples"]] == [
            e[:2] for e in rows[0]["examples"]
        ]
    # The word-level baseline's output: lowercase, no punctuation.
    for _, _, translation in rows[0]["examples"]:
        assert translation == translation.lower()
        assert not set(translation) & set(",.:;!?()%'\"")


# `timeit` of a loop that takes minutes: a child that outlives its limits.
_BUSY = ("timeit", ["-n", "1000000000", "pass"])


@pytest.mark.parametrize(
    "module, args, limits, status, reason",
    [
        (*_BUSY, {"time_limit_s": 0.5}, "timed out", "over its 0 s"),
        (*_BUSY, {"memory_limit_bytes": 1}, "memory cap", "over 0.0 GiB"),
        ("benchmarks.absent", [], {}, "error", "exit 1: "),
        ("json.tool", ["--help"], {"time_limit_s": 60}, "ok", None),
    ],
    ids=["time_limit", "memory_limit", "crash", "ok"],
)
def test_child_ends_with_the_status_of_its_limits(
    module, args, limits, status, reason
):
    from benchmarks.child import Child

    result = Child(module, args, **limits).wait()
    assert result["status"] == status
    assert result.get("reason", "").startswith(reason or "")
    assert ("reason" in result) == (reason is not None)
    assert result["seconds"] < 30
    if status == "ok":
        assert "json.tool" in result["output"]
