"""A decoder-only Transformer language model that declares its cache.

A functional Keras model built from keras_mha's layers that says
explicitly how it decodes step by step, as keras_hub's `CausalLM` does:
`build_cache` seeds the blocks' key/value caches and `call_with_cache`
runs new tokens through the stack with them (`keras_mha.generate` uses
both).
"""

import keras
from keras import ops

from keras_mha._decoder_stack import DecoderStack
from keras_mha._decoder_stack import call_blocks_with_cache


@keras.saving.register_keras_serializable(package="keras_mha")
class TransformerCausalLM(DecoderStack, keras.Model):
    """A decoder-only Transformer language model.

    Token embeddings plus `SinusoidalPositionEncoding`, `num_layers`
    `TransformerDecoderBlock`s without cross-attention and a linear layer
    over the vocabulary: `(b, t)` token ids -> `(b, t, v)` next-token
    logits.

    Args:
        vocabulary_size: int. Token ids are below it.
        hidden_dim, num_heads, intermediate_dim, num_layers, dropout,
            scale_embeddings: as in `TransformerSeq2Seq`.
        **kwargs: other `keras.Model` arguments, such as `name`.

    Example:

    >>> model = TransformerCausalLM(50, hidden_dim=16, num_heads=2)
    >>> model(np.ones((2, 5))).shape
    (2, 5, 50)
    """

    def __init__(
        self,
        vocabulary_size,
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
        self._make_decoder(vocabulary_size, "token")
        token_ids = keras.Input((None,), dtype="int32", name="token_ids")
        x = self._embed(token_ids)
        for block in self.decoder_blocks:
            x = block(x)
        kwargs.setdefault("name", "language_model")
        super().__init__(token_ids, self.logits_layer(x), **kwargs)
        self.vocabulary_size = vocabulary_size

    def build_cache(self, token_ids, max_length):
        """Caches seeded with one pass over `(b, max_length)` `token_ids`.

        Positions past a prompt are overwritten by the step that writes
        them before any later query sees them (the mask is causal).
        """
        batch_size = ops.shape(token_ids)[0]
        empty = self.get_initial_cache(batch_size, max_length)
        return self.call_with_cache(token_ids, empty, 0)[1]

    def call_with_cache(self, token_ids, cache, index):
        """Logits of `token_ids` placed at `index`, and the updated cache."""
        x, cache = call_blocks_with_cache(
            self._embed(token_ids, index), self.decoder_blocks, cache, index
        )
        return self.logits_layer(x), cache

    def get_config(self):
        return {
            "vocabulary_size": self.vocabulary_size,
            **self._config(),
            "name": self.name,
            "trainable": self.trainable,
        }
