"""The conventions the attention layers and the blocks share.

`BaseAttention` and `TransformerBlock` both derive from `PackageLayer`:
sizes after `num_heads` by keyword, hints for keras_hub's and Keras's
argument names, the `(outputs, [scores], [caches])` output spec traced
from `call`, the "needs a built layer" check, cloned initializers for
sub-layers, and the dtype entry of `get_config` (quantized sub-layers).
"""

import keras

from keras_mha._porting import CALL_HINTS
from keras_mha._porting import CONSTRUCTOR_HINTS
from keras_mha._porting import check_foreign_arguments
from keras_mha._porting import check_positional
from keras_mha._quantization import dtype_config
from keras_mha._utils import clone_initializer
from keras_mha._utils import output_spec_of_call


class PackageLayer(keras.layers.Layer):
    """Base of the package's attention layers and blocks.

    Subclasses set `_keyword_only`, the names the positional-argument
    error lists, and store `kernel_initializer` and `bias_initializer`.
    """

    _keyword_only = ("...",)

    def __new__(cls, *args, **kwargs):
        check_positional(cls, args, cls._keyword_only)
        return super().__new__(cls, *args, **kwargs)

    def __init__(self, **kwargs):
        check_foreign_arguments(self, kwargs, CONSTRUCTOR_HINTS)
        super().__init__(**kwargs)

    def __call__(self, *args, **kwargs):
        check_foreign_arguments(self, kwargs, CALL_HINTS)
        return super().__call__(*args, **kwargs)

    def _check_built(self, method):
        if not self.built:
            raise ValueError(
                f"`{method}` needs a built layer: call the layer once "
                f"first. Received: layer {self.name} with built=False"
            )

    def _initializers(self):
        """Fresh copies, so sub-layers don't share an initializer's state."""
        return {
            "kernel_initializer": clone_initializer(self.kernel_initializer),
            "bias_initializer": clone_initializer(self.bias_initializer),
        }

    def compute_output_spec(self, *args, **kwargs):
        # `(outputs, [scores], [caches])`, as `call` returns it.
        return output_spec_of_call(self, *args, **kwargs)

    def get_config(self):
        config = super().get_config()
        # The policies of quantized sub-layers, so that they reload.
        config["dtype"] = dtype_config(self, config["dtype"])
        return config
