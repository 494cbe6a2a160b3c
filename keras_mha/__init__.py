"""Multi-head attention and Transformer layers for Keras 3."""

import importlib

from keras_mha import saving  # noqa: F401  (keras_mha.saving.save_model)
from keras_mha._decoder_stack import call_blocks_with_cache
from keras_mha.distribution import get_layout_map
from keras_mha.generation import generate
from keras_mha.hub import from_keras_hub
from keras_mha.language_model import TransformerCausalLM
from keras_mha.multi_head_attention import MultiHeadAttention
from keras_mha.multi_head_self_attention import MultiHeadSelfAttention
from keras_mha.sinusoidal_position_encoding import SinusoidalPositionEncoding
from keras_mha.transformer_decoder_block import TransformerDecoderBlock
from keras_mha.transformer_encoder_block import TransformerEncoderBlock

__all__ = [
    "call_blocks_with_cache",
    "from_keras_hub",
    "generate",
    "get_layout_map",
    "MultiHeadAttention",
    "MultiHeadSelfAttention",
    "SinusoidalPositionEncoding",
    "TransformerCausalLM",
    "TransformerDecoderBlock",
    "TransformerEncoderBlock",
]
__version__ = "0.1.0"

# Imported on first use: they need extras (`keras-mha[text]`,
# `keras-mha[visualize]`) that the layers do not.
_LAZY_SUBMODULES = ("seq2seq", "visualize")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"keras_mha.{name}")
    raise AttributeError(f"module 'keras_mha' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_LAZY_SUBMODULES})
