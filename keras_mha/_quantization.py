"""The dtype a layer saves in its config, quantized sub-layers included.

`model.quantize(mode)` quantizes the `Dense` and `EinsumDense` sub-layers
of our layers in place: they get a quantized dtype policy and new
variables (an int8 kernel and its scale, ...). Our layers build those
sub-layers from their own `dtype`, so a reloaded layer only builds them
quantized, with the variables the `.keras` file holds, if its config says
which sub-layers were quantized. As keras_hub's backbones do, the layer
then saves a `keras.dtype_policies.DTypePolicyMap`: its own policy as the
default, and the policy of each quantized sub-layer under its path.
"""

import re

import keras
from keras.dtype_policies import DTypePolicyMap


def _own_policy(layer):
    """The layer's policy, looked up in its map when it has one."""
    policy = layer.dtype_policy
    if isinstance(policy, DTypePolicyMap):
        policy = policy[layer.path] if layer.path else policy.default_policy
    return policy


def dtype_config(layer, config_dtype):
    """The `dtype` entry of `layer.get_config()`.

    Args:
        layer: a built or unbuilt layer of the package.
        config_dtype: the `dtype` entry of `keras.layers.Layer.get_config`.

    Returns:
        `config_dtype` when no sub-layer is quantized; otherwise a
        serialized `DTypePolicyMap` whose default is the layer's own policy
        and whose keys match the quantized sub-layers' paths, below the
        layer's name, wherever the layer sits in a model.
    """
    own = _own_policy(layer)
    policy_map = DTypePolicyMap(default_policy=own)
    path = layer.path or ""
    prefix = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
    for sublayer in layer._flatten_layers(include_self=False):
        if sublayer.quantization_mode is None:
            continue
        relative = sublayer.path[len(prefix) :]
        policy_map[f"(.*/)?{re.escape(relative)}"] = _own_policy(sublayer)
    if not len(policy_map):
        return config_dtype
    return keras.dtype_policies.serialize(policy_map)


def skip_quantize_when_weightless(layer):
    """Lets `Model.quantize` pass over `layer` silently while it has no
    weights; returns `layer`.

    `Model.quantize` warns "does not have a `quantize` method" for every
    leaf layer it cannot quantize, even one with nothing to quantize, such
    as keras_hub's `RotaryEmbedding` inside an attention layer. A layer
    that has weights keeps its own `quantize` (and Keras's warning).
    """
    quantize = layer.quantize

    def quantize_if_weighted(*args, **kwargs):
        if layer.weights:
            return quantize(*args, **kwargs)
        return None

    layer.quantize = quantize_if_weighted
    return layer
