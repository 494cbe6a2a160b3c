"""Low-rank adaptation (LoRA) of the attention projections.

keras_hub fine-tunes a backbone with `backbone.enable_lora(rank)`: every
weight freezes, and the query and value projections get a trainable
low-rank update `W + (alpha / rank) A B` (Keras's `enable_lora` of their
`Dense` / `EinsumDense`). Our layers do the same per projection, and on the
fused query/key/value kernel of self-attention update only the targeted
slices: the update's `B` is zero outside their columns and kept zero by a
constraint, so the other slices never change.
"""

import keras
import numpy as np

from keras_mha._validation import check_positive_int

LORA_TARGETS = ("query", "key", "value", "output")


class _ColumnMask(keras.constraints.Constraint):
    """Zeroes the columns of a LoRA `B` `(rank, columns)` outside a mask."""

    def __init__(self, mask):
        self.mask = np.asarray(mask, "float32")

    def __call__(self, w):
        return keras.ops.multiply(w, keras.ops.cast(self.mask, w.dtype))


def check_targets(targets):
    """`targets` as a tuple of known projection names."""
    if isinstance(targets, str):
        targets = (targets,)
    targets = tuple(targets)
    unknown = [t for t in targets if t not in LORA_TARGETS]
    if unknown or not targets:
        raise ValueError(
            f"`targets` expected a non-empty subset of {LORA_TARGETS}. "
            f"Received: targets={targets}"
        )
    return targets


def enable_lora(layer, projections, rank, lora_alpha):
    """Freezes `layer` and gives its targeted projections a LoRA update.

    Args:
        layer: the attention layer or block (built).
        projections: `{sub_layer: column mask or None}`: each projection
            to adapt, with a boolean mask of its kernel's last axis for a
            fused kernel of which only some slices are targeted.
        rank: int, the rank of the update.
        lora_alpha: float or `None` (Keras's default, `rank`).
    """
    check_positive_int("rank", rank)
    # Everything frozen, then only the LoRA kernels made trainable.
    layer.trainable = True
    for sublayer in layer._flatten_layers(include_self=False):
        sublayer.trainable = False
    for dense, columns in projections.items():
        dense.trainable = True
        dense.enable_lora(rank, lora_alpha=lora_alpha)
        if dense.bias is not None:
            dense.bias.trainable = False
        if columns is not None:
            dense.lora_kernel_b.constraint = _ColumnMask(columns[None])
