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
    """Collects the attention probabilities of the calls it sees, in order.

    Traced calls (Keras building an unbuilt model by tracing it, or a
    `tf.function` / `jax.jit` around the model) have symbolic maps; they
    are counted in `traced`, not recorded.
    """

    def __init__(self):
        self.records = []
        self.traced = 0

    def record(self, layer, scores):
        try:
            scores = np.asarray(ops.convert_to_numpy(scores), "float32")
        except Exception:  # Symbolic: no values to read.
            self.traced += 1
            return
        path = layer.path or layer.name
        calls = sum(r.layer is layer for r in self.records)
        # A layer called twice in one pass (shared weights) keeps both.
        key = path if calls == 0 else f"{path}:{calls}"
        self.records.append(Record(key, layer, scores))


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
