"""The keras_hub families `from_keras_hub` converts, as data.

One `Family` per keras_hub backbone class: which of the backbone's
embedding layers the converted model reuses (cloned, by role), the block
options its configuration gives, and which keras_hub sub-layer each
sub-layer of our blocks takes its weights from. Everything else is the
same for every family and lives in `keras_mha.hub.models` (the model) and
`keras_mha.hub.weights` (the weight copy).

Embedding roles: `token` (a `ReversibleEmbedding`, also the logits of a
causal LM), `token_and_position` (a `TokenAndPositionEmbedding`),
`position` (a `PositionEmbedding`, added), `segment` (added), `norm` (a
layer norm after the sum).
"""

import dataclasses
import math
from collections.abc import Callable

import keras


@dataclasses.dataclass(frozen=True)
class Family:
    """How one keras_hub backbone maps onto keras_mha's blocks.

    Attributes:
        name: the family's key in `FAMILIES`.
        backbone: class name of the keras_hub backbone.
        causal_lms: class names of its keras_hub causal LMs.
        causal: decoder blocks (`TransformerDecoderBlock`, causal) or
            encoder blocks.
        embeddings: `{role: backbone attribute}` of the embedding layers
            the converted model clones.
        block_options: backbone config -> keyword arguments of every block.
        block_weights: `{our sub-layer path in a block: source}`, a source
            being a keras_hub sub-layer path in the same block, or a
            transform of `keras_mha.hub.weights.TRANSFORMS` and its
            sub-layer paths.
        final_norm: name of the norm after the blocks, or `None`.
        final_norm_options: backbone config -> `{"kind": "layer_norm" or
            "rms_norm", "epsilon": float}`.
        weights: `{our top-level sub-layer: source}` where it is not the
            sub-layer of the same name.
        inputs: names of the backbone's inputs.
        pooler: attribute of a pooling `Dense` over the first token, which
            makes the outputs `{"sequence_output", "pooled_output"}`.
        embedding_scale: multiply the embeddings by `sqrt(hidden_dim)`.
        logit_soft_cap: backbone config -> the final logits' soft cap or
            `None`.
        refuse: backbone -> the name of a feature the conversion does not
            cover, or `None`.
        layer_options: `(backbone config, block index)` -> keyword
            arguments of that block only (Gemma 2's alternating windows).
        block_name: the blocks' name before their index, as keras_hub's.
    """

    name: str
    backbone: str
    causal_lms: tuple
    causal: bool
    embeddings: dict
    block_options: Callable
    block_weights: dict
    final_norm: str | None = None
    final_norm_options: Callable = lambda config: {}
    weights: dict = dataclasses.field(default_factory=dict)
    inputs: tuple = ("token_ids", "padding_mask")
    pooler: str | None = None
    embedding_scale: bool = False
    logit_soft_cap: Callable = lambda config: None
    refuse: Callable = lambda backbone: None
    layer_options: Callable = lambda config, index: {}
    block_name: str = "transformer_layer"


def _sizes(config, num_heads="num_heads"):
    return dict(
        num_heads=config[num_heads],
        intermediate_dim=config["intermediate_dim"],
        dropout=config.get("dropout", 0.0),
    )


def _keras_hub_block(attention):
    """Weights of keras_hub's `TransformerEncoder` / `TransformerDecoder`,
    whose self-attention sub-layer is called `attention`."""
    return {
        "self_attention/qkv": (
            "fused_qkv",
            f"{attention}/query",
            f"{attention}/key",
            f"{attention}/value",
        ),
        "self_attention/attention_output": f"{attention}/attention_output",
        "self_attention_layer_norm": "self_attention_layer_norm",
        "ffn_intermediate": "feedforward_intermediate_dense",
        "ffn_output": "feedforward_output_dense",
        "ffn_layer_norm": "feedforward_layer_norm",
    }


def _activation(name):
    # keras_hub registers its activations (`keras_hub>gelu_approximate`).
    return keras.saving.get_registered_object(name) or name


def _post_ln_encoder(activation, epsilon):
    def options(config):
        return dict(
            **_sizes(config),
            activation=_activation(activation),
            layer_norm_epsilon=epsilon,
        )

    return options


def _pre_ln_decoder(activation):
    def options(config):
        return dict(
            **_sizes(config),
            activation=_activation(activation),
            norm_first=True,
            layer_norm_epsilon=1e-5,
        )

    return options


_LAYER_NORM_1E5 = lambda config: {"kind": "layer_norm", "epsilon": 1e-5}
_ENCODER_WEIGHTS = _keras_hub_block("self_attention_layer")
_DECODER_WEIGHTS = _keras_hub_block("self_attention")
# keras_hub's BERT and GPT-2 use the tanh approximation of GELU.
_GELU_TANH = "keras_hub>gelu_approximate"


def _rotary(config, scaling="rope_scaling_factor"):
    import keras_hub

    return keras_hub.layers.RotaryEmbedding(
        max_wavelength=config.get("rope_max_wavelength", 10000),
        scaling_factor=config.get(scaling, 1.0),
    )


def _gated_decoder(use_bias=False, scaling="rope_scaling_factor", **more):
    """Options of the pre-norm, RMS-norm, gated (SwiGLU) decoders."""

    def options(config):
        heads = config["num_query_heads"]
        return dict(
            num_heads=heads,
            intermediate_dim=config["intermediate_dim"],
            dropout=config.get("dropout", 0.0),
            num_key_value_heads=config["num_key_value_heads"],
            key_dim=config.get("head_dim") or config["hidden_dim"] // heads,
            use_bias=use_bias,
            use_output_bias=False,
            use_feedforward_bias=False,
            normalization="rms_norm",
            norm_first=True,
            layer_norm_epsilon=config["layer_norm_epsilon"],
            use_gated_feedforward=True,
            activation="silu",
            rotary_embedding=_rotary(config, scaling),
            **{name: get(config) for name, get in more.items()},
        )

    return options


def _gated_block(attention_norm, ffn_norm, **more):
    """Weights of Llama's, Mistral's and Qwen's decoders."""
    return {
        "self_attention/qkv": (
            "fused_qkv",
            "self_attention/query",
            "self_attention/key",
            "self_attention/value",
        ),
        "self_attention/attention_output": "self_attention/attention_output",
        "self_attention_layer_norm": attention_norm,
        "ffn_gate": "feedforward_gate_dense",
        "ffn_intermediate": "feedforward_intermediate_dense",
        "ffn_output": "feedforward_output_dense",
        "ffn_layer_norm": ffn_norm,
        **more,
    }


def _rms_norm(config):
    return {"kind": "rms_norm", "epsilon": config["layer_norm_epsilon"]}


def _layer_norm(config):
    return {"kind": "layer_norm", "epsilon": config["layer_norm_epsilon"]}


def _refuse_llama3_rope(backbone):
    if backbone.get_config().get("rope_frequency_adjustment_factor"):
        return "Llama 3.1's rotary frequency adjustment"
    return None


def _refuse_qwen_window(backbone):
    config = backbone.get_config()
    if config.get("use_sliding_window_attention"):
        return "Qwen's sliding window (its layers differ in window)"
    return None


_LLAMA_WEIGHTS = _gated_block(
    "self_attention_layernorm", "feedforward_layernorm"
)
_LLAMA = dict(
    causal=True,
    embeddings={"token": "token_embedding"},
    block_weights=_LLAMA_WEIGHTS,
    final_norm="sequence_output_layernorm",
    final_norm_options=_rms_norm,
    refuse=_refuse_llama3_rope,
)


def _refuse_phi3_rope(backbone):
    if backbone.get_config().get("rope_scaling_type") is not None:
        return 'Phi-3\'s "su" (long) rotary scaling'
    return None


def _gemma_options(config, gemma3=False):
    """Gemma 1, 2 and 3: GeGLU (tanh GELU), no bias, rotary positions;
    Gemma 3 its own rotary per block (`_gemma3_layer_options`)."""
    import keras_hub

    heads, head_dim = config["num_query_heads"], config["head_dim"]
    if gemma3:
        more = dict(use_query_key_norm=config["use_query_key_norm"])
    else:
        # Gemma interleaves the rotated halves of queries and keys
        # alike, which leaves their dot products those of the plain
        # rotation.
        more = dict(
            rotary_embedding=keras_hub.layers.RotaryEmbedding(
                max_wavelength=10000.0
            )
        )
    return dict(
        num_heads=heads,
        # Gemma 1 and 2's `intermediate_dim` counts both gated halves.
        intermediate_dim=config["intermediate_dim"] // (1 if gemma3 else 2),
        dropout=config.get("dropout", 0.0),
        num_key_value_heads=config["num_key_value_heads"],
        key_dim=head_dim,
        use_bias=False,
        use_output_bias=False,
        use_feedforward_bias=False,
        normalization="rms_norm",
        norm_first=True,
        layer_norm_epsilon=config["layer_norm_epsilon"],
        use_gated_feedforward=True,
        activation="keras_mha>gelu_approximate",
        # keras_hub's decoder blocks scale queries by 1 / sqrt(head_dim)
        # whatever `query_head_dim_normalize` says (`_refuse_gemma`).
        attention_scale=1.0 / math.sqrt(head_dim),
        attention_logit_soft_cap=config["attention_logit_soft_cap"],
        use_post_attention_norm=config["use_post_attention_norm"],
        use_post_feedforward_norm=config["use_post_ffw_norm"],
        **more,
    )


def _gemma3_layer_options(config, index):
    """Five local blocks (a window, wavelength 1e4) then a global one
    (no window, wavelength 1e6), each with its own rotary scaling."""
    import keras_hub

    local = config["use_sliding_window_attention"] and index % 6 < 5
    scope = "local" if local else "global"
    options = dict(
        rotary_embedding=keras_hub.layers.RotaryEmbedding(
            max_wavelength=10_000.0 if local else 1_000_000.0,
            scaling_factor=config[f"{scope}_rope_scaling_factor"],
        )
    )
    if local:
        options["sliding_window"] = config["sliding_window_size"]
    return options


def _refuse_gemma3(backbone):
    config = backbone.get_config()
    for feature, name in (
        ("vision_encoder", "Gemma 3's vision encoder"),
        ("use_bidirectional_attention", "bidirectional attention"),
        ("is_embedding_model", "Gemma 3's embedding pooling"),
    ):
        if config.get(feature):
            return name
    return _refuse_gemma(backbone)


def _gemma_layer_options(config, index):
    # Gemma 2's even layers look at a window, its odd layers at all.
    if config["use_sliding_window_attention"] and index % 2 == 0:
        return {"sliding_window": config["sliding_window_size"]}
    return {}


def _refuse_gemma(backbone):
    if not all(
        layer.attention.query_head_dim_normalize
        for layer in backbone.transformer_layers
    ):
        return "Gemma's query scale 1 / sqrt(hidden_dim / num_query_heads)"
    return None


# Gemma's RMS norms multiply by `1 + scale`.
_GEMMA_WEIGHTS = {
    "self_attention/qkv": (
        "fused_qkv_ndh",
        "attention/query",
        "attention/key",
        "attention/value",
    ),
    "self_attention/attention_output": "attention/attention_output",
    "self_attention_layer_norm": ("plus_one", "pre_attention_norm"),
    "self_attention_post_norm": ("plus_one", "post_attention_norm"),
    "ffn_gate": "ffw_gating",
    "ffn_intermediate": "ffw_gating_2",
    "ffn_output": "ffw_linear",
    "ffn_layer_norm": ("plus_one", "pre_ffw_norm"),
    "ffn_post_norm": ("plus_one", "post_ffw_norm"),
}
_GEMMA3_WEIGHTS = {
    **_GEMMA_WEIGHTS,
    "self_attention/query_norm": ("plus_one", "attention/query_norm"),
    "self_attention/key_norm": ("plus_one", "attention/key_norm"),
}


def _gpt_neo_x_options(config):
    """GPT-NeoX: parallel residual, a share of each head rotated."""
    import keras_hub

    return dict(
        **_sizes(config),
        activation=_activation(_GELU_TANH),
        norm_first=True,
        parallel_residual=True,
        layer_norm_epsilon=config["layer_norm_epsilon"],
        rotary_embedding=keras_hub.layers.RotaryEmbedding(
            max_wavelength=config["rotary_max_wavelength"]
        ),
        rotary_fraction=config["rotary_percentage"],
    )


# Its fused kernel is ours with one query per key/value head:
# `(d, n, 3h)`, head i's query, key and value side by side.
_GPT_NEO_X_WEIGHTS = {
    "self_attention/qkv": "self_attention/query_key_value",
    "self_attention/attention_output": (
        "heads_output",
        "self_attention/attention_output",
    ),
    "self_attention_layer_norm": "self_attention_layer_norm",
    "ffn_intermediate": "feedforward_intermediate_dense",
    "ffn_output": "feedforward_output_dense",
    "ffn_layer_norm": "feedforward_layer_norm",
}


def _falcon_options(config):
    """Falcon (keras_hub's, as Falcon-RW-1B): pre-norm, exact GELU,
    biases everywhere, ALiBi added to `q . k` before the scale."""
    heads = config["num_attention_heads"]
    head_dim = config["hidden_dim"] // heads
    return dict(
        num_heads=heads,
        intermediate_dim=config["intermediate_dim"],
        dropout=config["attention_dropout_rate"],
        key_dim=head_dim,
        activation="gelu",
        norm_first=True,
        # keras_hub's blocks keep their default epsilon; the backbone's
        # `layer_norm_epsilon` reaches its final norm only.
        layer_norm_epsilon=1e-5,
        use_alibi=True,
        alibi_slope_scale=head_dim**-0.5,
    )


def _refuse_falcon(backbone):
    config = backbone.get_config()
    if config["attention_dropout_rate"] != config["feedforward_dropout_rate"]:
        return "different attention and feed-forward dropout rates"
    return None


_FALCON_WEIGHTS = {
    "self_attention/qkv": (
        "fused_qkv",
        "attention/query_dense",
        "attention/key_dense",
        "attention/value_dense",
    ),
    # A `(n * h, d)` output kernel.
    "self_attention/attention_output": (
        "heads_output",
        "attention/output_dense",
    ),
    "self_attention_layer_norm": "input_layernorm",
    "ffn_intermediate": "dense_h_to_4h",
    "ffn_output": "dense_4h_to_h",
    "ffn_layer_norm": "post_attention_layernorm",
}

_FAMILIES = (
    Family(
        name="bert",
        backbone="BertBackbone",
        causal_lms=(),
        causal=False,
        inputs=("token_ids", "segment_ids", "padding_mask"),
        embeddings={
            "token": "token_embedding",
            "position": "position_embedding",
            "segment": "segment_embedding",
            "norm": "embeddings_layer_norm",
        },
        block_options=_post_ln_encoder(_GELU_TANH, 1e-12),
        block_weights=_ENCODER_WEIGHTS,
        pooler="pooled_dense",
    ),
    Family(
        name="roberta",
        backbone="RobertaBackbone",
        causal_lms=(),
        causal=False,
        embeddings={
            "token_and_position": "embeddings",
            "norm": "embeddings_layer_norm",
        },
        block_options=_post_ln_encoder("gelu", 1e-5),
        block_weights=_ENCODER_WEIGHTS,
    ),
    Family(
        name="distil_bert",
        backbone="DistilBertBackbone",
        causal_lms=(),
        causal=False,
        embeddings={
            "token_and_position": "embeddings",
            "norm": "embeddings_layer_norm",
        },
        block_options=_post_ln_encoder("gelu", 1e-12),
        block_weights=_ENCODER_WEIGHTS,
    ),
    Family(
        name="gpt2",
        backbone="GPT2Backbone",
        causal_lms=("GPT2CausalLM",),
        causal=True,
        embeddings={
            "token": "token_embedding",
            "position": "position_embedding",
        },
        block_options=_pre_ln_decoder(_GELU_TANH),
        block_weights=_DECODER_WEIGHTS,
        final_norm="layer_norm",
        final_norm_options=_LAYER_NORM_1E5,
    ),
    Family(
        name="opt",
        backbone="OPTBackbone",
        causal_lms=("OPTCausalLM",),
        causal=True,
        embeddings={"token_and_position": "embeddings"},
        block_options=_pre_ln_decoder("relu"),
        block_weights=_DECODER_WEIGHTS,
        final_norm="layer_norm",
        final_norm_options=_LAYER_NORM_1E5,
    ),
    Family(
        name="gpt_neo_x",
        backbone="GPTNeoXBackbone",
        causal_lms=("GPTNeoXCausalLM",),
        causal=True,
        embeddings={"token": "token_embedding"},
        block_options=_gpt_neo_x_options,
        block_weights=_GPT_NEO_X_WEIGHTS,
        final_norm="layer_norm",
        final_norm_options=_layer_norm,
    ),
    Family(
        name="falcon",
        backbone="FalconBackbone",
        causal_lms=("FalconCausalLM",),
        causal=True,
        embeddings={"token": "token_embedding"},
        block_options=_falcon_options,
        block_weights=_FALCON_WEIGHTS,
        final_norm="final_layernorm",
        final_norm_options=_layer_norm,
        refuse=_refuse_falcon,
    ),
    # Pre-norm RMS-norm decoders with grouped heads, rotary positions and
    # a gated (SwiGLU) feed-forward network.
    Family(
        name="llama",
        backbone="LlamaBackbone",
        causal_lms=("LlamaCausalLM",),
        block_options=_gated_decoder(scaling="rope_position_scaling_factor"),
        **_LLAMA,
    ),
    Family(
        name="llama3",
        backbone="Llama3Backbone",
        causal_lms=("Llama3CausalLM",),
        block_options=_gated_decoder(scaling="rope_position_scaling_factor"),
        **_LLAMA,
    ),
    Family(
        name="mistral",
        backbone="MistralBackbone",
        causal_lms=("MistralCausalLM",),
        causal=True,
        embeddings={"token": "token_embedding"},
        block_options=_gated_decoder(
            sliding_window=lambda config: config["sliding_window"]
        ),
        block_weights=_LLAMA_WEIGHTS,
        final_norm="sequence_output_layernorm",
        final_norm_options=_rms_norm,
    ),
    Family(
        name="qwen",
        backbone="QwenBackbone",
        causal_lms=("QwenCausalLM",),
        causal=True,
        embeddings={"token": "token_embedding"},
        # Qwen 2 has query, key and value biases, no other bias.
        block_options=_gated_decoder(use_bias=True),
        block_weights=_LLAMA_WEIGHTS,
        final_norm="sequence_output_layernorm",
        final_norm_options=_rms_norm,
        refuse=_refuse_qwen_window,
    ),
    Family(
        name="qwen3",
        backbone="Qwen3Backbone",
        causal_lms=("Qwen3CausalLM",),
        causal=True,
        embeddings={"token": "token_embedding"},
        block_options=_gated_decoder(
            use_query_key_norm=lambda config: True,
            # keras_hub's query/key norms keep their default epsilon,
            # whatever the backbone's `layer_norm_epsilon`.
            query_key_norm_epsilon=lambda config: 1e-5,
        ),
        block_weights=_gated_block(
            "self_attention_layernorm",
            "feedforward_layernorm",
            **{
                "self_attention/query_norm": (
                    "self_attention/query_dense_layernorm"
                ),
                "self_attention/key_norm": "self_attention/key_dense_layernorm",
            },
        ),
        final_norm="sequence_output_layernorm",
        final_norm_options=_rms_norm,
        refuse=_refuse_qwen_window,
    ),
    Family(
        name="phi3",
        backbone="Phi3Backbone",
        causal_lms=("Phi3CausalLM",),
        causal=True,
        embeddings={"token": "token_embedding"},
        block_options=_gated_decoder(),
        block_weights=_gated_block(
            "pre_attention_layernorm",
            "post_attention_layernorm",
            **{
                "self_attention/qkv": (
                    "fused_qkv",
                    "attention/query",
                    "attention/key",
                    "attention/value",
                ),
                "self_attention/attention_output": "attention/attention_output",
            },
        ),
        final_norm="sequence_output_layernorm",
        final_norm_options=_rms_norm,
        refuse=_refuse_phi3_rope,
    ),
    # Gemma 1 and 2 (post norms, soft caps, alternating windows).
    Family(
        name="gemma",
        backbone="GemmaBackbone",
        causal_lms=("GemmaCausalLM",),
        causal=True,
        # Its token embedding soft-caps the final logits itself.
        embeddings={"token": "token_embedding"},
        block_options=_gemma_options,
        layer_options=_gemma_layer_options,
        block_name="decoder_block",
        block_weights=_GEMMA_WEIGHTS,
        final_norm="final_normalization",
        final_norm_options=_rms_norm,
        weights={"final_normalization": ("plus_one", "final_normalization")},
        embedding_scale=True,
        refuse=_refuse_gemma,
    ),
    Family(
        name="gemma3",
        backbone="Gemma3Backbone",
        causal_lms=("Gemma3CausalLM",),
        causal=True,
        embeddings={"token": "token_embedding"},
        block_options=lambda config: _gemma_options(config, gemma3=True),
        layer_options=_gemma3_layer_options,
        block_name="decoder_block",
        block_weights=_GEMMA3_WEIGHTS,
        final_norm="final_normalization",
        final_norm_options=_rms_norm,
        weights={"final_normalization": ("plus_one", "final_normalization")},
        embedding_scale=True,
        refuse=_refuse_gemma3,
    ),
)


FAMILIES = {family.name: family for family in _FAMILIES}

# keras_hub backbones that are refused, with the feature they need.
REFUSED = {
    "MixtralBackbone": "mixture of experts",
    "QwenMoeBackbone": "mixture of experts",
    "Qwen3MoeBackbone": "mixture of experts",
    "GptOssBackbone": "mixture of experts",
    "PaliGemmaBackbone": "a vision tower",
    "Gemma3nBackbone": "a vision and audio tower",
}


def family_of(backbone):
    """The `Family` of a keras_hub backbone, by its class or a base class.

    Raises:
        ValueError: naming the class and the feature for a refused one.
        TypeError: naming the class for one no family covers.
    """
    for cls in type(backbone).__mro__:
        if cls.__name__ in REFUSED:
            raise ValueError(
                f"from_keras_hub cannot convert a model with "
                f"{REFUSED[cls.__name__]}: keras_mha's blocks have none. "
                f"Received: a {type(backbone).__name__}"
            )
        for family in _FAMILIES:
            if cls.__name__ == family.backbone:
                feature = family.refuse(backbone)
                if feature is not None:
                    raise ValueError(
                        f"from_keras_hub cannot convert a model with "
                        f"{feature}: keras_mha's blocks do not cover it. "
                        f"Received: a {type(backbone).__name__}"
                    )
                return family
    names = ", ".join(family.backbone for family in _FAMILIES)
    raise TypeError(
        "from_keras_hub converts the keras_hub backbones "
        f"{names} and their causal LMs. Received: a "
        f"{type(backbone).__name__}"
    )
