"""`attention_maps`: every attention layer's maps from one forward pass."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_mha
from keras_mha import TransformerCausalLM
from keras_mha import _capture
from keras_mha.seq2seq.models import TransformerSeq2Seq
from keras_mha.visualize import attention_maps
from keras_mha.visualize import merge_subwords
from keras_mha.visualize import word_groups
from tests import reference

# Distinct sizes, so swapped axes cannot pass.
BATCH, SOURCE, TARGET, WIDTH, HEADS = 2, 7, 5, 12, 3


def seq2seq_inputs():
    source = np.array([[4, 5, 6, 7, 8, 0, 0], [9, 8, 7, 6, 5, 4, 3]], "int32")
    target = np.array([[2, 10, 11, 12, 13], [2, 14, 15, 0, 0]], "int32")
    return source, target


@pytest.fixture(scope="module")
def seq2seq():
    return TransformerSeq2Seq(
        30, 40, hidden_dim=WIDTH, num_heads=HEADS, num_layers=2, dropout=0.0
    )


def test_seq2seq_maps_equal_each_blocks_own_scores(seq2seq):
    source, target = seq2seq_inputs()
    maps = attention_maps(seq2seq, [source, target])
    assert list(maps) == [
        "encoder_block_0/self_attention",
        "encoder_block_1/self_attention",
        "decoder_block_0/self_attention",
        "decoder_block_0/cross_attention",
        "decoder_block_1/self_attention",
        "decoder_block_1/cross_attention",
    ]
    # The same blocks called by hand, each returning its scores.
    x = seq2seq.source_position(
        seq2seq.source_scale(seq2seq.source_embedding(source))
    )
    for i, block in enumerate(seq2seq.encoder_blocks):
        x, scores = block(x, return_attention_scores=True)
        np.testing.assert_allclose(
            maps[f"encoder_block_{i}/self_attention"],
            ops.convert_to_numpy(scores),
            atol=1e-6,
        )
    source_mask = ops.not_equal(source, 0)
    y = seq2seq._embed(target)
    for i, block in enumerate(seq2seq.decoder_blocks):
        y, self_scores, cross_scores = block(
            y,
            x,
            encoder_padding_mask=source_mask,
            return_attention_scores=True,
        )
        for kind, scores in (("self", self_scores), ("cross", cross_scores)):
            np.testing.assert_allclose(
                maps[f"decoder_block_{i}/{kind}_attention"],
                ops.convert_to_numpy(scores),
                atol=1e-6,
            )


def test_rows_sum_to_one_and_masked_keys_are_zero(seq2seq):
    source, target = seq2seq_inputs()
    maps = attention_maps(seq2seq, [source, target])
    shapes = {
        "encoder": (BATCH, HEADS, SOURCE, SOURCE),
        "self": (BATCH, HEADS, TARGET, TARGET),
        "cross": (BATCH, HEADS, TARGET, SOURCE),
    }
    real_source, real_target = source != 0, target != 0
    for path, scores in maps.items():
        kind = "encoder" if path.startswith("encoder") else path.split("/")[1]
        kind = kind.removesuffix("_attention")
        assert scores.shape == shapes[kind] and scores.dtype == np.float32
        queries = real_source if kind == "encoder" else real_target
        keys = real_target if kind == "self" else real_source
        sums = scores.sum(-1)  # (b, n, t)
        np.testing.assert_allclose(
            sums, np.broadcast_to(queries[:, None], sums.shape), atol=1e-5
        )
        assert np.all(
            scores[np.broadcast_to(~keys[:, None, None], scores.shape)] == 0
        )
        if kind == "self":  # Causal: nothing above the diagonal.
            assert np.all(np.triu(scores, k=1) == 0)


def test_capture_leaves_outputs_unchanged(seq2seq):
    source, target = seq2seq_inputs()
    expected = ops.convert_to_numpy(seq2seq([source, target], training=False))
    with _capture.recording() as recorder:
        outputs = seq2seq([source, target], training=False)
    np.testing.assert_allclose(
        ops.convert_to_numpy(outputs), expected, atol=1e-5
    )
    assert len(recorder.records) == 6
    assert _capture.active_recorder() is None


class CrossAttender(keras.Model):
    """A subclassed model: self-attention of the queries, then across."""

    def __init__(self):
        super().__init__()
        self.mix = keras_mha.MultiHeadSelfAttention(HEADS, name="mix")
        self.across = keras_mha.MultiHeadAttention(HEADS, name="across")

    def call(self, inputs):
        query, memory = inputs
        return self.across(self.mix(query), memory)


def test_subclassed_model_against_the_numpy_reference():
    model = CrossAttender()
    query = keras.random.normal((BATCH, TARGET, WIDTH), seed=1)
    memory = keras.random.normal((BATCH, SOURCE, WIDTH), seed=2)
    maps = attention_maps(model, (query, memory))
    assert list(maps) == ["cross_attender/mix", "cross_attender/across"]
    mixed = model.mix(query)
    _, expected = reference.attention(
        ops.convert_to_numpy(mixed),
        ops.convert_to_numpy(memory),
        *reference.weights_of(model.across),
    )
    np.testing.assert_allclose(
        maps["cross_attender/across"], expected, atol=1e-5
    )
    assert maps["cross_attender/mix"].shape == (BATCH, HEADS, TARGET, TARGET)


@pytest.mark.parametrize(
    "options",
    [dict(attention_chunk_size=2), dict(flash_attention=False)],
    ids=["chunked_layer", "fused_kernel_off"],
)
def test_every_attention_path_gives_its_maps(options):
    """A chunked or fused layer still returns full maps while recording."""
    layer = keras_mha.MultiHeadSelfAttention(HEADS, name="attention", **options)
    model = keras.Sequential([keras.Input((SOURCE, WIDTH)), layer])
    x = keras.random.normal((BATCH, SOURCE, WIDTH), seed=3)
    (scores,) = attention_maps(model, x).values()
    _, expected = layer(x, return_attention_scores=True)
    np.testing.assert_allclose(
        scores, ops.convert_to_numpy(expected), atol=1e-6
    )


def test_a_layer_called_twice_keeps_both_maps():
    layer = keras_mha.MultiHeadSelfAttention(HEADS, name="shared")
    inputs = keras.Input((SOURCE, WIDTH))
    model = keras.Model(inputs, layer(layer(inputs)))
    maps = attention_maps(model, keras.random.normal((1, SOURCE, WIDTH)))
    assert list(maps) == ["shared", "shared:1"]
    assert not np.allclose(maps["shared"], maps["shared:1"])


def test_decoder_only_model_is_causal():
    model = TransformerCausalLM(20, hidden_dim=WIDTH, num_heads=HEADS)
    maps = attention_maps(model, np.array([[1, 2, 3, 4, 5]], "int32"))
    assert len(maps) == 2
    for scores in maps.values():
        assert scores.shape == (1, HEADS, 5, 5)
        assert np.all(np.triu(scores, k=1) == 0)


def test_a_traced_model_is_refused():
    # A symbolic input: the layers run traced (as inside tf.function).
    block = keras_mha.TransformerEncoderBlock(HEADS, intermediate_dim=7)
    with pytest.raises(ValueError, match="only inside a traced function"):
        attention_maps(block, keras.KerasTensor((1, SOURCE, WIDTH)))


def test_a_model_without_attention_is_refused():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="ran no attention layer"):
        attention_maps(model, np.ones((1, 3)))


@pytest.mark.parametrize(
    "tokens, words",
    [
        (["▁The", "▁che", "f", "▁bake", "d", "."], ["The", "chef", "baked."]),
        (["[CLS]", "play", "##ing", "[SEP]"], ["[CLS]", "playing", "[SEP]"]),
        (["<s>", "▁z", "<0xC3>", "<0xA8>", "bre"], ["<s>", "zèbre"]),
        (["the", "cat"], ["the", "cat"]),
    ],
    ids=["sentencepiece", "wordpiece", "byte_pieces", "plain_words"],
)
def test_word_groups(tokens, words):
    assert [word for word, _ in word_groups(tokens)] == words
    indices = [i for _, group in word_groups(tokens) for i in group]
    assert indices == list(range(len(tokens)))


def test_merge_sums_key_pieces_and_averages_query_pieces():
    rng = np.random.default_rng(0)
    scores = rng.random((HEADS, 4, 5))
    scores /= scores.sum(-1, keepdims=True)
    queries = ["▁a", "▁b", "c", "d"]  # a | bcd
    keys = ["▁x", "y", "▁z", "▁u", "v"]  # xy | z | uv
    merged, query_words, key_words = merge_subwords(scores, queries, keys)
    assert (query_words, key_words) == (["a", "bcd"], ["xy", "z", "uv"])
    by_key = np.stack(  # (n, t, 3): keys summed per word
        [scores[..., :2].sum(-1), scores[..., 2], scores[..., 3:].sum(-1)], -1
    )
    expected = np.stack([by_key[:, 0], by_key[:, 1:].mean(1)], axis=1)
    np.testing.assert_allclose(merged, expected, rtol=1e-6)
    np.testing.assert_allclose(merged.sum(-1), 1.0, rtol=1e-6)


def test_merge_names_a_token_list_of_the_wrong_length():
    with pytest.raises(ValueError, match="len\\(key_tokens\\)=2"):
        merge_subwords(np.ones((2, 3, 4)), ["a"] * 3, ["b"] * 2)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_maps_are_float32_probabilities(policy):
    keras.config.set_dtype_policy(policy)
    block = keras_mha.TransformerEncoderBlock(HEADS, intermediate_dim=7)
    x = keras.random.normal((BATCH, SOURCE, WIDTH), seed=4)
    (scores,) = attention_maps(block, x).values()
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=2e-2)
