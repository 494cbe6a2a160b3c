"""Recording attention probabilities during a forward pass.

`keras_mha.visualize.attention_maps` runs a model inside `recording()`;
while a recorder is active, every attention layer of the package computes
its probabilities on the explicit path and hands them, with itself, to the
recorder (`record`). Outside `recording()` the layers do nothing extra.
"""

import contextlib
import dataclasses

import numpy as np
from keras import ops

_active = []  # The recorders of the `recording()` blocks open now.


@dataclasses.dataclass
class Record:
    """One attention call: its key, its layer and its `(b, n, t, s)` maps."""

    path: str
    layer: object
    scores: np.ndarray


class Recorder:
    """Collects the attention probabilities of the calls it sees, in order."""

    def __init__(self):
        self.records = []

    def record(self, layer, scores):
        try:
            scores = ops.convert_to_numpy(scores)
        except Exception as error:  # A traced call: its maps are symbolic.
            raise ValueError(
                "Attention maps are read from an eager forward pass, but "
                f"layer {layer.name} was called inside a traced function "
                "(tf.function, jax.jit or torch.compile). Call the model "
                "itself, not a compiled wrapper. Received: scores of type "
                f"{type(scores).__name__}"
            ) from error
        path = layer.path or layer.name
        calls = sum(r.layer is layer for r in self.records)
        # A layer called twice in one pass (shared weights) keeps both.
        key = path if calls == 0 else f"{path}:{calls}"
        self.records.append(Record(key, layer, np.asarray(scores, "float32")))


def active_recorder():
    """The innermost open recorder, or `None` (the layers' fast path)."""
    return _active[-1] if _active else None


@contextlib.contextmanager
def recording():
    """Opens a recorder for the attention calls of the block it wraps."""
    recorder = Recorder()
    _active.append(recorder)
    try:
        yield recorder
    finally:
        _active.remove(recorder)
