"""Cross-entropy on integer labels with label smoothing and padding ignored.

Keras's `SparseCategoricalCrossentropy` ignores padding (`ignore_class`) but
has no `label_smoothing`; its `CategoricalCrossentropy` smooths but needs
one-hot labels and cannot ignore a class. Translation wants both, as in
"Attention Is All You Need" (label smoothing 0.1 on padded target batches).
"""

import keras
from keras import ops

from keras_mha._validation import check_rate


@keras.saving.register_keras_serializable(package="keras_mha")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Sparse categorical cross-entropy from logits, with label smoothing.

    Each label keeps `1 - label_smoothing` of its probability mass and the
    rest is spread evenly over the `v` classes, as Keras's
    `CategoricalCrossentropy(label_smoothing=...)` does with one-hot labels.
    Positions whose label is `ignore_class` count for nothing, and the mean
    is taken over the others, as `SparseCategoricalCrossentropy(
    ignore_class=...)` does.

    Args:
        label_smoothing: float in `[0, 1)`. `0` gives
            `SparseCategoricalCrossentropy(from_logits=True)`. Defaults to
            `0.1`.
        ignore_class: int or `None`. Label of the positions to skip (the
            padding). Defaults to `0`.
        **kwargs: other `keras.losses.Loss` arguments (`name`,
            `reduction`, `dtype`).

    Call arguments:
        y_true: `(..., )` integer labels.
        y_pred: `(..., v)` logits.

    Returns:
        The loss, reduced as `reduction` says (by default the mean over the
        positions that are not `ignore_class`).

    Example:

    >>> loss = keras_mha.seq2seq.SmoothedSparseCrossentropy(0.1)
    >>> labels = np.array([[3, 1, 0]])  # 0 is padding, ignored
    >>> logits = np.zeros((1, 3, 4), "float32")
    >>> round(float(loss(labels, logits)), 4)  # log(4): uniform logits
    1.3863
    """

    def __init__(self, label_smoothing=0.1, ignore_class=0, **kwargs):
        kwargs.setdefault("name", "smoothed_sparse_crossentropy")
        super().__init__(**kwargs)
        if ignore_class is not None and (
            isinstance(ignore_class, bool) or not isinstance(ignore_class, int)
        ):
            raise ValueError(
                "`ignore_class` expected an integer or None. "
                f"Received: ignore_class={ignore_class!r}"
            )
        self.label_smoothing = check_rate("label_smoothing", label_smoothing)
        self.ignore_class = ignore_class

    def call(self, y_true, y_pred):
        labels = ops.cast(y_true, "int32")
        # float32: the softmax stays exact under mixed precision.
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        valid = None
        if self.ignore_class is not None:
            valid = ops.not_equal(labels, self.ignore_class)
            labels = ops.where(valid, labels, 0)
        picked = ops.take_along_axis(
            log_probs, ops.expand_dims(labels, -1), axis=-1
        )
        nll = -ops.squeeze(picked, -1)
        uniform = -ops.mean(log_probs, axis=-1)
        loss = (1 - self.label_smoothing) * nll + self.label_smoothing * uniform
        if valid is None:
            return loss
        valid = ops.cast(valid, loss.dtype)
        if self.reduction not in ("sum_over_batch_size", "mean"):
            return loss * valid
        # total / valid at valid positions, as Keras weighs a masked loss:
        # the reduction (sum / total) is then the mean over valid positions.
        total = ops.cast(ops.size(valid), loss.dtype)
        return loss * valid * ops.divide_no_nan(total, ops.sum(valid))

    def get_config(self):
        return {
            **super().get_config(),
            "label_smoothing": self.label_smoothing,
            "ignore_class": self.ignore_class,
        }
