import keras
import numpy as np
import pytest
from keras import ops

import keras_mha
from tests.layer_test_case import run_layer_test

BATCH, TARGET, SOURCE, WIDTH, SOURCE_WIDTH, HEADS, FFN = 2, 5, 4, 12, 8, 3, 7


def _target(seed=0, length=TARGET):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(BATCH, length, WIDTH)).astype("float32")


def _source(seed=1, length=SOURCE):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(BATCH, length, SOURCE_WIDTH)).astype("float32")


def _np(x):
    return ops.convert_to_numpy(x)


def _block(**kwargs):
    return keras_mha.TransformerDecoderBlock(HEADS, FFN, **kwargs)


@pytest.mark.parametrize(
    "inputs, num_weights",
    [
        ({"decoder_sequence": _target(), "encoder_sequence": _source()}, 22),
        ({"decoder_sequence": _target()}, 12),
    ],
    ids=["encoder_decoder", "decoder_only"],
)
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
def test_layer_conventions(inputs, num_weights, norm_first, tmp_path):
    run_layer_test(
        keras_mha.TransformerDecoderBlock,
        {"num_heads": HEADS, "intermediate_dim": FFN, "norm_first": norm_first},
        inputs,
        expected_output_shape=(BATCH, TARGET, WIDTH),
        expected_num_trainable_weights=num_weights,
        tmp_path=tmp_path,
    )


def test_add_and_norm_structure():
    block = _block(bias_initializer="random_normal")
    x, source = _target(), _source()
    out = _np(block(x, source))
    h = block.self_attention_norm(x + block.self_attention(x))
    h = block.cross_attention_norm(h + block.cross_attention(h, source))
    ffn = block.ffn_output(block.ffn_intermediate(h))
    np.testing.assert_allclose(out, _np(block.ffn_norm(h + ffn)), atol=1e-5)


@pytest.mark.parametrize("with_encoder", [True, False], ids=["cross", "decoder_only"])
def test_causal_future_tokens_do_not_change_the_past(with_encoder):
    block = _block()
    source = (_source(),) if with_encoder else ()
    x = _target()
    changed = x.copy()
    changed[:, 3:] = _target(seed=7)[:, 3:]
    before, after = _np(block(x, *source)), _np(block(changed, *source))
    np.testing.assert_allclose(after[:, :3], before[:, :3], atol=1e-5)
    assert not np.allclose(after[:, 3:], before[:, 3:])


def test_encoder_padding_is_invisible():
    block = _block()
    short = _source(length=2)
    padded = np.concatenate([short, _source(seed=9, length=3)], axis=1)
    mask = np.zeros((BATCH, 5), bool)
    mask[:, :2] = True
    np.testing.assert_allclose(
        _np(block(_target(), padded, encoder_padding_mask=mask)),
        _np(block(_target(), short)),
        atol=1e-5,
    )


def test_implicit_masks_of_both_inputs():
    block = _block()
    embed_target = keras.layers.Embedding(10, WIDTH, mask_zero=True)
    embed_source = keras.layers.Embedding(10, SOURCE_WIDTH, mask_zero=True)
    target_ids = keras.Input((None,), dtype="int32")
    source_ids = keras.Input((None,), dtype="int32")
    out = block(embed_target(target_ids), embed_source(source_ids))
    assert out._keras_mask is not None
    model = keras.Model([target_ids, source_ids], out)
    targets = np.array([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]])
    sources = np.array([[1, 2, 0, 0], [3, 4, 5, 6]])
    explicit = block(
        embed_target(targets),
        embed_source(sources),
        decoder_padding_mask=targets != 0,
        encoder_padding_mask=sources != 0,
    )
    np.testing.assert_allclose(
        _np(model([targets, sources])), _np(explicit), atol=1e-6
    )
    # The unpadded first pair gives the same outputs at its real positions.
    unpadded = block(embed_target(targets[:1, :3]), embed_source(sources[:1, :2]))
    np.testing.assert_allclose(
        _np(model([targets, sources]))[:1, :3], _np(unpadded), atol=1e-5
    )


def test_attention_scores():
    block = _block()
    out, self_scores, cross_scores = block(
        _target(), _source(), return_attention_scores=True
    )
    assert tuple(self_scores.shape) == (BATCH, HEADS, TARGET, TARGET)
    assert tuple(cross_scores.shape) == (BATCH, HEADS, TARGET, SOURCE)
    assert np.all(np.triu(_np(self_scores)[0, 0], k=1) == 0)
    symbolic = block(
        keras.Input((None, WIDTH)),
        keras.Input((None, SOURCE_WIDTH)),
        return_attention_scores=True,
    )
    assert [tuple(s.shape) for s in symbolic] == [
        (None, None, WIDTH), (None, HEADS, None, None), (None, HEADS, None, None)
    ]


def test_decoder_attention_mask_combines_with_causal():
    block = _block()
    mask = np.ones((BATCH, TARGET, TARGET), bool)
    mask[:, :, 0] = False  # nobody may look at token 0
    _, scores = block(
        _target(), decoder_attention_mask=mask, return_attention_scores=True
    )
    scores = _np(scores)
    assert np.all(scores[:, :, :, 0] == 0)
    assert np.all(np.triu(scores[0, 0], k=1) == 0)
    np.testing.assert_array_equal(scores[:, :, 0], 0.0)  # row 0 sees nothing


def test_encoder_sequence_must_match_how_the_block_was_built():
    block = _block()
    block(_target(), _source())
    with pytest.raises(ValueError, match="encoder_sequence"):
        block(_target())
    decoder_only = _block()
    decoder_only(_target())
    with pytest.raises(ValueError, match="encoder_sequence"):
        decoder_only(_target(), _source())


def test_bad_inputs():
    block = _block()
    with pytest.raises(ValueError, match=r"rank-3.*\(2, 12\)"):
        block(np.zeros((BATCH, WIDTH), "float32"))
    with pytest.raises(TypeError, match="decoder_sequence.*int32"):
        _block()(np.zeros((BATCH, TARGET, WIDTH), "int32"))
    with pytest.raises(ValueError, match=r"encoder_padding_mask` expected shape \(2, 4\).*\(2, 6\)"):
        _block()(
            _target(), _source(), encoder_padding_mask=np.ones((BATCH, 6), bool)
        )
