"""Cached decoding of `TransformerSeq2Seq` and `TransformerCausalLM`:
the declared cache gives the tokens of recomputing the prefix, compiled
gives the tokens of eager, and bad inputs fail clearly."""

import keras
import keras_hub
import numpy as np
import pytest

import keras_mha
from keras_mha import seq2seq
from tests.seq2seq_helpers import untrained_language_model
from tests.seq2seq_helpers import untrained_seq2seq

MAX_LENGTH = 9
# Sources of 3, 5 and 1 tokens, right-padded.
SOURCES = np.array([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12], [13, 0, 0, 0, 0]])
# Prompts of 1, 4 and 2 tokens, right-padded.
PROMPTS = np.array([[5, 0, 0, 0], [7, 8, 9, 10], [11, 12, 0, 0]])


@pytest.fixture(scope="module")
def translator_model():
    return untrained_seq2seq()


@pytest.fixture(scope="module")
def language_model():
    return untrained_language_model()


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def sampler_for(beams):
    return keras_hub.samplers.BeamSampler(beams) if beams > 1 else None


@pytest.mark.parametrize("beams", [1, 3], ids=["greedy", "beam"])
def test_decode_with_the_cache_equals_recomputing(translator_model, beams):
    results = {
        (use_cache, compile): numpy(
            seq2seq.decode(
                translator_model,
                SOURCES,
                MAX_LENGTH,
                2,
                3,
                sampler=sampler_for(beams),
                use_cache=use_cache,
                compile=compile,
            )
        )
        for use_cache in (True, False)
        for compile in (True, False)
    }
    first = results[(True, True)]
    for key, ids in results.items():
        np.testing.assert_array_equal(ids, first, err_msg=str(key))
    assert np.all(first[:, 0] == 2)
    assert np.all(first[:, 1:] != 0)  # never ends: the cache is used


@pytest.mark.parametrize("beams", [1, 2], ids=["greedy", "beam"])
def test_generate_with_the_cache_equals_recomputing(language_model, beams):
    results = [
        numpy(
            keras_mha.generate(
                language_model,
                PROMPTS,
                12,
                sampler=sampler_for(beams),
                use_cache=use_cache,
                compile=compile,
            )
        )
        for use_cache in (True, False)
        for compile in (True, False)
    ]
    for ids in results[1:]:
        np.testing.assert_array_equal(ids, results[0])
    # Each row keeps its own prompt and is continued right after it.
    for row, prompt in zip(results[0], PROMPTS):
        length = int(np.sum(prompt != 0))
        np.testing.assert_array_equal(row[:length], prompt[:length])
    assert np.all(results[0] != 0)  # padding is never emitted


def test_generate_stops_each_row_at_the_end_token(language_model):
    first = numpy(keras_mha.generate(language_model, PROMPTS, 12))
    end_id = int(first[0, 1])  # the token the first row emits first
    ids = numpy(keras_mha.generate(language_model, PROMPTS, 12, end_id=end_id))
    assert ids[0, 1] == end_id and np.all(ids[0, 2:] == 0)
    for row in ids:
        ends = np.flatnonzero(row == end_id)
        if ends.size:
            assert np.all(row[ends[0] + 1 :] == 0)


def test_numpy_integers_are_accepted(language_model, translator_model):
    ids = numpy(keras_mha.generate(language_model, [[5, 6]], np.int64(6)))
    assert ids.shape == (1, 6)
    ids = numpy(
        seq2seq.decode(
            translator_model, SOURCES, np.int32(5), np.int64(2), np.int64(3)
        )
    )
    assert ids.shape == (3, 5)


BAD_PROMPTS = [
    ("padding_row", [[0, 0], [1, 2]], 8, {}, r"rows \[0\] of padding only"),
    ("no_rows", np.zeros((0, 3), "int32"), 8, {}, r"shape=\(0, 3\)"),
    ("no_columns", np.zeros((2, 0), "int32"), 8, {}, r"shape=\(2, 0\)"),
    ("one_dim", [1, 2, 3], 8, {}, r"prompt_ids.shape=\(3,\)"),
    ("short_max_length", PROMPTS, 4, {}, "max_length=4"),
    ("float_max_length", PROMPTS, 8.0, {}, "max_length=8.0"),
    ("bool_max_length", PROMPTS, True, {}, "max_length=True"),
    ("use_cache", PROMPTS, 8, {"use_cache": "yes"}, "use_cache='yes'"),
    ("compile", PROMPTS, 8, {"compile": None}, "compile=None"),
]


@pytest.mark.parametrize(
    "prompt, max_length, kwargs, message",
    [case[1:] for case in BAD_PROMPTS],
    ids=[case[0] for case in BAD_PROMPTS],
)
def test_generate_rejects_bad_input(
    language_model, prompt, max_length, kwargs, message
):
    with pytest.raises(ValueError, match=message):
        keras_mha.generate(language_model, prompt, max_length, **kwargs)


BAD_SOURCES = [
    ("padding_row", [[3, 4], [0, 0]], 8, r"rows \[1\] of padding only"),
    ("no_rows", np.zeros((0, 4), "int32"), 8, r"source_ids.shape=\(0, 4\)"),
    ("max_length_1", SOURCES, 1, "max_length=1"),
]


@pytest.mark.parametrize(
    "source, max_length, message",
    [case[1:] for case in BAD_SOURCES],
    ids=[case[0] for case in BAD_SOURCES],
)
def test_decode_rejects_bad_input(
    translator_model, source, max_length, message
):
    with pytest.raises(ValueError, match=message):
        seq2seq.decode(translator_model, source, max_length, 2, 3)


# The language model embeds 30 ids, the translator 30 source and 24 target.
BAD_IDS = [
    (
        "generate_id_30",
        "generate",
        [[5, 30]],
        {},
        ValueError,
        r"\[0, 30\).*prompt_ids\[0, 1\]=30 \(1 ids outside\)",
    ),
    (
        "generate_id_-1",
        "generate",
        [[5, 6], [-1, 7]],
        {},
        ValueError,
        r"prompt_ids\[1, 0\]=-1",
    ),
    (
        "generate_huge_id",
        "generate",
        [[2**40]],
        {},
        ValueError,
        r"prompt_ids\[0, 0\]=1099511627776",
    ),
    (
        "generate_floats",
        "generate",
        [[3.7, 4.2]],
        {},
        TypeError,
        r"integer token ids.*prompt_ids.dtype=float64",
    ),
    (
        "generate_float32",
        "generate",
        np.ones((1, 2), "float32"),
        {},
        TypeError,
        r"prompt_ids.dtype=float32",
    ),
    (
        "generate_bools",
        "generate",
        [[True, True]],
        {},
        TypeError,
        r"prompt_ids.dtype=bool",
    ),
    (
        "generate_end_id_30",
        "generate",
        [[5]],
        {"end_id": 30},
        ValueError,
        r"end_id=30",
    ),
    (
        "generate_end_id_float",
        "generate",
        [[5]],
        {"end_id": 3.5},
        TypeError,
        r"end_id=3.5",
    ),
    (
        "decode_id_30",
        "decode",
        [[5, 30]],
        {},
        ValueError,
        r"\[0, 30\).*source_ids\[0, 1\]=30",
    ),
    (
        "decode_floats",
        "decode",
        [[3.7, 4.2]],
        {},
        TypeError,
        r"source_ids.dtype=float64",
    ),
    (
        "decode_start_id_24",
        "decode",
        [[5]],
        {"start_id": 24},
        ValueError,
        r"\[0, 24\).*start_id=24",
    ),
    (
        "decode_end_id_float",
        "decode",
        [[5]],
        {"end_id": 3.0},
        TypeError,
        r"end_id=3.0",
    ),
]


@pytest.mark.parametrize(
    "function, ids, kwargs, error, message",
    [case[1:] for case in BAD_IDS],
    ids=[case[0] for case in BAD_IDS],
)
def test_ids_outside_the_vocabulary_or_not_integers_are_refused(
    language_model, translator_model, function, ids, kwargs, error, message
):
    with pytest.raises(error, match=message):
        if function == "generate":
            keras_mha.generate(language_model, ids, 6, **kwargs)
        else:
            ids_kwargs = {"start_id": 2, "end_id": 3, **kwargs}
            seq2seq.decode(translator_model, ids, 6, **ids_kwargs)


def test_the_last_ids_of_the_vocabulary_are_accepted(
    language_model, translator_model
):
    ids = numpy(keras_mha.generate(language_model, [[29, 1]], 4, end_id=29))
    np.testing.assert_array_equal(ids[0, :2], [29, 1])
    ids = numpy(seq2seq.decode(translator_model, [[29]], 4, 2, 23))
    assert ids.shape == (1, 4) and ids[0, 0] == 2


@pytest.mark.parametrize("cls", ["seq2seq", "causal_lm"])
def test_models_save_and_load_with_their_cache(
    cls, translator_model, language_model, tmp_path
):
    model = translator_model if cls == "seq2seq" else language_model
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    assert type(reloaded) is type(model)
    assert reloaded.get_config() == model.get_config()
    if cls == "seq2seq":
        run = lambda m: seq2seq.decode(m, SOURCES, MAX_LENGTH, 2, 3)
    else:
        run = lambda m: keras_mha.generate(m, PROMPTS, MAX_LENGTH)
    np.testing.assert_array_equal(numpy(run(reloaded)), numpy(run(model)))


def test_model_rejects_a_bad_size():
    with pytest.raises(ValueError, match="num_layers=-1"):
        seq2seq.TransformerSeq2Seq(10, 10, num_layers=-1)
    with pytest.raises(ValueError, match="hidden_dim=16.5"):
        keras_mha.TransformerCausalLM(10, hidden_dim=16.5)
