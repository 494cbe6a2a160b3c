"""`keras_mha.from_keras_hub`: keras_hub backbones on our blocks.

Each family is built small and random (offline), converted, and compared
with the keras_hub model at the unpadded positions of right-padded inputs;
the converted causal LMs generate keras_hub's greedy tokens. Then the
package's features on converted models: `.keras` files in safe mode,
int8 quantization, LoRA, SavedModel export and `get_layout_map` on 8 JAX
host devices (in a fresh process: `python -m tests.test_from_keras_hub
WORKDIR`).
"""

import json
import os
import sys

import keras
import numpy as np
import pytest

import keras_mha
from keras_mha import generate
from keras_mha.hub import weights as hub_weights
from keras_mha.seq2seq.serving import load_saved_model
from tests import reference
from tests.layer_test_case import assert_clear_error
from tests.layer_test_case import run_on_jax_devices
from tests.layer_test_case import to_numpy

keras_hub = pytest.importorskip("keras_hub")
BACKEND = keras.backend.backend()
VOCAB, BATCH, LENGTH = 37, 3, 9
LENGTHS = (9, 6, 2)  # Right padding in two of the rows.

# Family -> (keras_hub class, {configuration id: constructor arguments}).
SIZES = dict(vocabulary_size=VOCAB, num_layers=2, dropout=0.0)
CLASSIC = dict(max_sequence_length=16, **SIZES)
CASES = {
    "bert": (
        "BertBackbone",
        {
            "heads2": dict(num_heads=2, hidden_dim=8, intermediate_dim=12),
            "heads3_segments3": dict(
                num_heads=3, hidden_dim=12, intermediate_dim=7, num_segments=3
            ),
        },
    ),
    "roberta": (
        "RobertaBackbone",
        {
            "heads2": dict(num_heads=2, hidden_dim=8, intermediate_dim=12),
            "heads3": dict(num_heads=3, hidden_dim=12, intermediate_dim=7),
        },
    ),
    "distil_bert": (
        "DistilBertBackbone",
        {
            "heads2": dict(num_heads=2, hidden_dim=8, intermediate_dim=12),
            "heads4": dict(num_heads=4, hidden_dim=16, intermediate_dim=6),
        },
    ),
    "gpt2": (
        "GPT2Backbone",
        {
            "heads2": dict(num_heads=2, hidden_dim=8, intermediate_dim=12),
            "heads3": dict(num_heads=3, hidden_dim=12, intermediate_dim=7),
        },
    ),
    "opt": (
        "OPTBackbone",
        {
            "heads2": dict(num_heads=2, hidden_dim=8, intermediate_dim=12),
            "heads3": dict(num_heads=3, hidden_dim=12, intermediate_dim=7),
        },
    ),
    "gpt_neo_x": (
        "GPTNeoXBackbone",
        {
            "heads2_rotary_half": dict(
                num_heads=2,
                hidden_dim=16,
                intermediate_dim=12,
                rotary_percentage=0.5,
            ),
            "heads4_rotary_quarter": dict(
                num_heads=4, hidden_dim=32, intermediate_dim=7
            ),
        },
    ),
}
GQA = dict(num_query_heads=4, num_key_value_heads=2, hidden_dim=8)
MODERN = {
    "llama": (
        "LlamaBackbone",
        {
            "gqa": dict(**GQA, intermediate_dim=12),
            "mha_tied": dict(
                num_query_heads=2,
                num_key_value_heads=2,
                hidden_dim=8,
                intermediate_dim=7,
                tie_word_embeddings=True,
            ),
        },
    ),
    "llama3": ("Llama3Backbone", {"gqa": dict(**GQA, intermediate_dim=12)}),
    "mistral": (
        "MistralBackbone",
        {"gqa_window3": dict(**GQA, intermediate_dim=12, sliding_window=3)},
    ),
    "qwen": ("QwenBackbone", {"gqa_bias": dict(**GQA, intermediate_dim=12)}),
    "qwen3": (
        "Qwen3Backbone",
        {
            # keras_hub's query/key norms keep their own epsilon, 1e-5,
            # whatever the backbone's: both cases equal.
            "head_dim6_qk_norm": dict(
                **GQA, head_dim=6, intermediate_dim=12, layer_norm_epsilon=1e-5
            ),
            "qk_norm_epsilon_1e-6": dict(
                **GQA, head_dim=6, intermediate_dim=12, layer_norm_epsilon=1e-6
            ),
        },
    ),
    "phi3": ("Phi3Backbone", {"gqa": dict(**GQA, intermediate_dim=12)}),
    "gemma": (
        "GemmaBackbone",
        {
            "gemma1_gqa": dict(**GQA, head_dim=6, intermediate_dim=24),
            "gemma2_caps_window3": dict(
                **GQA,
                head_dim=6,
                intermediate_dim=24,
                # keras_hub 0.32's blocks scale by head_dim all the same.
                query_head_dim_normalize=False,
                use_post_attention_norm=True,
                use_post_ffw_norm=True,
                attention_logit_soft_cap=2.0,
                final_logit_soft_cap=3.0,
                use_sliding_window_attention=True,
                sliding_window_size=3,
            ),
        },
    ),
    "gemma3": (
        "Gemma3Backbone",
        {
            # Two local blocks (window 3).
            "local_window3_cap": dict(
                **GQA,
                image_size=16,
                head_dim=6,
                intermediate_dim=12,
                use_sliding_window_attention=True,
                sliding_window_size=3,
                # Small enough to change the logits of small weights.
                final_logit_soft_cap=0.5,
            ),
            # Blocks 0-4 local (window 3), block 5 global.
            "qk_norm_local_global": dict(
                **GQA,
                num_layers=6,
                image_size=16,  # Required, unused without a vision encoder.
                head_dim=6,
                intermediate_dim=12,
                use_sliding_window_attention=True,
                sliding_window_size=3,
                use_post_attention_norm=True,
                use_post_ffw_norm=True,
                global_rope_scaling_factor=8.0,
                final_logit_soft_cap=0.5,
            ),
        },
    ),
}
# Falcon takes neither `max_sequence_length` nor `dropout`. Its ALiBi
# slopes depend on the head count: a power of two, then 3 (slopes of 2
# and 4) and 6 (of 4 and 8); its final norm alone takes the epsilon.
FALCON_SIZES = dict(vocabulary_size=VOCAB, num_layers=2)
FALCON = {
    "falcon": (
        "FalconBackbone",
        {
            "heads2": dict(
                num_attention_heads=2, hidden_dim=16, intermediate_dim=12
            ),
            "heads3_epsilon1e-3": dict(
                num_attention_heads=3,
                hidden_dim=12,
                intermediate_dim=7,
                layer_norm_epsilon=1e-3,
            ),
            "heads6": dict(
                num_attention_heads=6, hidden_dim=24, intermediate_dim=7
            ),
        },
    ),
}
CAUSAL_LMS = {
    "gpt2": "GPT2CausalLM",
    "opt": "OPTCausalLM",
    "gpt_neo_x": "GPTNeoXCausalLM",
    "llama": "LlamaCausalLM",
    "mistral": "MistralCausalLM",
    "qwen": "QwenCausalLM",
    "gemma": "GemmaCausalLM",
    "phi3": "Phi3CausalLM",
    "falcon": "FalconCausalLM",
    "gemma3": "Gemma3CausalLM",
}


def _params(families):
    return [
        pytest.param(family, case, id=f"{family}-{case}")
        for family, (_, cases) in families.items()
        for case in cases
    ]


CASES.update(MODERN)
CASES.update(FALCON)
PARAMS = _params(CASES)


def make_backbone(family, case, seed=0):
    keras.utils.set_random_seed(seed)
    name, cases = CASES[family]
    base = CLASSIC
    if family in MODERN:
        base = SIZES
    elif family in FALCON:
        base = FALCON_SIZES
    kwargs = {**base, **cases[case]}
    return getattr(keras_hub.models, name)(**kwargs)


def make_inputs(backbone, seed=1):
    rng = np.random.default_rng(seed)
    mask = np.arange(LENGTH)[None] < np.array(LENGTHS)[:, None]
    # Id 0 is a real token in GPT-2's vocabulary: keep some unpadded.
    ids = rng.integers(0, VOCAB, (BATCH, LENGTH)) * mask
    inputs = {"token_ids": ids.astype("int32"), "padding_mask": mask}
    if "segment_ids" in backbone.input:
        segments = rng.integers(0, backbone.num_segments, (BATCH, LENGTH))
        inputs["segment_ids"] = (segments * mask).astype("int32")
    return {k: v.astype("int32") for k, v in inputs.items()}


def assert_equal_at_tokens(ours, theirs, mask, atol=1e-4):
    ours, theirs = to_numpy(ours), to_numpy(theirs)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours[mask], theirs[mask], atol=atol, rtol=0)


def assert_outputs_equal(ours, theirs, inputs, atol=1e-4):
    """Same structure; sequences equal at unpadded positions."""
    mask = inputs["padding_mask"].astype(bool)
    if isinstance(theirs, dict):
        assert set(ours) == set(theirs)
        for key in theirs:
            if key == "pooled_output":  # From the first (real) token.
                np.testing.assert_allclose(
                    to_numpy(ours[key]), to_numpy(theirs[key]), atol=atol
                )
            else:
                assert_equal_at_tokens(ours[key], theirs[key], mask, atol)
    else:
        assert not isinstance(ours, dict)
        assert_equal_at_tokens(ours, theirs, mask, atol)


# The fused query/key/value layout.


def test_fuse_qkv_projects_like_separate_query_key_value_kernels():
    """Grouped heads: the fused layer equals the NumPy reference of the
    separate kernels, key/value head i serving query heads 2i and 2i+1."""
    width, heads, kv_heads, key_dim = 10, 4, 2, 3
    rng = np.random.default_rng(0)
    wq, wk, wv = (
        rng.normal(size=(width, n, key_dim))
        for n in (heads, kv_heads, kv_heads)
    )
    bq, bk, bv = (
        rng.normal(size=(n, key_dim)) for n in (heads, kv_heads, kv_heads)
    )
    wo, bo = rng.normal(size=(heads, key_dim, width)), rng.normal(size=width)
    layer = keras_mha.MultiHeadSelfAttention(
        heads, key_dim=key_dim, num_key_value_heads=kv_heads
    )
    x = rng.normal(size=(2, 5, width)).astype("float32")
    layer(x)
    layer.qkv_dense.kernel.assign(hub_weights.fuse_qkv(wq, wk, wv))
    layer.qkv_dense.bias.assign(hub_weights.fuse_qkv(bq, bk, bv))
    layer.output_dense.kernel.assign(wo)
    layer.output_dense.bias.assign(bo)
    repeat = lambda w: np.repeat(w, heads // kv_heads, axis=-2)
    expected, _ = reference.attention(
        x, x, wq, bq, repeat(wk), repeat(bk), repeat(wv), repeat(bv), wo, bo
    )
    np.testing.assert_allclose(to_numpy(layer(x)), expected, atol=1e-4)


def test_split_qkv_inverts_fuse_qkv():
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(7, n, h)) for n, h in ((6, 2), (3, 2), (3, 5)))
    for got, want in zip(
        hub_weights.split_qkv(hub_weights.fuse_qkv(q, k, v), 6, 2), (q, k, v)
    ):
        np.testing.assert_array_equal(got, want)


def test_fuse_qkv_rejects_heads_that_do_not_group():
    q, k = np.zeros((4, 3, 2)), np.zeros((4, 2, 2))
    with pytest.raises(ValueError, match="query.shape=\\(4, 3, 2\\)"):
        hub_weights.fuse_qkv(q, k, k)


# Every family, several configurations.


@pytest.mark.parametrize("family, case", PARAMS)
def test_converted_backbone_equals_keras_hub(family, case):
    backbone = make_backbone(family, case)
    converted = keras_mha.from_keras_hub(backbone)
    inputs = make_inputs(backbone)
    assert set(converted.input) == set(backbone.input)
    assert_outputs_equal(converted(inputs), backbone(inputs), inputs)
    # Attention, feed-forward and norms are ours.
    blocks = [
        layer
        for layer in converted.layers
        if isinstance(
            layer,
            (
                keras_mha.TransformerEncoderBlock,
                keras_mha.TransformerDecoderBlock,
            ),
        )
    ]
    assert len(blocks) == backbone.num_layers


def test_weights_are_copied_not_shared():
    backbone = make_backbone("gpt2", "heads2")
    converted = keras_mha.from_keras_hub(backbone)
    before = [to_numpy(w) for w in backbone.weights]
    for variable in converted.weights:
        variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
    for old, new in zip(before, backbone.weights):
        np.testing.assert_array_equal(old, to_numpy(new))


# Generation.


def make_causal_lm(family, case="heads2"):
    backbone = make_backbone(family, case)
    causal_lm = getattr(keras_hub.models, CAUSAL_LMS[family])(
        backbone=backbone, preprocessor=None
    )
    causal_lm.compile(sampler="greedy")
    return causal_lm


def prompts(length=12, lengths=(4, 1, 6), seed=3):
    rng = np.random.default_rng(seed)
    mask = np.arange(length)[None] < np.array(lengths)[:, None]
    ids = rng.integers(0, VOCAB, (len(lengths), length)) * mask
    ids[1, 0] = 0  # A prompt that is the real token 0.
    return ids.astype("int32"), mask


def keras_hub_greedy_tokens(causal_lm, inputs):
    """`causal_lm.generate(inputs)`'s tokens, to the end.

    For Gemma 3, the function that `generate` runs on the batch
    (`make_generate_function`): keras_hub 0.32's `Gemma3CausalLM.generate`
    without a preprocessor fails after it, concatenating the
    `"images": None` that the function returns beside the tokens.
    """
    if isinstance(causal_lm, keras_hub.models.Gemma3CausalLM):
        generate_function = causal_lm.make_generate_function()
        return generate_function(inputs, stop_token_ids=None)["token_ids"]
    return causal_lm.generate(inputs, stop_token_ids=None)["token_ids"]


# Families whose every case generates: Falcon (its slopes), Gemma 3 (six
# blocks, local then global, compile for half a minute: slow).
EVERY_CASE_GENERATES = {"falcon": (), "gemma3": ("qk_norm_local_global",)}


def _generation_params():
    """The first case of each family, every case of some."""
    params = []
    for family in CAUSAL_LMS:
        cases = list(CASES[family][1])
        if family not in EVERY_CASE_GENERATES:
            params.append(pytest.param(family, cases[0], id=family))
            continue
        for case in cases:
            slow = case in EVERY_CASE_GENERATES[family]
            params.append(
                pytest.param(
                    family,
                    case,
                    id=f"{family}-{case}",
                    marks=[pytest.mark.slow] if slow else [],
                )
            )
    return params


@pytest.mark.parametrize("family, case", _generation_params())
def test_converted_causal_lm_generates_keras_hub_greedy_tokens(family, case):
    causal_lm = make_causal_lm(family, case)
    converted = keras_mha.from_keras_hub(causal_lm)
    ids, mask = prompts()
    inputs = {"token_ids": ids, "padding_mask": mask.astype("int32")}
    assert_outputs_equal(converted(inputs), causal_lm(inputs), inputs)
    theirs = keras_hub_greedy_tokens(causal_lm, inputs)
    prompt_length = int(mask.sum(axis=1).max())
    ours = generate(
        converted,
        ids[:, :prompt_length],
        max_length=ids.shape[1],
        padding_mask=mask[:, :prompt_length],
    )
    np.testing.assert_array_equal(to_numpy(ours), to_numpy(theirs))


@pytest.mark.parametrize("case", list(FALCON["falcon"][1]))
def test_falcon_with_left_padding_equals_keras_hub(case):
    """keras_hub counts ALiBi positions from each row's first token (the
    padding mask's cumulative sum), ours from the row's start: with left
    padding they differ by a constant per query row, which leaves the
    softmax as it was."""
    backbone = make_backbone("falcon", case)
    converted = keras_mha.from_keras_hub(backbone)
    inputs = {
        name: np.ascontiguousarray(value[:, ::-1])
        for name, value in make_inputs(backbone).items()
    }
    assert not inputs["padding_mask"][:, 0].all()  # Padding comes first.
    assert_outputs_equal(converted(inputs), backbone(inputs), inputs)


def test_generate_with_a_padding_mask_may_emit_token_0():
    """A model that always prefers id 0 emits it with a padding mask; by
    default id 0 is padding and is never emitted."""
    causal_lm = keras_mha.from_keras_hub(make_causal_lm("gpt2"))
    # The final norm outputs ones, and only token 0's embedding has a
    # positive product with them.
    norm = causal_lm.backbone.final_norm
    norm.gamma.assign(np.zeros(norm.gamma.shape, "float32"))
    norm.beta.assign(np.ones(norm.beta.shape, "float32"))
    embedding = causal_lm.backbone.token_embedding
    table = np.zeros(embedding.embeddings.shape, "float32")
    table[0] = 1.0
    embedding.embeddings.assign(table)
    ids = np.array([[5, 7, 0], [9, 0, 0]], "int32")
    mask = np.array([[1, 1, 0], [1, 0, 0]], bool)
    masked = to_numpy(generate(causal_lm, ids, 6, padding_mask=mask))
    np.testing.assert_array_equal(masked[0, 2:], 0)
    np.testing.assert_array_equal(masked[1, 1:], 0)
    default = to_numpy(generate(causal_lm, ids, 6))
    assert (default[:, 2:] != 0).all()


@pytest.mark.parametrize(
    "mask, fragment",
    [
        (np.ones((2, 4), bool), "padding_mask.shape=(2, 4)"),
        (np.array([[1, 0, 1], [1, 1, 0]], bool), "rows [0]"),
        (np.array([[1, 1, 1], [0, 0, 0]], bool), "rows [1]"),
    ],
    ids=["shape", "gap", "empty_row"],
)
def test_generate_rejects_a_bad_padding_mask(mask, fragment):
    causal_lm = keras_mha.from_keras_hub(make_causal_lm("gpt2"))
    ids = np.ones((2, 3), "int32")
    assert_clear_error(
        lambda: generate(causal_lm, ids, 6, padding_mask=mask),
        ValueError,
        ["padding_mask", fragment],
    )


# Refusals.


def test_refuses_mixture_of_experts_naming_class_and_feature():
    backbone = keras_hub.models.MixtralBackbone(
        vocabulary_size=VOCAB,
        num_layers=1,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=8,
        intermediate_dim=12,
        num_experts=2,
    )
    assert_clear_error(
        lambda: keras_mha.from_keras_hub(backbone),
        ValueError,
        ["MixtralBackbone", "mixture of experts"],
    )


def _phi3_su_rope():
    return keras_hub.models.Phi3Backbone(
        **SIZES,
        **GQA,
        intermediate_dim=12,
        rope_scaling_type="su",
        rope_scaling_short_factor=[1.0],
        rope_scaling_long_factor=[2.0],
        max_sequence_length=32,
        pretraining_sequence_length=16,
    )


def _gemma_hidden_dim_query_scale():
    # keras_hub 0.32's blocks scale by head_dim whatever the backbone's
    # `query_head_dim_normalize`; an attention layer that does not is
    # refused.
    backbone = make_backbone("gemma", "gemma1_gqa")
    backbone.transformer_layers[1].attention.query_head_dim_normalize = False
    return backbone


def _falcon_two_dropout_rates():
    return keras_hub.models.FalconBackbone(
        **FALCON_SIZES,
        **FALCON["falcon"][1]["heads2"],
        attention_dropout_rate=0.1,
        feedforward_dropout_rate=0.2,
    )


@pytest.mark.parametrize(
    "make, fragments",
    [
        (_phi3_su_rope, ["Phi3Backbone", "su"]),
        (_gemma_hidden_dim_query_scale, ["GemmaBackbone", "query scale"]),
        (_falcon_two_dropout_rates, ["FalconBackbone", "dropout rates"]),
    ],
    ids=["phi3_su_rope", "gemma_query_scale", "falcon_dropout_rates"],
)
def test_refuses_a_feature_of_a_family_naming_class_and_feature(
    make, fragments
):
    backbone = make()
    assert_clear_error(
        lambda: keras_mha.from_keras_hub(backbone), ValueError, fragments
    )


def test_refuses_an_unknown_class_naming_it():
    model = keras.Sequential([keras.layers.Dense(2)])
    assert_clear_error(
        lambda: keras_mha.from_keras_hub(model), TypeError, ["Sequential"]
    )
    backbone = keras_hub.models.FNetBackbone(
        vocabulary_size=VOCAB,
        num_layers=1,
        hidden_dim=8,
        intermediate_dim=12,
        max_sequence_length=16,
    )
    assert_clear_error(
        lambda: keras_mha.from_keras_hub(backbone),
        TypeError,
        ["FNetBackbone", "BertBackbone"],
    )


def test_refuses_a_task_that_is_not_a_causal_lm():
    backbone = make_backbone("bert", "heads2")
    classifier = keras_hub.models.BertTextClassifier(
        backbone, num_classes=2, preprocessor=None
    )
    assert_clear_error(
        lambda: keras_mha.from_keras_hub(classifier),
        TypeError,
        ["BertTextClassifier"],
    )


def test_refuses_weights_the_table_does_not_map():
    """A backbone subclass with an extra weight is refused, naming it."""

    class Extra(keras_hub.models.GPT2Backbone):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.extra = self.add_weight(shape=(2,), name="extra")

    backbone = Extra(**CLASSIC, **CASES["gpt2"][1]["heads2"])
    assert_clear_error(
        lambda: keras_mha.from_keras_hub(backbone),
        ValueError,
        ["Extra", "extra"],
    )


# The package's features on converted models.


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_keras_file_reloads_in_safe_mode(family, tmp_path):
    backbone = make_backbone(family, "heads2")
    converted = keras_mha.from_keras_hub(backbone)
    if family in CAUSAL_LMS:
        converted = keras_mha.from_keras_hub(make_causal_lm(family))
    path = str(tmp_path / "converted.keras")
    converted.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    inputs = make_inputs(backbone)
    expected, got = converted(inputs), reloaded(inputs)
    for a, b in zip(keras.tree.flatten(expected), keras.tree.flatten(got)):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    assert type(reloaded) is type(converted)


def test_int8_quantized_model_is_close_and_reloads(tmp_path):
    causal_lm = keras_mha.from_keras_hub(make_causal_lm("gpt2"))
    ids, mask = prompts()
    inputs = {"token_ids": ids, "padding_mask": mask.astype("int32")}
    full = to_numpy(causal_lm(inputs))
    causal_lm.quantize("int8")
    quantized = to_numpy(causal_lm(inputs))
    assert 0 < np.abs(quantized - full)[mask].max() < 0.05 * np.abs(full).max()
    path = str(tmp_path / "int8.keras")
    causal_lm.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(to_numpy(reloaded(inputs)), quantized, atol=1e-6)
    # The cached decoding runs on the quantized blocks.
    generate(reloaded, ids[:, :6], 12, padding_mask=mask[:, :6])


def test_lora_on_the_blocks_trains_only_the_updates():
    converted = keras_mha.from_keras_hub(make_causal_lm("gpt2"))
    for layer in converted.backbone.layers:  # Embeddings, final norm.
        layer.trainable = False
    for block in converted.backbone.blocks:
        block.enable_lora(2, targets=("query", "value", "output"))
    trainable = converted.trainable_weights
    assert trainable and all("lora" in v.path for v in trainable)
    ids, mask = prompts()
    inputs = {"token_ids": ids, "padding_mask": mask.astype("int32")}
    before = to_numpy(converted(inputs))
    frozen = [to_numpy(w) for w in converted.non_trainable_weights]
    converted.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    converted.train_on_batch(inputs, ids)
    for old, new in zip(frozen, converted.non_trainable_weights):
        np.testing.assert_array_equal(old, to_numpy(new))
    assert np.abs(to_numpy(converted(inputs)) - before).max() > 0


def test_attention_maps_cover_every_block_of_a_converted_model():
    """Grouped heads: every query head gets its own map."""
    backbone = make_backbone("llama", "gqa")
    converted = keras_mha.from_keras_hub(backbone)
    inputs = make_inputs(backbone)
    maps = keras_mha.visualize.attention_maps(converted, inputs)
    assert sorted(maps) == [
        f"transformer_layer_{i}/self_attention" for i in range(2)
    ]
    mask = inputs["padding_mask"].astype(bool)
    for scores in maps.values():
        assert scores.shape == (BATCH, 4, LENGTH, LENGTH)
        # Causal and padded keys get nothing; real queries sum to 1.
        assert np.all(np.triu(scores, 1) == 0)
        assert np.all(
            scores[~np.broadcast_to(mask[:, None, None], scores.shape)] == 0
        )
        np.testing.assert_allclose(
            scores.sum(-1)[np.broadcast_to(mask[:, None], scores.shape[:3])],
            1.0,
            atol=1e-5,
        )


@pytest.mark.skipif(BACKEND != "tensorflow", reason="SavedModel is TF's")
def test_savedmodel_export_serves_the_converted_outputs(tmp_path):
    backbone = make_backbone("bert", "heads2")
    converted = keras_mha.from_keras_hub(backbone)
    converted.export(str(tmp_path / "saved"), verbose=False)
    served = load_saved_model(str(tmp_path / "saved"))
    inputs = make_inputs(backbone)
    outputs = served.serve(inputs)
    for key, value in converted(inputs).items():
        np.testing.assert_allclose(
            to_numpy(outputs[key]), to_numpy(value), atol=1e-5
        )


# Model parallelism: 8 JAX host devices in a fresh process.

PARALLEL = dict(num_heads=4, hidden_dim=16, intermediate_dim=8)


def _parallel_run():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GPT2Backbone(**CLASSIC, **PARALLEL)
    converted = keras_mha.from_keras_hub(backbone)
    return converted, [to_numpy(w) for w in converted.weights]


def layout_map_worker(workdir):
    """The converted model on one device, then on a (2, 4) mesh."""
    import jax

    single, weights = _parallel_run()
    inputs = make_inputs(single)
    single_outputs = to_numpy(single(inputs))
    devices = keras.distribution.list_devices("cpu")
    mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), devices)
    keras.distribution.set_distribution(
        keras.distribution.ModelParallel(
            layout_map=keras_mha.get_layout_map(mesh), batch_dim_name="batch"
        )
    )
    parallel, _ = _parallel_run()
    parallel.set_weights(weights)
    batch = {k: np.concatenate([v, v[:1]]) for k, v in inputs.items()}
    parallel_outputs = to_numpy(parallel(batch))[:BATCH]
    np.savez(
        os.path.join(workdir, "runs.npz"),
        single=single_outputs,
        parallel=parallel_outputs,
        mask=inputs["padding_mask"],
    )
    qkv = next(v for v in parallel.weights if v.path.endswith("qkv/kernel"))
    print(
        json.dumps(
            {
                "devices": jax.device_count(),
                "qkv": list(qkv.shape),
                "qkv_shard": list(qkv.value.addressable_shards[0].data.shape),
            }
        )
    )


@pytest.mark.slow  # A fresh JAX process with 8 devices: minutes on 2 cores.
@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution is JAX's")
def test_layout_map_splits_a_converted_model_on_8_devices(tmp_path):
    summary = run_on_jax_devices("tests.test_from_keras_hub", tmp_path)
    assert summary["devices"] == 8
    # (width, kv heads, fused) split over its heads, 4 ways.
    assert summary["qkv_shard"] == [
        summary["qkv"][0],
        summary["qkv"][1] // 4,
        summary["qkv"][2],
    ]
    with np.load(tmp_path / "runs.npz") as runs:
        mask = runs["mask"].astype(bool)
        np.testing.assert_allclose(
            runs["parallel"][mask], runs["single"][mask], atol=1e-5
        )


if __name__ == "__main__":
    layout_map_worker(sys.argv[1])
