"""keras_hub backbones and causal LMs rebuilt from keras_mha's blocks.

`HubBackbone` is a functional model with the inputs and outputs of the
keras_hub backbone it was converted from: the backbone's own embedding
layers (cloned), keras_mha's `TransformerEncoderBlock`s or
`TransformerDecoderBlock`s configured by the family's table
(`keras_mha.hub.families`) and a final norm. `HubCausalLM` adds the
logits of the tied (or untied) token embedding and declares its cache,
as `keras_mha.TransformerCausalLM` does, so that
`keras_mha.generate` decodes it. Both are built from their
config alone; `from_keras_hub` copies the weights in.
"""

import math

import keras
from keras import ops

from keras_mha._decoder_stack import LayersBeforeInit
from keras_mha._decoder_stack import call_blocks_with_cache
from keras_mha._normalization import make_norm
from keras_mha._quantization import dtype_config
from keras_mha.hub.families import FAMILIES
from keras_mha.transformer_decoder_block import TransformerDecoderBlock
from keras_mha.transformer_encoder_block import TransformerEncoderBlock


@keras.saving.register_keras_serializable(package="keras_mha")
class HubBackbone(LayersBeforeInit, keras.Model):
    """A keras_hub text backbone's architecture on keras_mha's blocks.

    Made by `keras_mha.from_keras_hub(backbone)`, which also copies the
    weights; constructed directly it holds fresh weights.

    Args:
        family: str, a key of `keras_mha.hub.families.FAMILIES`.
        backbone_config: the keras_hub backbone's `get_config()`.
        embeddings: `{role: serialized layer}` of the backbone's embedding
            layers (see `keras_mha.hub.families`).
        **kwargs: other `keras.Model` arguments, such as `name`.

    Call arguments:
        inputs: the keras_hub backbone's input dict (`token_ids`,
            `padding_mask`, and for BERT `segment_ids`).

    Returns:
        What the keras_hub backbone returns: the `(b, t, d)` sequence
        output, or for BERT `{"sequence_output", "pooled_output"}`.
    """

    def __init__(self, family, backbone_config, embeddings, **kwargs):
        # Registers the embedding layers and activations the config names.
        import keras_hub  # noqa: F401

        self.family = FAMILIES[family]
        config = backbone_config
        # A `DTypePolicyMap` after `quantize`: each layer finds its policy.
        dtype = keras.dtype_policies.get(
            kwargs.pop("dtype", None) or config.get("dtype") or "float32"
        )
        self.embedding_layers = {
            role: keras.layers.deserialize(layer)
            for role, layer in embeddings.items()
        }
        if "token" in self.embedding_layers:
            self.token_embedding = self.embedding_layers["token"]
        else:
            self.token_embedding = self.embedding_layers[
                "token_and_position"
            ].token_embedding
        # Read by `embed`, before the functional `__init__`.
        self.embedding_scale = None
        if self.family.embedding_scale:
            self.embedding_scale = math.sqrt(config["hidden_dim"])
        self.embeddings_dropout = keras.layers.Dropout(
            config.get("dropout", 0.0), dtype=dtype, name="embeddings_dropout"
        )
        block = (
            TransformerDecoderBlock
            if self.family.causal
            else TransformerEncoderBlock
        )
        options = self.family.block_options(config)
        self.blocks = [
            block(
                dtype=dtype,
                name=f"{self.family.block_name}_{i}",
                **options,
                **self.family.layer_options(config, i),
            )
            for i in range(config["num_layers"])
        ]
        self.final_norm = None
        if self.family.final_norm:
            options = self.family.final_norm_options(config)
            self.final_norm = make_norm(
                options["kind"],
                options["epsilon"],
                dtype=dtype,
                name=self.family.final_norm,
            )
        self.pooler = None
        if self.family.pooler:
            self.pooler = keras.layers.Dense(
                config["hidden_dim"],
                activation="tanh",
                dtype=dtype,
                name=self.family.pooler,
            )
        inputs = {
            name: keras.Input((None,), dtype="int32", name=name)
            for name in self.family.inputs
        }
        x = self.embed(inputs["token_ids"], inputs.get("segment_ids"))
        x = self.call_blocks(x, ops.cast(inputs["padding_mask"], "bool"))
        outputs = x
        if self.pooler is not None:
            outputs = {
                "sequence_output": x,
                "pooled_output": self.pooler(x[:, 0, :]),
            }
        kwargs.setdefault("name", config.get("name", "backbone"))
        super().__init__(inputs, outputs, dtype=dtype, **kwargs)
        self.backbone_config = backbone_config
        self.hidden_dim = config["hidden_dim"]

    def embed(self, token_ids, segment_ids=None, start_index=0):
        """`(b, t)` ids placed at `start_index` -> `(b, t, d)` embeddings."""
        layers = self.embedding_layers
        if "token_and_position" in layers:
            x = layers["token_and_position"](token_ids, start_index=start_index)
        else:
            x = layers["token"](token_ids)
        if "position" in layers:
            x = x + layers["position"](x, start_index=start_index)
        if "segment" in layers:
            x = x + layers["segment"](segment_ids)
        if self.embedding_scale is not None:
            x = x * ops.cast(self.embedding_scale, x.dtype)
        if "norm" in layers:
            x = layers["norm"](x)
        return self.embeddings_dropout(x)

    def call_blocks(self, x, padding_mask):
        """The blocks and the final norm over `(b, t, d)` embeddings."""
        for block in self.blocks:
            if self.family.causal:
                x = block(x, decoder_padding_mask=padding_mask)
            else:
                x = block(x, padding_mask=padding_mask)
        return self.normalize(x)

    def normalize(self, x):
        """The final norm, if the family has one."""
        return x if self.final_norm is None else self.final_norm(x)

    def get_config(self):
        policy = keras.dtype_policies.serialize(self.dtype_policy)
        return {
            "family": self.family.name,
            "backbone_config": self.backbone_config,
            # As they are now: a quantized embedding reloads quantized.
            "embeddings": {
                role: keras.layers.serialize(layer)
                for role, layer in self.embedding_layers.items()
            },
            "name": self.name,
            "trainable": self.trainable,
            "dtype": dtype_config(self, policy),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_mha")
class HubCausalLM(LayersBeforeInit, keras.Model):
    """A keras_hub causal LM on keras_mha's blocks, decoding with a cache.

    `HubBackbone`'s sequence output through the token embedding reversed
    (tied or untied, as in the keras_hub model), with the family's final
    soft cap: `{"token_ids", "padding_mask"} -> (b, t, v)` logits. It
    declares its cache with `build_cache` and `call_with_cache`, so that
    `keras_mha.generate` continues prompts with it.

    Args:
        backbone: a `HubBackbone` of a decoder family.
        **kwargs: other `keras.Model` arguments, such as `name`.
    """

    def __init__(self, backbone, **kwargs):
        if not backbone.family.causal:
            raise ValueError(
                "`backbone` expected a HubBackbone of a decoder family. "
                f"Received: a backbone of family {backbone.family.name!r}"
            )
        self.backbone = backbone
        inputs = {
            name: keras.Input((None,), dtype="int32", name=name)
            for name in backbone.family.inputs
        }
        outputs = self.logits(backbone(inputs))
        kwargs.setdefault("name", "causal_lm")
        super().__init__(inputs, outputs, **kwargs)
        # `generate` checks that prompt ids lie below it.
        self.vocabulary_size = backbone.backbone_config["vocabulary_size"]

    def logits(self, x):
        """`(b, t, d)` sequence output -> `(b, t, v)` logits."""
        logits = self.backbone.token_embedding(x, reverse=True)
        cap = self.backbone.family.logit_soft_cap(self.backbone.backbone_config)
        if cap is not None:
            logits = ops.tanh(logits / cap) * cap
        return logits

    def get_initial_cache(self, batch_size, max_length):
        """Empty self-attention caches, one per block."""
        return tuple(
            block.get_initial_cache(batch_size, max_length)
            for block in self.backbone.blocks
        )

    def build_cache(self, token_ids, max_length):
        """Caches seeded with one pass over `(b, max_length)` `token_ids`.

        Positions past a prompt are overwritten by the step that writes
        them before any later query sees them (the mask is causal).
        """
        empty = self.get_initial_cache(ops.shape(token_ids)[0], max_length)
        return self.call_with_cache(token_ids, empty, 0)[1]

    def call_with_cache(self, token_ids, cache, index):
        """Logits of `token_ids` placed at `index`, and the updated cache.

        Args:
            token_ids: `(b, t)` ids, `t` usually 1.
            cache: from `build_cache` or an earlier `call_with_cache`.
            index: int or int scalar tensor, position of `token_ids[:, 0]`.

        Returns:
            `((b, t, v) logits, cache)`.
        """
        x = self.backbone.embed(token_ids, start_index=index)
        x, cache = call_blocks_with_cache(x, self.backbone.blocks, cache, index)
        return self.logits(self.backbone.normalize(x)), cache

    def get_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(
            config["backbone"]
        )
        return cls(**config)
