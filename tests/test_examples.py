"""The example scripts, run as a user runs them (`python examples/X.py`):
`--help`, tiny end-to-end runs, and (marked slow) the default runs reaching
their targets."""

import ast
import json
import os
import re
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The SavedModel export runs TensorFlow ops inside its graph.
TENSORFLOW = keras.backend.backend() == "tensorflow"
TINY_TRANSLATOR = [
    *("--num-pairs", "300", "--epochs", "2", "--vocabulary-size", "500"),
    *("--hidden-dim", "16", "--num-heads", "2", "--intermediate-dim", "16"),
    *("--num-layers", "1", "--batch-size", "32", "--max-length", "12"),
    *("--verbose", "0"),
]
SCRIPTS = [
    "translate",
    "catalog_pairs",
    "classify_digits",
    "attention_heads",
    "demo",
    "language_model",
    "rotary_language_model",
]


def run_example(name, *argv, timeout=900):
    """Runs `examples/name.py`; returns its JSON summary and its stdout."""
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", f"{name}.py"), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": ROOT,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "KERAS_BACKEND": keras.backend.backend(),
        },
    )
    assert result.returncode == 0, result.stderr[-4000:]
    if "--help" in argv:
        return None, result.stdout
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stdout


OPTION = re.compile(r"(?<![\w-])--[a-z][a-z_-]*")


def documented_options(name):
    """The options of `examples/name.py` that the README's examples table,
    the docs pages' commands and the script's own docstring name."""
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    pages = [
        open(os.path.join(ROOT, "docs", page), encoding="utf-8").read()
        for page in os.listdir(os.path.join(ROOT, "docs"))
        if page.endswith(".md")
    ]
    script = f"examples/{name}.py"
    options = set()
    for line in readme.splitlines():
        if line.startswith(f"| `{script}` |"):
            options |= set(OPTION.findall(line))
    for text in [readme, *pages]:
        for span in re.findall(r"`([^`]*)`", text):
            if script in span:
                # Options after the script's name, up to another script.
                after = span.split(script, 1)[1].split(".py", 1)[0]
                options |= set(OPTION.findall(after))
    with open(os.path.join(ROOT, script), encoding="utf-8") as file:
        docstring = ast.get_docstring(ast.parse(file.read())) or ""
    for line in docstring.splitlines():
        # Options of another script named on the line are that script's.
        options |= set(OPTION.findall(re.split(r"\w+\.py", line)[0]))
    return options


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_lists_the_documented_options(name):
    _, out = run_example(name, "--help")
    assert out.startswith("usage:")
    documented = documented_options(name)
    assert documented, f"the README's examples table names no option of {name}"
    listed = set(OPTION.findall(out))
    assert documented <= listed, documented - listed


@pytest.mark.skipif(
    not TENSORFLOW,
    reason="minutes of compiles per bucket length on JAX and PyTorch; the "
    "translator's training and decoding run on this backend in "
    "tests/test_seq2seq_training.py and tests/test_seq2seq_decoding.py",
)
def test_translate_then_attention_heads(tmp_path):
    output_dir = str(tmp_path)
    summary, _ = run_example(
        "translate", *TINY_TRANSLATOR, "--output-dir", output_dir
    )
    assert set(summary) == {
        "exact_match",
        "bleu",
        "chrf",
        "epochs",
        "seconds",
        "savedmodel",
    }
    assert 0 <= summary["exact_match"] <= 1
    assert 0 <= summary["bleu"] <= 100 and 0 <= summary["chrf"] <= 100
    assert summary["epochs"] == 2
    savedmodel = os.path.join(output_dir, "savedmodel")
    assert summary["savedmodel"] == (savedmodel if TENSORFLOW else None)
    saved_model_pb = os.path.join(savedmodel, "saved_model.pb")
    assert os.path.exists(saved_model_pb) == TENSORFLOW
    for name in [
        "translator.keras",
        "source.spm",
        "target.spm",
        "held_out.tsv",
        "logs",
    ]:
        assert os.path.exists(os.path.join(output_dir, name)), name
    # A finished run removes its backup; only an interrupted one keeps it.
    assert not os.path.exists(os.path.join(output_dir, "backup"))

    seeds = [
        "The chef baked a delicious cake for the birthday party",
        "The programmer struggled to debug the code",
        "The rain in Spain falls mainly on the plain",
    ]
    summary, out = run_example(
        "attention_heads",
        "--run-dir",
        output_dir,
        *(arg for seed in seeds for arg in ("--sentence", seed)),
    )
    assert summary["sentences"] == seeds
    # One encoder and one decoder block: three attention layers a sentence.
    figures = summary["figures"]
    assert len(figures) == 9
    assert all(os.path.getsize(path) > 0 for path in figures)
    for layer in (
        "encoder_block_0/self_attention self-attention",
        "decoder_block_0/self_attention self-attention",
        "decoder_block_0/cross_attention cross-attention",
    ):
        assert out.count(layer) == 3, layer
    # A table per layer, a row per head (two heads).
    assert out.count("head  distance  offset") == 9
    assert len(summary["head_views"]) == 3
    for seed, path in zip(seeds, summary["head_views"]):
        html = open(path, encoding="utf-8").read()
        assert seed in html and "kmhaHeadView" in html
    # Words, not pieces: "birthday" whole, no SentencePiece marks.
    assert "\u2581" not in open(summary["head_views"][0]).read()
    assert '"birthday"' in open(summary["head_views"][0]).read()


@pytest.mark.slow  # a minute or more: `make test-slow` runs it
@pytest.mark.skipif(
    not TENSORFLOW,
    reason="reading the catalogs and the CLI do not depend on the backend",
)
def test_translate_reads_a_pairs_file(tmp_path):
    pairs = tmp_path / "pairs.tsv"
    catalog, _ = run_example("catalog_pairs", "--output", str(pairs))
    if catalog["pairs"] < 300:
        pytest.skip("django and sphinx are not installed (the test extra)")
    lines = pairs.read_text(encoding="utf-8").splitlines()
    assert len(lines) == catalog["pairs"]
    assert all(len(line.split("\t")) == 2 for line in lines)
    small = tmp_path / "small.tsv"
    small.write_text("\n".join(lines[:300]) + "\n", encoding="utf-8")
    summary, out = run_example(
        "translate",
        *TINY_TRANSLATOR,
        "--epochs",
        "1",
        "--pairs",
        str(small),
        "--output-dir",
        str(tmp_path / "run"),
    )
    assert "240 training, 30 validation, 30 held-out pairs" in out
    assert summary["epochs"] == 1


@pytest.mark.slow  # a minute or more: `make test-slow` runs it
@pytest.mark.skipif(
    not TENSORFLOW,
    reason="the demo serves a SavedModel export, which needs the TF backend",
)
def test_demo_runs_end_to_end(tmp_path):
    summary, out = run_example(
        "demo", "--output-dir", str(tmp_path), *TINY_TRANSLATOR
    )
    assert len(summary["served"]) == 4
    # One encoder and one decoder block: three attention layers.
    assert summary["figures"] == 3
    assert os.path.isdir(tmp_path / "attention")
    assert os.path.getsize(summary["head_view"]) > 0
    assert f"Open the head view in a browser: {summary['head_view']}" in out
    assert "saved_model_cli.py run --dir" in out


def test_classify_digits_tiny(tmp_path):
    summary, _ = run_example(
        "classify_digits",
        *("--epochs", "1", "--steps-per-epoch", "5", "--hidden-dim", "16"),
        *("--num-heads", "2", "--intermediate-dim", "16"),
        *("--num-layers", "1", "--verbose", "0"),
        *("--output-dir", str(tmp_path)),
    )
    assert summary["test_images"] == 360 and summary["epochs"] == 1
    assert 0 <= summary["test_accuracy"] <= 1
    assert os.path.exists(tmp_path / "digits.keras")


def test_language_model_tiny(tmp_path):
    summary, _ = run_example(
        "language_model",
        *("--num-sentences", "300", "--epochs", "1"),
        *("--hidden-dim", "16", "--num-heads", "2", "--vocabulary-size", "300"),
        *("--intermediate-dim", "16", "--num-layers", "1"),
        *("--max-length", "10", "--num-prompts", "4"),
        *("--verbose", "0", "--output-dir", str(tmp_path)),
    )
    assert summary["same_tokens"] is True  # cached == recomputed
    assert 1 < summary["perplexity"] < float("inf")
    assert summary["cached_tokens_per_second"] > 0
    assert len(summary["samples"]) == 3
    assert os.path.exists(summary["checkpoint"])


@pytest.mark.slow
def test_translate_default_run_serves_exact_translations(tmp_path):
    summary, _ = run_example(
        "translate", "--output-dir", str(tmp_path), "--verbose", "2"
    )
    assert summary["exact_match"] >= 0.9, summary
    assert summary["chrf"] >= 90, summary


@pytest.mark.slow
def test_classify_digits_default_run_reaches_97_percent(tmp_path):
    summary, _ = run_example("classify_digits", "--output-dir", str(tmp_path))
    assert summary["test_accuracy"] >= 0.97, summary


@pytest.mark.slow
def test_language_model_default_run_learns(tmp_path):
    summary, _ = run_example(
        "language_model", "--output-dir", str(tmp_path), "--verbose", "2"
    )
    assert summary["same_tokens"] is True, summary
    assert summary["cached_speedup"] >= 3, summary
