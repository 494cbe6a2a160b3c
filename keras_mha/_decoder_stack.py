"""What the package's models share: their decoder stack and its cached loop.

`TransformerSeq2Seq` (keras_mha.seq2seq) and `TransformerCausalLM`
(keras_mha.language_model) both embed tokens, add sinusoidal positions, run
decoder blocks and project onto the vocabulary; both declare how they
decode step by step (`build_cache`, `call_with_cache`) and run their blocks
through one loop, `call_blocks_with_cache`.

Notation: b - batch, s - source length, t - target length, d - width,
v - vocabulary.
"""

import math

import keras
from keras import ops

from keras_mha._validation import check_bool
from keras_mha.sinusoidal_position_encoding import SinusoidalPositionEncoding
from keras_mha.transformer_decoder_block import TransformerDecoderBlock


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

    Example:

    >>> blocks = [keras_mha.TransformerDecoderBlock(2, intermediate_dim=8)]
    >>> x = np.random.default_rng(0).normal(size=(1, 3, 8)).astype("float32")
    >>> full = blocks[0](x)
    >>> caches = [blocks[0].get_initial_cache(1, 3)]
    >>> y, caches = keras_mha.call_blocks_with_cache(x, blocks, caches, 0)
    >>> to_numpy = keras.ops.convert_to_numpy
    >>> bool(np.allclose(to_numpy(y), to_numpy(full), atol=1e-5))
    True
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


class LayersBeforeInit:
    """As keras_hub's `Backbone`: layers are set before the functional
    `__init__`, which PyTorch's Module refuses; the graph tracks them."""

    def __setattr__(self, name, value):
        if keras.backend.backend() == "torch" and not hasattr(
            self, "_initialized"
        ):
            return object.__setattr__(self, name, value)
        return super().__setattr__(name, value)


class DecoderStack(LayersBeforeInit):
    """Embedding, positions, decoder blocks and the logits layer."""

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
