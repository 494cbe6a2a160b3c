"""Length-bucketed teacher-forcing batches: every pair once, the decoder
input the target shifted right, little padding, a few batch shapes when
padded to the bucket boundaries, and bad arguments refused up front."""

import keras
import numpy as np
import pytest

from keras_mha.seq2seq.pipeline import BUCKET_BOUNDARIES
from keras_mha.seq2seq.pipeline import teacher_forcing_dataset
from keras_mha.seq2seq.tokenizers import END_ID
from keras_mha.seq2seq.tokenizers import START_ID
from tests.seq2seq_helpers import small_translator


@pytest.fixture(scope="module")
def translator_and_pairs():
    translator, pairs = small_translator(epochs=0, num_pairs=300)
    # A few long pairs, as in a real corpus: padding to them is waste.
    pairs = pairs + [(" ".join(s for s, _ in pairs[:8]), pairs[0][1])] * 3
    return translator, pairs


@pytest.fixture(scope="module")
def tokenizers_and_pairs(translator_and_pairs):
    translator, pairs = translator_and_pairs
    return translator.tokenizers, pairs


def batches(tokenizers, pairs, bucketed, pad_to_boundaries=None):
    data = teacher_forcing_dataset(
        tokenizers,
        pairs,
        16,
        bucketed=bucketed,
        shuffle=False,
        pad_to_boundaries=pad_to_boundaries,
    )
    return [(s.numpy(), i.numpy(), y.numpy()) for (s, i), y in data]


@pytest.mark.parametrize(
    "bucketed, to_boundary",
    [(True, False), (True, True), (False, None)],
    ids=["bucketed", "to-boundary", "padded"],
)
def test_every_pair_is_taught_once(tokenizers_and_pairs, bucketed, to_boundary):
    tokenizers, pairs = tokenizers_and_pairs
    source_ids, target_ids = tokenizers.token_ids(pairs)
    seen = []
    for sources, inputs, labels in batches(
        tokenizers, pairs, bucketed, to_boundary
    ):
        assert inputs.shape == labels.shape
        for source, inp, label in zip(sources, inputs, labels):
            target = np.concatenate([[START_ID], label[label != 0]])
            assert target[-1] == END_ID
            # The decoder input is the target shifted right.
            np.testing.assert_array_equal(inp[inp != 0], target[:-1])
            seen.append((tuple(source[source != 0]), tuple(target)))
    expected = [(tuple(s), tuple(t)) for s, t in zip(source_ids, target_ids)]
    assert sorted(seen) == sorted(expected)


def test_bucketing_pads_less(tokenizers_and_pairs):
    tokenizers, pairs = tokenizers_and_pairs

    def padding(bucketed, to_boundary=None):
        labels = [
            y for _, _, y in batches(tokenizers, pairs, bucketed, to_boundary)
        ]
        return 1 - sum((y != 0).sum() for y in labels) / sum(
            y.size for y in labels
        )

    padded = padding(False)
    assert padding(True, False) < padded / 3, (padding(True, False), padded)
    assert padding(True, True) < padded / 2, (padding(True, True), padded)


def test_padding_to_boundaries_bounds_the_batch_shapes(tokenizers_and_pairs):
    tokenizers, pairs = tokenizers_and_pairs
    free = batches(tokenizers, pairs, True, False)
    bounded = batches(tokenizers, pairs, True, True)
    source_ids, target_ids = tokenizers.token_ids(pairs)
    for ids, column in ((source_ids, 0), (target_ids, 1)):
        longest = max(len(row) for row in ids) - column  # targets: shifted
        lengths = {b for b in BUCKET_BOUNDARIES if b < longest} | {longest}
        free_lengths = [batch[column].shape[1] for batch in free]
        bounded_lengths = [batch[column].shape[1] for batch in bounded]
        # The same batches, each padded up to the next boundary.
        assert all(
            n == min(b for b in lengths if b >= m)
            for m, n in zip(free_lengths, bounded_lengths)
        )
        assert set(bounded_lengths) <= lengths
        assert len(set(bounded_lengths)) < len(set(free_lengths))
    for free_batch, bounded_batch in zip(free, bounded):
        for ids, padded in zip(free_batch, bounded_batch):
            np.testing.assert_array_equal(padded[:, : ids.shape[1]], ids)
            assert not padded[:, ids.shape[1] :].any()
    # The default: bounded on JAX only.
    default = [batch[0].shape for batch in batches(tokenizers, pairs, True)]
    jax = keras.backend.backend() == "jax"
    assert default == [batch[0].shape for batch in (bounded if jax else free)]


def test_shuffle_reorders_each_epoch_and_keeps_every_pair(tokenizers_and_pairs):
    tokenizers, pairs = tokenizers_and_pairs
    data = teacher_forcing_dataset(tokenizers, pairs, 16, bucketed=False)

    def epoch():
        return [tuple(row) for (s, _), _ in data for row in s.numpy()]

    first, second = epoch(), epoch()
    assert first != second and sorted(first) == sorted(second)
    assert len(first) == len(pairs)


def test_translator_dataset_is_the_pipeline_of_its_tokenizers(
    translator_and_pairs,
):
    translator, pairs = translator_and_pairs
    translator_batches = [
        (s.numpy(), i.numpy(), y.numpy())
        for (s, i), y in translator.dataset(
            pairs, 16, shuffle=False, pad_to_boundaries=True
        )
    ]
    expected = batches(translator.tokenizers, pairs, True, True)
    assert len(translator_batches) == len(expected)
    for got, want in zip(translator_batches, expected):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"batch_size": 0}, ValueError, "batch_size=0"),
        ({"batch_size": 2.5}, TypeError, "batch_size=2.5"),
        ({"bucketed": "yes"}, TypeError, "bucketed='yes'"),
        ({"shuffle": 1}, TypeError, "shuffle=1"),
        ({"pad_to_boundaries": "jax"}, TypeError, "pad_to_boundaries='jax'"),
        ({"pairs": []}, ValueError, r"pairs=\[\]"),
        ({"pairs": [("a", 1)]}, TypeError, r"pairs\[0\]=\('a', 1\)"),
    ],
    ids=[
        "batch_0",
        "batch_float",
        "bucketed",
        "shuffle",
        "pad",
        "no_pairs",
        "int",
    ],
)
def test_bad_arguments_are_refused(tokenizers_and_pairs, options, error, match):
    tokenizers, pairs = tokenizers_and_pairs
    arguments = {"pairs": pairs[:4], "batch_size": 2, **options}
    with pytest.raises(error, match=match):
        teacher_forcing_dataset(tokenizers, **arguments)
