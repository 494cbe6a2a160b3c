"""`examples/rotary_language_model.py` runs small and learns."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import rotary_language_model


def test_rotary_language_model_tiny_run_learns(capsys):
    summary = rotary_language_model.main(
        [
            "--train-size",
            "256",
            "--length",
            "8",
            "--epochs",
            "3",
            "--hidden-dim",
            "32",
            "--num-layers",
            "1",
            "--sliding-window",
            "5",
        ]
    )
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == summary
    assert summary["rotary"] is True
    assert summary["test_loss"] < summary["initial_loss"]
    assert 0.0 <= summary["test_accuracy_second_half"] <= 1.0
