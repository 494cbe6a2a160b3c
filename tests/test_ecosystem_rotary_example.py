"""`examples/rotary_language_model.py`, run as a user runs it: with rotary
positions it learns the repeated half, which a model without positions
cannot find."""

from tests.test_examples import run_example

TINY = [
    *("--train-size", "1024", "--length", "8", "--epochs", "4"),
    *("--hidden-dim", "32", "--num-layers", "1", "--sliding-window", "5"),
]


def test_rotary_positions_learn_what_no_positions_cannot():
    rotary, _ = run_example("rotary_language_model", *TINY)
    baseline, _ = run_example("rotary_language_model", *TINY, "--no-rotary")
    assert rotary["rotary"] is True and baseline["rotary"] is False
    assert rotary["parameters"] == baseline["parameters"]
    assert rotary["test_loss"] < rotary["initial_loss"]
    # Measured: 1.0 with rotary positions after 4 epochs; 0.33 without
    # positions after 6.
    assert rotary["test_accuracy_second_half"] >= 0.9
    assert (
        rotary["test_accuracy_second_half"]
        >= baseline["test_accuracy_second_half"] + 0.3
    )
