"""Multi-head attention and Transformer layers for Keras 3."""

from keras_mha.multi_head_attention import MultiHeadAttention
from keras_mha.multi_head_self_attention import MultiHeadSelfAttention
from keras_mha.sinusoidal_position_encoding import SinusoidalPositionEncoding
from keras_mha.transformer_decoder_block import TransformerDecoderBlock
from keras_mha.transformer_encoder_block import TransformerEncoderBlock

__all__ = [
    "MultiHeadAttention",
    "MultiHeadSelfAttention",
    "SinusoidalPositionEncoding",
    "TransformerDecoderBlock",
    "TransformerEncoderBlock",
]
__version__ = "0.1.0"
from keras_mha import seq2seq  # noqa: F401
