"""The example scripts: `--help`, tiny end-to-end runs, and (marked slow)
the default runs reaching their targets."""

import json
import os
import sys

import keras
import pytest

# The SavedModel export runs TensorFlow ops inside its graph.
TENSORFLOW = keras.backend.backend() == "tensorflow"

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import attention_heads  # noqa: E402
import classify_digits  # noqa: E402
import demo  # noqa: E402
import language_model  # noqa: E402
import translate  # noqa: E402

TINY_TRANSLATOR = [
    "--num-pairs",
    "300",
    "--epochs",
    "2",
    "--hidden-dim",
    "16",
    "--num-heads",
    "2",
    "--intermediate-dim",
    "16",
    "--num-layers",
    "1",
    "--batch-size",
    "32",
    "--max-length",
    "12",
    "--verbose",
    "0",
]


def last_json_line(capsys):
    lines = capsys.readouterr().out.strip().splitlines()
    return json.loads(lines[-1]), lines


@pytest.mark.parametrize(
    "module",
    [translate, classify_digits, attention_heads, demo, language_model],
    ids=lambda module: module.__name__,
)
def test_help(module, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    assert "--output-dir" in capsys.readouterr().out


def test_translate_then_attention_heads(tmp_path, capsys):
    output_dir = str(tmp_path)
    summary = translate.main([*TINY_TRANSLATOR, "--output-dir", output_dir])
    printed, _ = last_json_line(capsys)
    assert printed == summary
    assert set(summary) == {
        "exact_match",
        "bleu",
        "epochs",
        "seconds",
        "savedmodel",
    }
    assert 0 <= summary["exact_match"] <= 1 and 0 <= summary["bleu"] <= 1
    assert summary["epochs"] == 2
    savedmodel = os.path.join(output_dir, "savedmodel")
    assert summary["savedmodel"] == (savedmodel if TENSORFLOW else None)
    saved_model_pb = os.path.join(savedmodel, "saved_model.pb")
    assert os.path.exists(saved_model_pb) == TENSORFLOW
    for name in ["translator.keras", "vocabulary.json", "held_out.tsv", "logs"]:
        assert os.path.exists(os.path.join(output_dir, name)), name
    # A finished run removes its backup; only an interrupted one keeps it.
    assert not os.path.exists(os.path.join(output_dir, "backup"))

    figures = attention_heads.main(
        ["--run-dir", output_dir, "--num-sentences", "2", "--max-length", "12"]
    )["figures"]
    out = capsys.readouterr().out
    # One encoder and one decoder block, two sentences, two heads a block.
    assert len(figures) == 4
    assert all(os.path.getsize(path) > 0 for path in figures)
    assert out.count("encoder_block_0 self-attention") == 2
    assert out.count("decoder_block_0 cross-attention") == 2
    assert out.count("head 1: ") == 4
    assert json.loads(out.strip().splitlines()[-1]) == {"figures": figures}


class Interrupt(keras.callbacks.Callback):
    """Stops training like Ctrl-C at the end of the first epoch."""

    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


def test_interrupted_translate_run_resumes(tmp_path, capsys, monkeypatch):
    argv = [
        *TINY_TRANSLATOR,
        "--epochs",
        "3",
        "--verbose",
        "2",
        "--output-dir",
        str(tmp_path),
    ]
    # The interruption comes after BackupAndRestore saved the epoch, as the
    # TensorBoard callback runs last.
    monkeypatch.setattr(
        keras.callbacks, "TensorBoard", lambda *args, **kwargs: Interrupt()
    )
    with pytest.raises(KeyboardInterrupt):
        translate.main(argv)
    monkeypatch.undo()
    assert os.path.isdir(tmp_path / "backup")
    capsys.readouterr()
    summary = translate.main(argv)
    out = capsys.readouterr().out
    assert "Epoch 1/3" not in out and "Epoch 2/3" in out, out
    assert summary["epochs"] == 3


@pytest.mark.skipif(
    not TENSORFLOW,
    reason="the demo serves a SavedModel export, which needs the TF backend",
)
def test_demo_runs_end_to_end(tmp_path, capsys):
    summary = demo.main(["--output-dir", str(tmp_path), *TINY_TRANSLATOR])
    out = capsys.readouterr().out
    assert len(summary["served"]) == 3
    assert summary["figures"] == 2
    assert os.path.isdir(tmp_path / "attention")
    assert "saved_model_cli run --dir" in out
    assert json.loads(out.strip().splitlines()[-1]) == summary


def test_classify_digits_tiny(tmp_path, capsys):
    summary = classify_digits.main(
        [
            "--epochs",
            "1",
            "--steps-per-epoch",
            "5",
            "--hidden-dim",
            "16",
            "--num-heads",
            "2",
            "--intermediate-dim",
            "16",
            "--num-layers",
            "1",
            "--verbose",
            "0",
            "--output-dir",
            str(tmp_path),
        ]
    )
    printed, _ = last_json_line(capsys)
    assert printed == summary
    assert summary["test_images"] == 360 and summary["epochs"] == 1
    assert 0 <= summary["test_accuracy"] <= 1
    assert os.path.exists(tmp_path / "digits.keras")


def test_language_model_tiny(tmp_path, capsys):
    summary = language_model.main(
        [
            *("--num-sentences", "300", "--epochs", "1"),
            *("--hidden-dim", "16", "--num-heads", "2"),
            *("--intermediate-dim", "16", "--num-layers", "1"),
            *("--max-length", "10", "--num-prompts", "4"),
            *("--verbose", "0", "--output-dir", str(tmp_path)),
        ]
    )
    printed, lines = last_json_line(capsys)
    assert printed == summary
    assert summary["same_tokens"] is True  # cached == recomputed
    assert 1 < summary["perplexity"] < float("inf")
    assert summary["cached_tokens_per_second"] > 0
    assert len(summary["samples"]) == 3
    assert all(s.startswith("[start]") for s in summary["samples"])
    assert os.path.exists(summary["checkpoint"])


def test_classify_digits_pixel_tokens(tmp_path):
    x_train, x_test, _, _ = classify_digits.load_sequences("pixels")
    assert x_train.shape[1:] == x_test.shape[1:] == (64, 1)
    with pytest.raises(ValueError, match="tokens='columns'"):
        classify_digits.load_sequences("columns")


@pytest.mark.slow
def test_translate_default_run_learns(tmp_path):
    summary = translate.main(["--output-dir", str(tmp_path), "--verbose", "2"])
    assert summary["exact_match"] >= 0.8, summary
    assert summary["bleu"] >= 0.8, summary


@pytest.mark.slow
def test_classify_digits_default_run_reaches_97_percent(tmp_path):
    summary = classify_digits.main(["--output-dir", str(tmp_path)])
    assert summary["test_accuracy"] >= 0.97, summary


@pytest.mark.slow
def test_language_model_default_run_learns(tmp_path):
    summary = language_model.main(
        ["--output-dir", str(tmp_path), "--verbose", "2"]
    )
    # An untrained model is near-uniform over the vocabulary (81
    # tokens); the grammar leaves several choices at most positions.
    assert summary["perplexity"] < 8, summary
    assert summary["same_tokens"] is True, summary
