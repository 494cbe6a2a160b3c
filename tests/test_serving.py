"""The exported translator under concurrent load.

One SavedModel, loaded once with `tf.saved_model.load`, answers requests
from 8 threads at once: batches of 1 to 32 sentences of 0 to 20 words. Every
answer equals the answer to the same request sent alone, and the process's
resident memory does not grow across the run once it is warm. The default
suite sends 200 requests; the slow suite sends 1,000.
"""

import json
import sys
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import pytest

from tests.seq2seq_helpers import small_translator

pytestmark = [
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow",
        reason="the SavedModel export and tf.saved_model.load need TensorFlow",
    ),
    pytest.mark.skipif(
        not sys.platform.startswith("linux"),
        reason="resident memory is read from /proc/self/status (Linux)",
    ),
]

THREADS, MAX_BATCH, MAX_LENGTH = 8, 32, 14
# Resident memory may grow this much across the measured run. A warm
# process still moves by a MB or two (malloc arenas of the 8 threads, TF's
# allocator caches); keeping each request's logits alone (14 steps of a
# few hundred floats a sentence) would grow it by tens of MB over the
# thousands of sentences of the 200 requests.
RSS_SLACK_MB = 16


def resident_mb():
    """This process's resident set size, in MB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    """The `serving_default` signature of a small translator's export."""
    import tensorflow as tf

    from keras_mha.seq2seq.export import export_translator

    # Enough epochs that translations differ by input (74 distinct texts
    # on 30 requests' sentences at 6 epochs, 6 at 4).
    translator, _ = small_translator(epochs=6)
    translator.max_length = MAX_LENGTH
    path = tmp_path_factory.mktemp("serving") / "translator"
    export_translator(path, translator)
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]

    def translate(sentences):
        texts = signature(sentences=tf.constant(sentences, tf.string))
        return [text.decode("utf-8") for text in texts["translations"].numpy()]

    return translate


def make_requests(count, seed=0):
    """`count` batches of 1 to 32 sentences, 0 to 20 words each."""
    from keras_mha.seq2seq import data

    sentences = [source for source, _ in data.number_pairs(400, seed=seed + 7)]
    rng = np.random.default_rng(seed)
    words = " ".join(sentences).split()
    # Beside whole sentences (4-10 words): empty, cut and run-on ones.
    sentences += [
        " ".join(words[i : i + n])
        for i, n in zip(
            rng.integers(0, len(words) - 20, 100), rng.integers(0, 21, 100)
        )
    ]
    return [
        [str(s) for s in rng.choice(sentences, rng.integers(1, MAX_BATCH + 1))]
        for _ in range(count)
    ]


@pytest.mark.parametrize(
    "num_requests",
    [200, pytest.param(1000, marks=pytest.mark.slow)],
)
def test_concurrent_requests_equal_sequential_ones(serve, num_requests):
    requests = make_requests(num_requests)
    # Sequential answers; this also traces nothing new (the signature is a
    # concrete function) but warms TensorFlow's kernels and caches.
    expected = [serve(request) for request in requests]
    assert len({text for texts in expected for text in texts}) > 20
    with ThreadPoolExecutor(THREADS) as pool:
        # Warm the threads too (thread stacks, per-thread malloc arenas,
        # TensorFlow's per-shape kernels and allocator pools, TF Text's
        # tokenizer buffers): two full concurrent passes, then the measured
        # one. A leak grows on every pass; a warming allocator levels off.
        list(pool.map(serve, requests))
        list(pool.map(serve, requests))
        before = resident_mb()
        answers = list(pool.map(serve, requests))
        after = resident_mb()
    mismatches = [
        i for i, (a, e) in enumerate(zip(answers, expected)) if a != e
    ]
    assert not mismatches, (
        f"{len(mismatches)} of {num_requests} requests differ, the first: "
        f"{requests[mismatches[0]]} -> {answers[mismatches[0]]}, alone "
        f"{expected[mismatches[0]]}"
    )
    print(
        json.dumps(
            {
                "requests": num_requests,
                "sentences": sum(map(len, requests)),
                "threads": THREADS,
                "rss_before_mb": round(before, 1),
                "rss_after_mb": round(after, 1),
            }
        )
    )
    assert after - before < RSS_SLACK_MB, (before, after)


def test_threads_share_one_loaded_model(serve):
    """Concurrent requests of very different shapes, all at once."""
    requests = [["I run."] * MAX_BATCH, [""], ["a " * 40], ["We sleep."]] * 4
    alone = [serve(request) for request in requests]
    with ThreadPoolExecutor(len(requests)) as pool:
        assert list(pool.map(serve, requests)) == alone
    assert len(alone[0]) == MAX_BATCH and len(alone[1]) == 1
