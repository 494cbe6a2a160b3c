"""Encoder-decoder and decoder-only Transformers that declare their cache.

Both are functional Keras models built from keras_mha's layers, and both
say explicitly how they decode step by step, as keras_hub's `Seq2SeqLM`
and `CausalLM` do: `build_cache` seeds the blocks' key/value caches and
`call_with_cache` runs new tokens through the stack with them. Both run
their blocks through one loop, `call_blocks_with_cache`.

Notation: b - batch, s - source length, t - target length, d - width,
v - vocabulary.
"""

import math

import keras
from keras import ops

from keras_mha._validation import check_bool
from keras_mha.sinusoidal_position_encoding import SinusoidalPositionEncoding
from keras_mha.transformer_decoder_block import TransformerDecoderBlock
from keras_mha.transformer_encoder_block import TransformerEncoderBlock


def call_blocks_with_cache(
    x, blocks, caches, index, cross_caches=None, encoder_padding_mask=None
):
    """Runs `x` through decoder blocks with their key/value caches.

    The one cached loop of the package: `TransformerSeq2Seq`,
    `TransformerCausalLM` and the generation benchmark run their blocks
    through it. Any block with keras_mha's (or keras_hub's) cache call
    arguments works.

    Args:
        x: `(b, t, d)` embedded tokens placed at `index`.
        blocks: list of decoder blocks.
        caches: one self-attention cache per block.
        index: int or int scalar tensor, position of `x[:, 0]`.
        cross_caches: `None` (decoder-only) or one cross-attention cache per
            block.
        encoder_padding_mask: `(b, s)` bool mask of the source, with
            `cross_caches`.

    Returns:
        `(x, caches)`: the blocks' output and their updated caches.
    """
    updated = []
    for i, (block, cache) in enumerate(zip(blocks, caches)):
        kwargs = {}
        if cross_caches is not None:
            kwargs = dict(
                encoder_padding_mask=encoder_padding_mask,
                cross_attention_cache=cross_caches[i],
            )
        outputs = block(
            x,
            self_attention_cache=cache,
            self_attention_cache_update_index=index,
            training=False,
            **kwargs,
        )
        x, cache = outputs[0], outputs[1]
        updated.append(cache)
    return x, tuple(updated)


class _Scale(keras.layers.Layer):
    """Multiplies by a constant and passes the Keras mask on (an op on a
    symbolic tensor drops it; `keras.layers.Rescaling` needs TensorFlow)."""

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale
        self.supports_masking = True

    def call(self, inputs):
        return inputs * ops.cast(self.scale, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


class _DecoderStack:
    """Embedding, positions, decoder blocks and the logits layer."""

    def __setattr__(self, name, value):
        # As keras_hub's Backbone: layers are set before the functional
        # `__init__`, which PyTorch's Module refuses; the functional graph
        # tracks them anyway.
        if keras.backend.backend() == "torch" and not hasattr(
            self, "_initialized"
        ):
            return object.__setattr__(self, name, value)
        return super().__setattr__(name, value)

    def _make_decoder(self, vocabulary_size, name):
        self.target_embedding = keras.layers.Embedding(
            vocabulary_size,
            self.hidden_dim,
            mask_zero=True,
            name=f"{name}_embedding",
        )
        self.target_scale = self._make_scale(f"{name}_scale")
        self.target_position = SinusoidalPositionEncoding(
            name=f"{name}_position"
        )
        self.decoder_blocks = [
            TransformerDecoderBlock(
                self.num_heads,
                intermediate_dim=self.intermediate_dim,
                dropout=self.dropout,
                name=f"decoder_block_{i}",
            )
            for i in range(self.num_layers)
        ]
        # float32 logits: the loss's softmax stays exact in mixed precision.
        self.logits_layer = keras.layers.Dense(
            vocabulary_size, dtype="float32", name="logits"
        )

    def _make_scale(self, name):
        # As in "Attention Is All You Need", embeddings are multiplied by
        # sqrt(hidden_dim) before the sinusoid is added: Keras initializes
        # them near +-0.05, and unscaled they are drowned by the sinusoid's
        # +-1 (on the catalog corpus the unscaled model learns far less).
        # A layer, not an op, so the padding mask passes through; 1.0 (an
        # exact identity) keeps the unscaled models of older files.
        scale = math.sqrt(self.hidden_dim) if self.scale_embeddings else 1.0
        return _Scale(scale, name=name)

    def _embed(self, token_ids, start_index=0):
        x = self.target_scale(self.target_embedding(token_ids))
        return self.target_position(x, start_index=start_index)

    def _config(self):
        return dict(
            hidden_dim=self.hidden_dim,
            num_heads=self.num_heads,
            intermediate_dim=self.intermediate_dim,
            num_layers=self.num_layers,
            dropout=self.dropout,
            scale_embeddings=self.scale_embeddings,
        )

    @classmethod
    def from_config(cls, config):
        # Files saved before `scale_embeddings` existed hold unscaled
        # models: they must load as they were trained.
        return cls(**{"scale_embeddings": False, **config})

    def _store(
        self,
        hidden_dim,
        num_heads,
        intermediate_dim,
        num_layers,
        dropout,
        scale_embeddings,
    ):
        for name, value, least in (
            ("hidden_dim", hidden_dim, 1),
            ("num_heads", num_heads, 1),
            ("intermediate_dim", intermediate_dim, 1),
            # No blocks: embeddings and logits only (for profiling).
            ("num_layers", num_layers, 0),
        ):
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or value < least
            ):
                raise ValueError(
                    f"`{name}` expected an integer >= {least}. "
                    f"Received: {name}={value!r}"
                )
        self.hidden_dim, self.num_heads = hidden_dim, num_heads
        self.intermediate_dim, self.num_layers = intermediate_dim, num_layers
        self.dropout = dropout
        self.scale_embeddings = check_bool("scale_embeddings", scale_embeddings)

    def get_initial_cache(self, batch_size, max_length):
        """Empty self-attention caches, one per block."""
        return tuple(
            block.get_initial_cache(batch_size, max_length)
            for block in self.decoder_blocks
        )


@keras.saving.register_keras_serializable(package="keras_mha")
class TransformerSeq2Seq(_DecoderStack, keras.Model):
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


@keras.saving.register_keras_serializable(package="keras_mha")
class TransformerCausalLM(_DecoderStack, keras.Model):
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
