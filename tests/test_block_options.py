"""The options of today's model families on the Transformer blocks.

Each block option (the norms, the gated feed-forward network, the post
norms, the parallel residual, and the attention options handed down to
the attention layers), alone and in the family blocks of
docs/attention-options.md, against the NumPy reference of
tests/reference.py on each attention path; cached decoding equals the
full call; the layer contract with every option; mixed precision close to
float32; bad options name the block's argument.
"""

import inspect
import os
import re
import warnings

import keras
import keras_hub
import numpy as np
import pytest

import keras_mha
from tests.layer_test_case import ATTENTION_PATHS
from tests.layer_test_case import run_layer_test
from tests.layer_test_case import to_numpy
from tests.reference import transformer_block

B, T, S, D, SOURCE_D, HEADS, FFN = 2, 6, 5, 16, 8, 4, 12
BACKEND = keras.backend.backend()


def _rotary(**kwargs):
    return keras_hub.layers.RotaryEmbedding(**kwargs)


OPTIONS = {
    "rms_norm": dict(normalization="rms_norm"),
    "rms_norm_post_ln": dict(normalization="rms_norm", norm_first=False),
    "swiglu": dict(use_gated_feedforward=True, activation="silu"),
    "geglu_approximate": dict(
        use_gated_feedforward=True, activation="keras_mha>gelu_approximate"
    ),
    "no_bias": dict(use_bias=False),
    "ffn_bias_only": dict(use_bias=False, use_feedforward_bias=True),
    "post_norms": dict(
        use_post_attention_norm=True, use_post_feedforward_norm=True
    ),
    "parallel": dict(parallel_residual=True),
    "parallel_shared": dict(parallel_residual=True, shared_input_norm=True),
    "attention_options": dict(
        key_dim=2,
        num_key_value_heads=2,
        use_output_bias=False,
        use_gate=True,
        use_query_key_norm=True,
        attention_logit_soft_cap=3.0,
        attention_scale=0.6,
    ),
    "positions": dict(
        sliding_window=3,
        rotary_embedding=_rotary(),
        rotary_fraction=0.5,
    ),
    "alibi": dict(use_alibi=True),
}
# The family blocks of docs/attention-options.md, at small sizes.
FAMILIES = {
    "llama": dict(
        num_key_value_heads=2,
        normalization="rms_norm",
        use_bias=False,
        use_gated_feedforward=True,
        activation="silu",
        rotary_embedding=_rotary(max_wavelength=500000),
    ),
    "gemma2": dict(
        key_dim=8,
        num_key_value_heads=2,
        normalization="rms_norm",
        use_post_attention_norm=True,
        use_post_feedforward_norm=True,
        use_bias=False,
        use_gated_feedforward=True,
        activation="keras_mha>gelu_approximate",
        attention_logit_soft_cap=50.0,
        attention_scale=(D // HEADS) ** -0.5,
        sliding_window=4,
        rotary_embedding=_rotary(),
        layer_norm_epsilon=1e-6,
    ),
    "gemma3": dict(
        key_dim=8,
        num_key_value_heads=2,
        normalization="rms_norm",
        use_post_attention_norm=True,
        use_post_feedforward_norm=True,
        use_bias=False,
        use_gated_feedforward=True,
        activation="keras_mha>gelu_approximate",
        use_query_key_norm=True,
        sliding_window=4,
        rotary_embedding=_rotary(),
        layer_norm_epsilon=1e-6,
    ),
    "qwen3": dict(
        num_key_value_heads=2,
        normalization="rms_norm",
        use_bias=False,
        use_gated_feedforward=True,
        activation="silu",
        use_query_key_norm=True,
        rotary_embedding=_rotary(max_wavelength=1000000),
        layer_norm_epsilon=1e-6,
    ),
    "gpt_neox": dict(
        parallel_residual=True,
        activation="gelu",
        rotary_embedding=_rotary(),
        rotary_fraction=0.5,
    ),
    "falcon": dict(
        parallel_residual=True,
        shared_input_norm=True,
        use_bias=False,
        activation="gelu",
        num_key_value_heads=1,
        rotary_embedding=_rotary(),
    ),
}


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, D)).astype("float32")
    source = rng.normal(size=(B, S, SOURCE_D)).astype("float32")
    return x, source


def _randomize_norms(block):
    """Every norm's weights away from their initial ones and zeros."""
    rng = np.random.default_rng(7)
    for layer in block._flatten_layers():
        if isinstance(
            layer,
            (keras.layers.LayerNormalization, keras.layers.RMSNormalization),
        ):
            for weight in layer.weights:
                weight.assign(rng.uniform(0.5, 1.5, weight.shape))


def _block(cls, options, path="explicit", **kwargs):
    options = {"norm_first": True, **options, **ATTENTION_PATHS[path], **kwargs}
    return cls(HEADS, intermediate_dim=FFN, **options)


def _skip_fused_on_tensorflow(path):
    if path == "fused" and BACKEND == "tensorflow":
        pytest.skip("TensorFlow has no fused attention kernel")


def _check(block, x, source=None, padding_mask=None):
    call = dict(padding_mask=padding_mask)
    if isinstance(block, keras_mha.TransformerDecoderBlock):
        call = dict(decoder_padding_mask=padding_mask)
        if source is not None:
            call["encoder_sequence"] = source
    outputs = block(x, **call)
    _randomize_norms(block)
    outputs = block(x, **call)
    expected = transformer_block(
        block, x, block.activation.__name__, source, padding_mask
    )
    np.testing.assert_allclose(
        to_numpy(outputs), expected, rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("path", list(ATTENTION_PATHS))
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize(
    "kind", ["encoder", "decoder", "cross"], ids=["encoder", "decoder", "cross"]
)
def test_option_matches_numpy_reference(kind, option, path):
    _skip_fused_on_tensorflow(path)
    x, source = _inputs()
    padding_mask = np.arange(T)[None] < np.array([T, 4])[:, None]
    if kind == "encoder":
        block = _block(keras_mha.TransformerEncoderBlock, OPTIONS[option], path)
        _check(block, x, padding_mask=padding_mask)
    else:
        block = _block(keras_mha.TransformerDecoderBlock, OPTIONS[option], path)
        _check(
            block,
            x,
            source if kind == "cross" else None,
            padding_mask=padding_mask,
        )


@pytest.mark.parametrize("path", list(ATTENTION_PATHS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_block_matches_numpy_reference(family, path):
    _skip_fused_on_tensorflow(path)
    x, _ = _inputs(1)
    block = _block(keras_mha.TransformerDecoderBlock, FAMILIES[family], path)
    _check(block, x)


ALL = {
    **OPTIONS["attention_options"],
    **OPTIONS["positions"],
    **OPTIONS["post_norms"],
    **OPTIONS["swiglu"],
    "key_dim": 4,
    "normalization": "rms_norm",
    "use_alibi": True,
    "alibi_slope_scale": 0.5,
    "use_feedforward_bias": False,
}


@pytest.mark.parametrize("path", list(ATTENTION_PATHS))
@pytest.mark.parametrize("options", ["all", "parallel"])
@pytest.mark.parametrize("cross", [False, True], ids=["decoder", "cross"])
def test_cached_decoding_equals_the_full_call(cross, options, path):
    _skip_fused_on_tensorflow(path)
    options = ALL if options == "all" else {**ALL, **OPTIONS["parallel"]}
    block = _block(keras_mha.TransformerDecoderBlock, options, path)
    x, source = _inputs(2)
    source = source if cross else None
    full = to_numpy(block(x, source))
    _randomize_norms(block)
    full = to_numpy(block(x, source))
    cache = block.get_initial_cache(B, T)
    cross_cache = block.compute_cross_attention_cache(source) if cross else None
    steps, index = [], 0
    for length in (2, 1, 2, 1):
        results = block(
            x[:, index : index + length],
            self_attention_cache=cache,
            self_attention_cache_update_index=index,
            cross_attention_cache=cross_cache,
        )
        steps.append(to_numpy(results[0]))
        cache = results[1]
        index += length
    np.testing.assert_allclose(
        np.concatenate(steps, axis=1), full, rtol=1e-4, atol=1e-4
    )


def _num_weights(block_cls, options, cross):
    """Counted from the options, to compare with the block's."""
    bias = options.get("use_bias", True)
    ffn_bias = options.get("use_feedforward_bias")
    ffn_bias = bias if ffn_bias is None else ffn_bias
    output_bias = options.get("use_output_bias")
    output_bias = bias if output_bias is None else output_bias
    norm = 1 if options.get("normalization") == "rms_norm" else 2
    qk_norms = 2 if options.get("use_query_key_norm") else 0
    gate = (1 + bias) if options.get("use_gate") else 0
    # Input projections with their biases, the output kernel and bias.
    attention = (1 + bias) + 1 + output_bias + gate + qk_norms
    cross_attention = 3 * (1 + bias) + 1 + output_bias + gate + qk_norms
    ffn = (3 if options.get("use_gated_feedforward") else 2) * (1 + ffn_bias)
    num_norms = 2 + cross
    if options.get("shared_input_norm"):
        num_norms -= 1 + cross
    post = options.get("use_post_attention_norm", False) * (1 + cross)
    post += options.get("use_post_feedforward_norm", False)
    return (
        attention
        + ffn
        + norm * (num_norms + post)
        + (cross_attention if cross else 0)
    )


@pytest.mark.parametrize(
    "family", ["llama", "gemma2", "gemma3", "qwen3", "gpt_neox", "falcon"]
)
def test_family_block_contract(family, tmp_path):
    """Config round trip, `.keras` reload in safe mode, mixed precision."""
    options = {"norm_first": True, **FAMILIES[family]}
    run_layer_test(
        keras_mha.TransformerDecoderBlock,
        {"num_heads": HEADS, "intermediate_dim": FFN, **options},
        {"decoder_sequence": _inputs()[0]},
        expected_output_shape=(B, T, D),
        expected_num_trainable_weights=_num_weights(
            keras_mha.TransformerDecoderBlock, options, False
        ),
        tmp_path=tmp_path,
    )


def test_encoder_decoder_contract_with_every_option(tmp_path):
    options = {"norm_first": True, **ALL}
    x, source = _inputs()
    run_layer_test(
        keras_mha.TransformerDecoderBlock,
        {"num_heads": HEADS, "intermediate_dim": FFN, **options},
        {"decoder_sequence": x, "encoder_sequence": source},
        expected_output_shape=(B, T, D),
        expected_num_trainable_weights=_num_weights(
            keras_mha.TransformerDecoderBlock, options, True
        ),
        call_kwargs={"return_attention_scores": True},
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("family", ["gemma2", "qwen3", "gpt_neox"])
def test_mixed_precision_is_close_to_float32(family, policy):
    x, _ = _inputs(3)
    reference = _block(keras_mha.TransformerDecoderBlock, FAMILIES[family])
    expected = to_numpy(reference(x))
    block = _block(
        keras_mha.TransformerDecoderBlock, FAMILIES[family], dtype=policy
    )
    block.build(x.shape)
    block.set_weights(reference.get_weights())
    outputs = to_numpy(keras.ops.cast(block(x), "float32"))
    assert np.all(np.isfinite(outputs))
    np.testing.assert_allclose(outputs, expected, rtol=0.05, atol=0.1)


def test_every_attention_option_reaches_both_attention_layers():
    """Positional options reach the self-attention only."""
    block = _block(keras_mha.TransformerDecoderBlock, ALL)
    x, source = _inputs()
    block(x, source)
    for name, value in ALL.items():
        if hasattr(block.self_attention, name) and name != "rotary_embedding":
            assert getattr(block.self_attention, name) == value, name
    cross = block.cross_attention
    assert cross.use_query_key_norm and cross.num_key_value_heads == 2
    assert cross.attention_logit_soft_cap == 3.0 and cross.use_gate
    assert cross.rotary_embedding is None and cross.sliding_window is None
    assert not cross.use_alibi and cross.alibi_slope_scale == 1.0
    assert cross.query_key_norm_epsilon == block.layer_norm_epsilon


def test_the_block_of_the_brief_builds():
    block = keras_mha.TransformerDecoderBlock(
        num_heads=4,
        intermediate_dim=32,
        num_key_value_heads=2,
        sliding_window=8,
        use_gate=True,
        rotary_embedding=_rotary(),
    )
    x = np.ones((2, 5, 16), "float32")
    assert tuple(block(x).shape) == (2, 5, 16)
    assert tuple(block.get_initial_cache(2, 9).shape) == (2, 2, 2, 9, 4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_key_value_heads=3), "num_key_value_heads=3 must divide"),
        (dict(key_dim=0), "key_dim"),
        (dict(sliding_window=-1), "sliding_window"),
        (dict(attention_logit_soft_cap=0.0), "attention_logit_soft_cap"),
        (dict(rotary_fraction=0.5), "rotary_fraction"),
        (dict(normalization="batch_norm"), "normalization"),
        (dict(use_gated_feedforward=1), "use_gated_feedforward"),
        (dict(use_feedforward_bias="yes"), "use_feedforward_bias"),
        (dict(use_post_attention_norm=None), "use_post_attention_norm"),
        (dict(use_post_feedforward_norm=0), "use_post_feedforward_norm"),
        (dict(parallel_residual=True), "needs norm_first=True"),
        (dict(shared_input_norm=True, norm_first=True), "parallel_residual"),
        (dict(activation="swish_glu"), "activation"),
    ],
    ids=[
        "kv_heads",
        "key_dim",
        "window",
        "soft_cap",
        "fraction",
        "normalization",
        "gated",
        "ffn_bias",
        "post_attention_norm",
        "post_ffn_norm",
        "parallel_post_ln",
        "shared_without_parallel",
        "activation",
    ],
)
@pytest.mark.parametrize(
    "block_cls",
    [keras_mha.TransformerEncoderBlock, keras_mha.TransformerDecoderBlock],
    ids=["encoder", "decoder"],
)
def test_bad_options_name_the_block_argument(block_cls, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        block_cls(HEADS, intermediate_dim=FFN, **kwargs)


DOCS = os.path.join(os.path.dirname(__file__), "..", "docs")


def _page():
    with open(os.path.join(DOCS, "attention-options.md")) as f:
        return f.read()


def test_the_documented_snippets_run():
    """The layer, family blocks and subclass of docs/attention-options.md."""
    blocks = re.findall(r"```python\n(.*?)```", _page(), re.DOTALL)
    assert len(blocks) == 4
    namespace = {}
    for code in blocks:
        exec(compile(code, "attention-options.md", "exec"), namespace)
    for name in ("llama", "gemma2", "gemma3", "qwen3", "gpt_neox"):
        assert isinstance(namespace[name], keras_mha.TransformerDecoderBlock)
    assert namespace["gemma2"].self_attention.attention_logit_soft_cap == 50
    assert namespace["gpt_neox"].parallel_residual


def test_the_page_lists_every_block_option():
    page = _page()
    signature = inspect.signature(keras_mha.TransformerDecoderBlock.__init__)
    names = [n for n in signature.parameters if n not in ("self", "kwargs")]
    missing = [n for n in names if f"`{n}`" not in page]
    assert not missing, missing


@pytest.mark.parametrize(
    "block_cls",
    [keras_mha.TransformerEncoderBlock, keras_mha.TransformerDecoderBlock],
)
def test_rms_and_post_norms_keep_the_padding_mask(block_cls):
    """The norms pass the mask on, without Keras's "destroy the mask"
    warning: a masked pooling after the block averages real tokens only."""
    options = dict(
        normalization="rms_norm",
        use_post_attention_norm=True,
        use_post_feedforward_norm=True,
    )
    ids = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(30, D, mask_zero=True)(ids)
    block = _block(block_cls, options)
    hidden = block(x)
    pooled = keras.layers.GlobalAveragePooling1D()(hidden)
    model = keras.Model(ids, [hidden, pooled])
    batch = np.array([[3, 4, 0, 0], [5, 0, 0, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        hidden, pooled = (to_numpy(y) for y in model(batch))
    expected = [hidden[0, :2].mean(0), hidden[1, :1].mean(0)]
    np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)
