import keras
import numpy as np
import pytest
from keras import ops

import keras_mha
from tests.layer_test_case import decode_in_steps
from tests.layer_test_case import run_layer_test
from tests.layer_test_case import to_numpy

BATCH, TARGET, SOURCE, WIDTH, SOURCE_WIDTH, HEADS, FFN = 2, 5, 4, 12, 8, 3, 7


def _target(seed=0, length=TARGET):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(BATCH, length, WIDTH)).astype("float32")


def _source(seed=1, length=SOURCE):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(BATCH, length, SOURCE_WIDTH)).astype("float32")


def _block(**kwargs):
    return keras_mha.TransformerDecoderBlock(
        HEADS, intermediate_dim=FFN, **kwargs
    )


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


def test_layer_conventions_of_every_output(tmp_path):
    """Outputs, self- and cross-attention scores alike."""
    run_layer_test(
        keras_mha.TransformerDecoderBlock,
        {"num_heads": HEADS, "intermediate_dim": FFN},
        {"decoder_sequence": _target(), "encoder_sequence": _source()},
        expected_output_shape=(BATCH, TARGET, WIDTH),
        expected_num_trainable_weights=22,
        call_kwargs={"return_attention_scores": True},
        tmp_path=tmp_path,
    )


def test_add_and_norm_structure():
    block = _block(bias_initializer="random_normal")
    x, source = (
        ops.convert_to_tensor(_target()),
        ops.convert_to_tensor(_source()),
    )
    out = to_numpy(block(x, source))
    h = block.self_attention_norm(x + block.self_attention(x))
    h = block.cross_attention_norm(h + block.cross_attention(h, source))
    ffn = block.ffn_output(block.ffn_intermediate(h))
    np.testing.assert_allclose(
        out, to_numpy(block.ffn_norm(h + ffn)), atol=1e-5
    )


@pytest.mark.parametrize(
    "with_encoder", [True, False], ids=["cross", "decoder_only"]
)
def test_causal_future_tokens_do_not_change_the_past(with_encoder):
    block = _block()
    source = (_source(),) if with_encoder else ()
    x = _target()
    changed = x.copy()
    changed[:, 3:] = _target(seed=7)[:, 3:]
    before, after = (
        to_numpy(block(x, *source)),
        to_numpy(block(changed, *source)),
    )
    np.testing.assert_allclose(after[:, :3], before[:, :3], atol=1e-5)
    assert not np.allclose(after[:, 3:], before[:, 3:])


def test_encoder_padding_is_invisible():
    block = _block()
    short = _source(length=2)
    padded = np.concatenate([short, _source(seed=9, length=3)], axis=1)
    mask = np.zeros((BATCH, 5), bool)
    mask[:, :2] = True
    np.testing.assert_allclose(
        to_numpy(block(_target(), padded, encoder_padding_mask=mask)),
        to_numpy(block(_target(), short)),
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
        to_numpy(model([targets, sources])), to_numpy(explicit), atol=1e-6
    )
    # The unpadded first pair gives the same outputs at its real positions.
    unpadded = block(
        embed_target(targets[:1, :3]), embed_source(sources[:1, :2])
    )
    np.testing.assert_allclose(
        to_numpy(model([targets, sources]))[:1, :3],
        to_numpy(unpadded),
        atol=1e-5,
    )


def test_attention_scores():
    block = _block()
    _out, self_scores, cross_scores = block(
        _target(), _source(), return_attention_scores=True
    )
    assert tuple(self_scores.shape) == (BATCH, HEADS, TARGET, TARGET)
    assert tuple(cross_scores.shape) == (BATCH, HEADS, TARGET, SOURCE)
    assert np.all(np.triu(to_numpy(self_scores)[0, 0], k=1) == 0)
    symbolic = block(
        keras.Input((None, WIDTH)),
        keras.Input((None, SOURCE_WIDTH)),
        return_attention_scores=True,
    )
    assert [tuple(s.shape) for s in symbolic] == [
        (None, None, WIDTH),
        (None, HEADS, None, None),
        (None, HEADS, None, None),
    ]


def test_decoder_attention_mask_combines_with_causal():
    block = _block()
    mask = np.ones((BATCH, TARGET, TARGET), bool)
    mask[:, :, 0] = False  # nobody may look at token 0
    _, scores = block(
        _target(), decoder_attention_mask=mask, return_attention_scores=True
    )
    scores = to_numpy(scores)
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
    with pytest.raises(
        ValueError,
        match=r"encoder_padding_mask` expected shape \(2, 4\).*\(2, 6\)",
    ):
        _block()(
            _target(), _source(), encoder_padding_mask=np.ones((BATCH, 6), bool)
        )


def _cached_decode(block, target, source, steps, **kwargs):
    """Feeds `target` in chunks of `steps` lengths through the cached block."""
    cross = {}
    if source is not None:
        cross["cross_attention_cache"] = block.compute_cross_attention_cache(
            source
        )

    def step(chunk, index, cache):
        out, cache, *cross_cache = block(
            chunk,
            self_attention_cache=cache,
            self_attention_cache_update_index=index,
            **cross,
            **kwargs,
        )
        if cross_cache:
            np.testing.assert_array_equal(
                to_numpy(cross_cache[0]),
                to_numpy(cross["cross_attention_cache"]),
            )
        return out, cache

    cache = block.get_initial_cache(BATCH, target.shape[1])
    return decode_in_steps(step, target, steps, cache)[0]


@pytest.mark.parametrize(
    "steps", [(1,) * TARGET, (3, 1, 1)], ids=["token_by_token", "prompt"]
)
@pytest.mark.parametrize(
    "with_encoder", [True, False], ids=["cross", "decoder_only"]
)
@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
def test_cached_decoding_equals_the_full_sequence(
    steps, with_encoder, norm_first
):
    block = _block(norm_first=norm_first, bias_initializer="random_normal")
    target = _target()
    source = _source() if with_encoder else None
    kwargs = {}
    if with_encoder:  # Padding in the source of the first pair.
        kwargs["encoder_padding_mask"] = np.array(
            [[1, 1, 0, 0], [1, 1, 1, 1]], bool
        )
    full = block(target, source, **kwargs)
    np.testing.assert_allclose(
        _cached_decode(block, target, source, steps, **kwargs),
        to_numpy(full),
        atol=1e-5,
    )


def test_first_cached_step_computes_the_cross_attention_cache():
    block = _block()
    target, source = _target(), _source()
    full = to_numpy(block(target, source))
    cache = block.get_initial_cache(BATCH, TARGET)
    out, cache, cross_cache = block(
        target[:, :2],
        source,
        self_attention_cache=cache,
        self_attention_cache_update_index=0,
    )
    np.testing.assert_allclose(
        to_numpy(cross_cache),
        to_numpy(block.compute_cross_attention_cache(source)),
        atol=1e-6,
    )
    out, cache, _ = block(
        target[:, 2:],
        self_attention_cache=cache,
        self_attention_cache_update_index=2,
        cross_attention_cache=cross_cache,
    )
    np.testing.assert_allclose(to_numpy(out), full[:, 2:], atol=1e-5)


def test_cached_call_returns_scores_before_the_caches():
    block = _block()
    target, source = _target(), _source()
    _, full_self, full_cross = block(
        target, source, return_attention_scores=True
    )
    _out, self_scores, cross_scores, cache, cross_cache = block(
        target[:, :1],
        self_attention_cache=block.get_initial_cache(BATCH, TARGET),
        self_attention_cache_update_index=0,
        cross_attention_cache=block.compute_cross_attention_cache(source),
        return_attention_scores=True,
    )
    assert tuple(self_scores.shape) == (BATCH, HEADS, 1, TARGET)
    assert tuple(cross_scores.shape) == (BATCH, HEADS, 1, SOURCE)
    np.testing.assert_allclose(
        to_numpy(self_scores), to_numpy(full_self)[:, :, :1], atol=1e-5
    )
    np.testing.assert_allclose(
        to_numpy(cross_scores), to_numpy(full_cross)[:, :, :1], atol=1e-5
    )
    assert tuple(cache.shape) == (BATCH, 2, HEADS, TARGET, WIDTH // HEADS)
    assert tuple(cross_cache.shape) == (BATCH, 2, HEADS, SOURCE, WIDTH // HEADS)


def test_compiled_greedy_style_loop():
    from tests.test_multi_head_self_attention import compiled

    block = _block(norm_first=True)
    target, source = _target(), _source()
    expected = to_numpy(block(target, source))

    @compiled
    def decode(target, source):
        def body(i, state):
            outputs, cache = state
            token = ops.slice(target, (0, i, 0), (BATCH, 1, WIDTH))
            out, cache, _ = block(
                token,
                self_attention_cache=cache,
                self_attention_cache_update_index=i,
                cross_attention_cache=cross_cache,
            )
            return ops.slice_update(outputs, (0, i, 0), out), cache

        cross_cache = block.compute_cross_attention_cache(source)
        state = (ops.zeros_like(target), block.get_initial_cache(BATCH, TARGET))
        return ops.fori_loop(0, TARGET, body, state)[0]

    np.testing.assert_allclose(
        to_numpy(
            decode(ops.convert_to_tensor(target), ops.convert_to_tensor(source))
        ),
        expected,
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "with_encoder", [True, False], ids=["cross", "decoder_only"]
)
def test_symbolic_cached_call(with_encoder):
    block = _block()
    block(_target(), _source() if with_encoder else None)
    head_dim = WIDTH // HEADS
    cache = keras.Input((2, HEADS, 9, head_dim), batch_size=BATCH)
    cross = {}
    if with_encoder:
        cross["cross_attention_cache"] = keras.Input(
            (2, HEADS, 6, head_dim), batch_size=BATCH
        )
    results = block(
        keras.Input((1, WIDTH), batch_size=BATCH),
        self_attention_cache=cache,
        self_attention_cache_update_index=0,
        return_attention_scores=True,
        **cross,
    )
    expected = [(BATCH, 1, WIDTH), (BATCH, HEADS, 1, 9)]
    if with_encoder:
        expected.append((BATCH, HEADS, 1, 6))
    expected.append(tuple(cache.shape))
    if with_encoder:
        expected.append((BATCH, 2, HEADS, 6, head_dim))
    assert [tuple(r.shape) for r in results] == expected
    # Without a cache, the outputs alone (config round trip unaffected).
    assert tuple(
        block(
            keras.Input((None, WIDTH)),
            *([keras.Input((None, SOURCE_WIDTH))] if with_encoder else []),
        ).shape
    ) == (None, None, WIDTH)
    assert (
        keras_mha.TransformerDecoderBlock.from_config(
            block.get_config()
        ).get_config()
        == block.get_config()
    )


def test_bad_caches():
    decoder_only = _block()
    with pytest.raises(ValueError, match="built=False"):
        decoder_only.get_initial_cache(BATCH, TARGET)
    decoder_only(_target())
    with pytest.raises(ValueError, match="without cross-attention"):
        decoder_only.compute_cross_attention_cache(_source())
    cache = decoder_only.get_initial_cache(BATCH, TARGET)
    with pytest.raises(ValueError, match="cache_update_index=None"):
        decoder_only(_target(), self_attention_cache=cache)
    with pytest.raises(ValueError, match="cross_attention_cache"):
        decoder_only(
            _target()[:, :1],
            self_attention_cache=cache,
            self_attention_cache_update_index=0,
            cross_attention_cache=np.zeros((BATCH, 2, HEADS, 4, 4), "float32"),
        )
    # With a cache the mask's keys are the cache's positions (5), not 3.
    with pytest.raises(
        ValueError, match=r"\(2, 3, 1, 5\).*decoder_attention_mask.shape"
    ):
        decoder_only(
            _target()[:, :1],
            self_attention_cache=cache,
            self_attention_cache_update_index=0,
            decoder_attention_mask=np.ones((BATCH, 1, 3), bool),
        )
    block = _block()
    block(_target(), _source())
    with pytest.raises(ValueError, match=r"cache.shape=\(2, 2, 3, 4\)"):
        block(
            _target(), cross_attention_cache=np.zeros((2, 2, 3, 4), "float32")
        )
