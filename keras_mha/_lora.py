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

from keras_mha._validation import check_positive_float
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
    try:
        targets = tuple(targets)
    except TypeError:
        raise TypeError(
            f"`targets` expected a non-empty subset of {LORA_TARGETS}. "
            f"Received: targets={targets!r}"
        ) from None
    unknown = [t for t in targets if t not in LORA_TARGETS]
    if unknown or not targets:
        raise ValueError(
            f"`targets` expected a non-empty subset of {LORA_TARGETS}. "
            f"Received: targets={targets}"
        )
    return targets


def enable_lora(layer, projections, rank, lora_alpha):
    """Freezes `layer` and gives its targeted projections a LoRA update.

    Every argument and projection is checked before anything changes, so
    a refused call leaves the trainable flags, weights and targets as they
    were. Projections that already have an update from an earlier call
    keep training: a later call adds updates to other projections, and
    refuses one that already has an update.

    Args:
        layer: the attention layer or block (built).
        projections: `{sub_layer: column mask or None}`: each projection
            to adapt, with a boolean mask of its kernel's last axis for a
            fused kernel of which only some slices are targeted.
        rank: int, the rank of the update.
        lora_alpha: float or `None` (Keras's default, `rank`).
    """
    check_positive_int("rank", rank)
    if lora_alpha is not None:
        check_positive_float("lora_alpha", lora_alpha)
    for dense in projections:
        _check_adaptable(layer, dense)
    for dense, columns in projections.items():
        dense.enable_lora(rank, lora_alpha=lora_alpha)
        if columns is not None:
            dense.lora_kernel_b.constraint = _ColumnMask(columns[None])
    _freeze_all_but_lora(layer)


def _check_adaptable(layer, dense):
    """Raises, naming the projection, where Keras would refuse LoRA."""
    where = f"projection `{dense.name}` of layer `{layer.name}`"
    if getattr(dense, "lora_enabled", False):
        raise ValueError(
            f"LoRA is already enabled on {where}: each projection takes one "
            "update (on the fused query/key/value kernel, one for all its "
            "targets). Enable LoRA once with every target wanted, or add "
            "only targets that have no update yet. Received: "
            f"{dense.name}.lora_enabled=True"
        )
    if dense.kernel_constraint is not None:
        raise ValueError(
            f"LoRA cannot adapt {where}: Keras refuses LoRA on a kernel "
            "with a constraint. Build the layer without `kernel_constraint` "
            "to fine-tune it with LoRA. Received: kernel_constraint="
            f"{keras.constraints.serialize(dense.kernel_constraint)}"
        )
    if getattr(dense, "quantization_mode", None) == "gptq":
        raise ValueError(
            f"LoRA cannot adapt {where}: Keras does not support LoRA on "
            "GPTQ-quantized kernels. Received: quantization_mode='gptq'"
        )


def _freeze_all_but_lora(layer):
    """Only the LoRA kernels of `layer`'s projections stay trainable."""
    layer.trainable = True
    for sublayer in layer._flatten_layers(include_self=False):
        if getattr(sublayer, "lora_enabled", False):
            lora = (sublayer.lora_kernel_a, sublayer.lora_kernel_b)
            sublayer.trainable = True
            for weight in sublayer.weights:
                weight.trainable = any(weight is w for w in lora)
        elif not any(
            getattr(inner, "lora_enabled", False)
            for inner in sublayer._flatten_layers()
        ):
            sublayer.trainable = False
