"""An encoder-decoder Transformer that declares its cache.

A functional Keras model built from keras_mha's layers that says
explicitly how it decodes step by step, as keras_hub's `Seq2SeqLM` does:
`build_cache` seeds the decoder blocks' key/value caches (and the
cross-attention caches of the encoded source) and `call_with_cache` runs
new tokens through the stack with them.

Notation: b - batch, s - source length, t - target length, d - width,
v - vocabulary.
"""

import keras
from keras import ops

from keras_mha._decoder_stack import DecoderStack
from keras_mha._decoder_stack import call_blocks_with_cache
from keras_mha.sinusoidal_position_encoding import SinusoidalPositionEncoding
from keras_mha.transformer_encoder_block import TransformerEncoderBlock


@keras.saving.register_keras_serializable(package="keras_mha")
class TransformerSeq2Seq(DecoderStack, keras.Model):
    """The encoder-decoder Transformer of "Attention Is All You Need".

    Source and target embeddings plus `SinusoidalPositionEncoding`,
    `num_layers` `TransformerEncoderBlock`s, as many
    `TransformerDecoderBlock`s with cross-attention, and a linear layer
    over the target vocabulary. Called on `[source_ids, target_ids]` (0 is
    padding) it returns teacher-forced `(b, t, v)` logits.

    Args:
        source_vocabulary_size: int. Source ids are below it.
        target_vocabulary_size: int. Target ids are below it.
        hidden_dim: int. Width of embeddings and blocks. Defaults to `64`.
        num_heads: int. Attention heads. Defaults to `4`.
        intermediate_dim: int. Feed-forward width. Defaults to `128`.
        num_layers: int. Encoder blocks, and as many decoder blocks.
            Defaults to `2`.
        dropout: float. Dropout rate. Defaults to `0.1`.
        scale_embeddings: bool. Multiplies the embeddings by
            `sqrt(hidden_dim)` before the sinusoid is added, as the paper
            does. Defaults to `True` (`False` in files saved before the
            option existed, which load as they were trained).
        **kwargs: other `keras.Model` arguments, such as `name`.

    Example:

    >>> model = TransformerSeq2Seq(100, 120, hidden_dim=16, num_heads=2)
    >>> model([np.ones((2, 5)), np.ones((2, 7))]).shape
    (2, 7, 120)
    """

    def __init__(
        self,
        source_vocabulary_size,
        target_vocabulary_size,
        hidden_dim=64,
        num_heads=4,
        intermediate_dim=128,
        num_layers=2,
        dropout=0.1,
        scale_embeddings=True,
        **kwargs,
    ):
        self._store(
            hidden_dim,
            num_heads,
            intermediate_dim,
            num_layers,
            dropout,
            scale_embeddings,
        )
        self.source_embedding = keras.layers.Embedding(
            source_vocabulary_size,
            hidden_dim,
            mask_zero=True,
            name="source_embedding",
        )
        self.source_scale = self._make_scale("source_scale")
        self.source_position = SinusoidalPositionEncoding(
            name="source_position"
        )
        self.encoder_blocks = [
            TransformerEncoderBlock(
                num_heads,
                intermediate_dim=intermediate_dim,
                dropout=dropout,
                name=f"encoder_block_{i}",
            )
            for i in range(num_layers)
        ]
        self._make_decoder(target_vocabulary_size, "target")

        source_ids = keras.Input((None,), dtype="int32", name="source_ids")
        target_ids = keras.Input((None,), dtype="int32", name="target_ids")
        encoded = self._encode(source_ids)
        y = self._embed(target_ids)
        for block in self.decoder_blocks:
            y = block(
                y, encoded, encoder_padding_mask=ops.not_equal(source_ids, 0)
            )
        logits = self.logits_layer(y)
        kwargs.setdefault("name", "translator")
        super().__init__([source_ids, target_ids], logits, **kwargs)
        self.source_vocabulary_size = source_vocabulary_size
        self.target_vocabulary_size = target_vocabulary_size

    def _encode(self, source_ids, training=None):
        x = self.source_scale(self.source_embedding(source_ids))
        x = self.source_position(x)
        for block in self.encoder_blocks:
            x = block(x, training=training)
        return x

    def encode(self, source_ids):
        """`(b, s)` source ids -> `(b, s, d)` encoded source (inference)."""
        return self._encode(source_ids, training=False)

    def call_decoder(self, target_ids, encoded, source_mask):
        """Logits of every target position, recomputed without a cache."""
        y = self._embed(target_ids)
        for block in self.decoder_blocks:
            y = block(
                y, encoded, encoder_padding_mask=source_mask, training=False
            )
        return self.logits_layer(y)

    def build_cache(self, source_ids, max_length):
        """Encodes the source and seeds the caches for `max_length` steps.

        Returns:
            `(self_caches, cross_caches, source_mask)`: per block a `(b, 2,
            n, max_length, h)` empty self-attention cache and the `(b, 2,
            n, s, h)` keys and values of the source, and the `(b, s)`
            source mask. Batch first, so a beam search can reorder them.
        """
        source_mask = ops.not_equal(source_ids, 0)
        encoded = self.encode(source_ids)
        batch_size = ops.shape(source_ids)[0]
        cross = tuple(
            block.compute_cross_attention_cache(encoded)
            for block in self.decoder_blocks
        )
        return (
            self.get_initial_cache(batch_size, max_length),
            cross,
            source_mask,
        )

    def call_with_cache(self, token_ids, cache, index):
        """Logits of `token_ids` placed at `index`, and the updated cache.

        Args:
            token_ids: `(b, t)` target ids, `t` usually 1.
            cache: from `build_cache` or an earlier `call_with_cache`.
            index: int or int scalar tensor, position of `token_ids[:, 0]`.

        Returns:
            `((b, t, v) logits, cache)`.
        """
        self_caches, cross_caches, source_mask = cache
        x, self_caches = call_blocks_with_cache(
            self._embed(token_ids, index),
            self.decoder_blocks,
            self_caches,
            index,
            cross_caches,
            source_mask,
        )
        return self.logits_layer(x), (self_caches, cross_caches, source_mask)

    def get_config(self):
        return {
            "source_vocabulary_size": self.source_vocabulary_size,
            "target_vocabulary_size": self.target_vocabulary_size,
            **self._config(),
            "name": self.name,
            "trainable": self.trainable,
        }
